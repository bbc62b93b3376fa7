"""Where this checkout's models are, in the standard library alone: the command line's client
(engine/client.py) reads it before torch loads, to find the server that holds these models."""
from __future__ import annotations

import os
from pathlib import Path

ENGINE = Path(__file__).resolve().parent
SHIPPED = ENGINE.parent / "assets" / "checkpoints"
CHECKPOINT_DIR = Path(os.environ.get("HUMMINGBIRD_CHECKPOINTS") or SHIPPED)  # a folder of your own exports, or the shipped one
