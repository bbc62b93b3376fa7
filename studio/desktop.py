"""Desktop record and play (``python launch.py --desktop``): the studio's machine is the
musician's, so hums can come straight from its microphone and results play on its speakers.

Everything here fails with one DesktopAudioError sentence when there is no sound card, no
PortAudio library or no default device; the studio then says so and keeps working in the browser.
"""
from __future__ import annotations

import numpy as np

from engine import SAMPLE_RATE


class DesktopAudioError(RuntimeError):
    pass


def _sounddevice():
    try:
        import sounddevice
    except OSError as exc:  # the Python package is there, the PortAudio library is not
        raise DesktopAudioError(f"desktop audio needs PortAudio (Debian: libportaudio2): {exc}") from None
    return sounddevice


def _device(kind: str) -> dict:
    sd = _sounddevice()
    try:
        return sd.query_devices(kind=kind)
    except sd.PortAudioError:
        raise DesktopAudioError(f"no default audio {kind} device on this computer") from None


def available() -> str | None:
    """None when both a default input and output exist, else the reason they do not."""
    try:
        _device("input")
        _device("output")
    except DesktopAudioError as exc:
        return str(exc)
    return None


def record(seconds: float) -> np.ndarray:
    """``seconds`` of mono audio from the default input at 24 kHz."""
    if not 0 < seconds <= 60:
        raise DesktopAudioError(f"record between 0 and 60 seconds, not {seconds}")
    sd = _sounddevice()
    _device("input")
    try:
        audio = sd.rec(int(seconds * SAMPLE_RATE), samplerate=SAMPLE_RATE, channels=1, dtype="float32")
        sd.wait()
    except sd.PortAudioError as exc:
        raise DesktopAudioError(f"recording failed: {exc}") from None
    return audio[:, 0]


def play(audio: np.ndarray) -> None:
    """Play 24 kHz mono audio on the default output and return at once."""
    sd = _sounddevice()
    _device("output")
    try:
        sd.play(np.clip(audio, -1, 1).astype(np.float32), SAMPLE_RATE)
    except sd.PortAudioError as exc:
        raise DesktopAudioError(f"playback failed: {exc}") from None
