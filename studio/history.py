"""Every generation kept on disk — audio, prompt, settings, seed — so it survives a restart.

The index is one JSON file rewritten through a temp file and a rename, and each WAV is written
the same way before its entry is added, so a kill at any moment leaves either the old index or
the new one, never a half-written entry or export. No gradio here: the studio only shows it.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from engine import SAMPLE_RATE, atomic_write, save_audio

DEFAULT_ROOT = Path(os.environ.get("HUMMINGBIRD_HISTORY", Path(__file__).resolve().parents[1] / "outputs" / "history"))


class History:
    def __init__(self, root: Path = DEFAULT_ROOT):
        self.root = Path(root)
        self.index = self.root / "index.json"
        for leftover in self.root.glob(".*.tmp"):  # a write that a kill interrupted: never part of the history
            leftover.unlink(missing_ok=True)

    def entries(self) -> list[dict]:
        """Newest first; entries whose audio has gone are left out."""
        try:
            rows = json.loads(self.index.read_text())
        except FileNotFoundError:
            return []
        except (json.JSONDecodeError, UnicodeDecodeError):  # only a hand edit can do this: keep it aside, start afresh
            self.index.rename(self.index.with_name(f"index.broken-{int(time.time())}.json"))
            return []
        return [r for r in rows if isinstance(r, dict) and (self.root / str(r.get("audio", ""))).is_file()]

    def add(self, audio: np.ndarray, settings: dict) -> dict:
        """Save ``audio`` and its reproducing ``settings``; returns the new entry."""
        self.root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = f"{stamp}-{time.monotonic_ns() % 1_000_000:06d}.wav"  # unique even for two saves in one second
        save_audio(self.root / name, audio)
        entry = {"audio": name, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": round(len(audio) / SAMPLE_RATE, 2),
                 "settings": settings}
        rows = [entry] + self.entries()
        atomic_write(self.index, lambda tmp: tmp.write_text(json.dumps(rows, indent=1, ensure_ascii=False)))
        return entry

    def path(self, entry: dict) -> Path:
        return self.root / entry["audio"]
