"""The audio a user may hand any entry (CLI --continue / --melody, the Python API, the studio's
Continue and Hum tabs): one table, shared by every test that checks an entry.

Each case is a file maker and what loading must do: ``None`` = load as 24 kHz mono of the given
length (seconds), or the text of the one clear message it must raise."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 24_000


def _tone(seconds: float, rate: int = RATE, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.2 * np.sin(2 * np.pi * 0.5 * t))
    return np.stack([mono] * channels, 1) if channels > 1 else mono


def _write(path: Path, audio, rate=RATE, subtype="PCM_16", fmt=None) -> Path:
    sf.write(path, audio, rate, subtype=subtype, format=fmt)
    return path


def _truncated_flac(path: Path) -> Path:
    whole = _write(path.with_name("whole.flac"), _tone(3.0), fmt="FLAC").read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    return path


def _truncated_wav(path: Path) -> Path:
    whole = _write(path.with_name("whole.wav"), _tone(3.0)).read_bytes()
    path.write_bytes(whole[: 44 + (len(whole) - 44) // 2])  # header kept, half the samples: read as what is there
    return path


def _float_with(value: float):
    def make(path: Path) -> Path:
        audio = _tone(2.0).astype(np.float32)
        audio[1000] = value
        return _write(path, audio, subtype="FLOAT")
    return make


def _text(content: bytes):
    def make(path: Path) -> Path:
        path.write_bytes(content)
        return path
    return make


def _huge(path: Path) -> Path:
    with open(path, "wb") as fh:  # sparse: 51 MB on paper, nothing written
        fh.truncate(51_000_000)
    return path


CASES = {  # name: (file name, maker, expectation)
    "not audio": ("notes.wav", _text(b"these are my notes, not a recording"), "cannot read notes.wav as audio"),
    "empty file": ("empty.wav", _text(b""), "cannot read empty.wav as audio"),
    "no samples": ("nothing.wav", lambda p: _write(p, np.zeros(0)), "the audio is empty"),
    "truncated flac": ("cut.flac", _truncated_flac, "cannot read cut.flac as audio"),
    "truncated wav": ("cut.wav", _truncated_wav, 1.5),
    "NaN samples": ("nan.wav", _float_with(np.nan), "NaN or infinite"),
    "Inf samples": ("inf.wav", _float_with(np.inf), "NaN or infinite"),
    "8 kHz": ("phone.wav", lambda p: _write(p, _tone(2.0, 8_000), 8_000), 2.0),
    "96 kHz": ("studio.wav", lambda p: _write(p, _tone(2.0, 96_000), 96_000), 2.0),
    "stereo": ("stereo.wav", lambda p: _write(p, _tone(2.0, channels=2)), 2.0),
    "8-bit": ("old.wav", lambda p: _write(p, _tone(2.0), subtype="PCM_U8"), 2.0),
    "over 10 minutes": ("long.wav", lambda p: _write(p, np.zeros(int(601 * 8_000)), 8_000, subtype="PCM_U8"), "the limit is 600 s"),
    "over 50 MB": ("huge.wav", _huge, "the limit is 50 MB"),
    "silent": ("silent.wav", lambda p: _write(p, np.zeros(RATE * 2)), 2.0),
}
BAD = sorted(name for name, (_, _, expect) in CASES.items() if isinstance(expect, str))


def make(name: str, folder: Path) -> tuple[Path, float | str]:
    file_name, maker, expect = CASES[name]
    return maker(Path(folder) / file_name), expect
