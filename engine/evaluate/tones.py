"""`eval tones`: does the codec keep pitch on sound the corpus never made? Pure sines and
harmonic tones from 80 to 1000 Hz, judged by measures this repository did not train (the tone's
own frequency, librosa's chroma), against Opus at the same bitrate; and decoded from the coarse
levels alone, all that stage 2 writes (stage 3 predicts the rest at chance), so the best any
generated note can sound."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE
from ..nn.codec import load_codec
from ..nn.lm import COARSE_LEVELS
from .common import opus_roundtrip, through_codec
from .metrics import cents, comb_share, dominant_frequency, pitch_class_agreement, rms

TONE_SECONDS = 2.0
QUARTER_TONE_CENTS = 50.0
LEVEL_KEPT_DB = 6.0  # a sine "comes back" only at about its own level: its pitch alone can be read off a whisper
PARTIALS = 8  # harmonic tones: partials 1…8 at amplitude 1/k, as a bowed or sung note roughly has


def tone_frequencies(count: int = 24, low: float = 80.0, high: float = 1000.0) -> np.ndarray:
    """``count`` log-spaced frequencies, each at least 5 Hz off the codec's 50 Hz grid, so that no
    tone gets the grid's help (one that sat on it moves to 10 Hz beside it)."""
    freqs = np.geomspace(low, high, count)
    grid = 50 * np.round(freqs / 50)
    beside = np.where(grid + 10 <= high, grid + 10, grid - 10)
    return np.where(np.abs(freqs - grid) < 5, beside, freqs)


def tone(frequency: float, partials: int = 1, seconds: float = TONE_SECONDS) -> np.ndarray:
    """A steady tone at 0.3 peak with 20 ms fades, ``partials`` harmonics at 1/k amplitude."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    x = sum(np.sin(2 * np.pi * frequency * k * t) / k for k in range(1, partials + 1) if frequency * k < SAMPLE_RATE / 2)
    fade = np.minimum(1, np.minimum(t, t[-1] - t) / 0.02)
    return (0.3 * x / np.abs(x).max() * fade).astype(np.float32)


def _middle(audio: np.ndarray) -> np.ndarray:
    """The steady middle second: no fade, no codec warm-up."""
    half = SAMPLE_RATE // 2
    centre = len(audio) // 2
    return audio[centre - half:centre + half]


def _judge(frequencies: np.ndarray, roundtrip) -> dict:
    sines, harmonics = [], []
    for f in frequencies:
        clean = tone(f)
        back = _middle(roundtrip(clean))
        heard = dominant_frequency(back)
        level = 20 * np.log10(max(rms(back), 1e-9) / rms(_middle(clean)))
        sines.append({"hz": round(float(f), 1), "heard_hz": round(heard, 1), "cents": round(cents(heard, f), 1), "level_db": round(level, 1)})
        rich = tone(f, PARTIALS)
        back = roundtrip(rich)
        harmonics.append({"pitch_class_agreement": pitch_class_agreement(rich, back), "comb_share": comb_share(_middle(back))})
    errors = np.abs([s["cents"] for s in sines])
    levels = np.array([s["level_db"] for s in sines])
    return {
        "sines_within_quarter_tone": round(float(np.mean(errors <= QUARTER_TONE_CENTS)), 4),
        "sine_median_abs_cents": round(float(np.median(errors)), 1),
        "sine_median_level_db": round(float(np.median(levels)), 1),
        "sines_in_tune_and_level": round(float(np.mean((errors <= QUARTER_TONE_CENTS) & (np.abs(levels) <= LEVEL_KEPT_DB))), 4),
        "harmonic_pitch_class_agreement": round(float(np.mean([h["pitch_class_agreement"] for h in harmonics])), 4),
        "harmonic_comb_share": round(float(np.mean([h["comb_share"] for h in harmonics])), 4),
        "sines": sines,
    }


def eval_tones(corpus: Path | None = None, checkpoint: Path | None = None, clips: int | None = None) -> dict:
    """The codec and Opus at its bitrate on ``clips`` (default 24) sines and harmonic tones.
    ``corpus`` is not read: these sounds are made here."""
    t0 = time.perf_counter()
    model = load_codec(checkpoint)
    frequencies = tone_frequencies(clips or 24)
    kbps = model.cfg.bits_per_second / 1000

    clean_comb = float(np.mean([comb_share(_middle(tone(f, PARTIALS))) for f in frequencies]))
    return {"tones": len(frequencies), "range_hz": [80.0, 1000.0], "kbps": kbps,
            "codec": _judge(frequencies, lambda audio: through_codec(model, audio)),
            f"codec_{COARSE_LEVELS}_levels": _judge(frequencies, lambda audio: through_codec(model, audio, COARSE_LEVELS)),
            f"opus_{kbps:g}kbps": _judge(frequencies, lambda a: opus_roundtrip(a, kbps)),
            "clean_harmonic_comb_share": round(clean_comb, 4), "wall_s": round(time.perf_counter() - t0, 1)}
