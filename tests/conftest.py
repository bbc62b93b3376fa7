import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
_SOCKET_FOLDER = tempfile.TemporaryDirectory(prefix="hummingbird-tests-")  # removed when the test run ends
os.environ["HUMMINGBIRD_SOCKET"] = os.path.join(_SOCKET_FOLDER.name, "engine.sock")  # never the user's running server
os.environ["HUMMINGBIRD_SERVER"] = "off"  # no command a test runs leaves a server behind (tests/test_serve.py switches it on where it asks)

from engine.data.arranger import ClipSpec  # noqa: E402
from engine.data.genres import GENRES, HELD_OUT_PROGRESSIONS, PROGRESSIONS  # noqa: E402
from engine.data.theory import Key  # noqa: E402


def make_spec(genre: str, mode: str = "major", seed: int = 7, seconds: float = 8.0, split: str = "train") -> ClipSpec:
    """A clip of ``genre`` with a generated melody over one of its progressions in ``mode``."""
    names = [
        p for p in GENRES[genre].progressions
        if (p in HELD_OUT_PROGRESSIONS) == (split == "test") and PROGRESSIONS[p][0] == mode
    ]
    names = names or [p for p in GENRES[genre].progressions if (p in HELD_OUT_PROGRESSIONS) == (split == "test")]
    progression = names[0]
    key = Key(seed % 12, PROGRESSIONS[progression][0])
    lo, hi = GENRES[genre].tempo
    return ClipSpec(seed, split, genre, GENRES[genre].moods[0], key, (lo + hi) // 2, progression, "generated", seconds)


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def smoke_corpus(tmp_path_factory):
    """The CI-sized corpus, built once through the CLI: 10 clips of 4 s (9 train, 1 test).
    Returns the folder and the finished build process (its exit code, stdout and stderr)."""
    out = tmp_path_factory.mktemp("smoke") / "corpus"
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "data", "build", "--out", str(out), "--hours", str(40 / 3600),
         "--clip-seconds", "4", "--seed", "1", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    return out, proc


@pytest.fixture(scope="module")
def tiny_pipeline():
    """A random-weight pipeline whose crops are shorter than the test pieces, so windowed long
    generation is exercised too."""
    from tests.tiny import tiny_pipeline as build

    return build()
