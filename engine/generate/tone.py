"""The tone stage: a style piece shaped toward its reference clips' spectral balance, after the codec.

Stage 2 writes the timbre of a clip's genre rather than the clip's own: given the reference's own
semantic tokens it still misses its clip by MuLan's ear (docs/experiments.md, 2026-12-04), and no
sampling setting or fine-tune tried moved that. What a mastering engineer does with a reference
track is match its tone: an equalizer that brings the mix's long-term spectrum toward the
reference's (a "match EQ"). This stage does that as the music streams: the clips' balance over
third-octave bands is the target; each chunk's gain curve is the target minus the balance of the
music made so far, within ``MAX_TONE_DB``, loudness-neutral (the level stage sets loudness), applied
by a minimum-phase filter (no added latency) that is cross-faded from the last chunk's so nothing
clicks. It shapes the spectrum only: notes, rhythm and tokens are the models'.
"""
from __future__ import annotations

import numpy as np

from ..audio import SAMPLE_RATE

BAND_CENTRES_HZ = 63.0 * 2.0 ** (np.arange(23) / 3)  # third octaves, 63 Hz to 10 kHz; the curve is flat beyond either end
ANALYSIS_POINTS = 4096  # 5.9 Hz bins: two or more in the lowest third octave
ANALYSIS_HOP = 1024
ANALYSIS_BLOCK = 256  # frames transformed at once: 16 MB of spectra
FILTER_TAPS = 1024  # 43 ms, 23 Hz resolution: a third octave apart from about 100 Hz up (the curve is smoothed below)
MAX_TONE_DB = 12.0  # the most any band is moved: a style is matched, not rebuilt
SMOOTHING = np.array([0.25, 0.5, 0.25])  # neighbouring bands share their gains: no band rings on its own

_FREQUENCIES = np.fft.rfftfreq(ANALYSIS_POINTS, 1 / SAMPLE_RATE)
_BANDS = np.stack([(_FREQUENCIES >= c * 2 ** (-1 / 6)) & (_FREQUENCIES < c * 2 ** (1 / 6)) for c in BAND_CENTRES_HZ]).astype(np.float64)
_WINDOW = np.hanning(ANALYSIS_POINTS)


def bin_power(frames: np.ndarray) -> np.ndarray:
    """Power per frequency bin of ``frames`` (n, ANALYSIS_POINTS), summed over the frames; a block
    of ``ANALYSIS_BLOCK`` at a time, so a reference clip of many minutes needs no more memory."""
    return sum((np.abs(np.fft.rfft(frames[i:i + ANALYSIS_BLOCK] * _WINDOW, axis=1)) ** 2).sum(0)
               for i in range(0, len(frames), ANALYSIS_BLOCK))


def _balance(power: np.ndarray) -> np.ndarray | None:
    """Bin power → each band's mean power per bin, as shares that sum to 1 (None for silence)."""
    bands = _BANDS @ power / _BANDS.sum(1)
    return bands / bands.sum() if bands.sum() > 0 else None


def _curve(gains_db: np.ndarray, frequencies: np.ndarray) -> np.ndarray:
    """Band gains at ``BAND_CENTRES_HZ`` → gains at ``frequencies``, over log frequency, flat beyond either end."""
    return np.interp(np.log2(np.maximum(frequencies, 1.0)), np.log2(BAND_CENTRES_HZ), gains_db)


def _frames(audio: np.ndarray) -> np.ndarray:
    """The whole analysis frames in ``audio`` (a clip shorter than one frame: zero-padded to it)."""
    audio = np.asarray(audio, np.float64)
    if len(audio) < ANALYSIS_POINTS:
        audio = np.pad(audio, (0, ANALYSIS_POINTS - len(audio)))
    return np.lib.stride_tricks.sliding_window_view(audio, ANALYSIS_POINTS)[::ANALYSIS_HOP]


def spectral_balance(audio: np.ndarray) -> np.ndarray | None:
    """A clip's spectral balance: each band's power per bin, as shares that sum to 1; None for silence."""
    return _balance(bin_power(_frames(audio)))


def blend_balance(blend: list[tuple[str | np.ndarray, float]]) -> tuple[np.ndarray, float] | None:
    """The balance a weighted blend of prompts and clips asks for, and how strongly: the clips'
    balances mixed by weight, at the clips' share of the blend's weight (words name no spectrum,
    so they leave more of the models' own); None without a clip that sounds."""
    balances = [(spectral_balance(source), weight) for source, weight in blend if not isinstance(source, str) and weight > 0]
    balances = [(balance, weight) for balance, weight in balances if balance is not None]
    if not balances:
        return None
    clips = sum(weight for _, weight in balances)
    target = sum(balance * weight for balance, weight in balances) / clips
    return target, clips / sum(weight for _, weight in blend if weight > 0)


def _convolve(audio: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """The full linear convolution of ``audio`` with ``taps`` (by FFT)."""
    n = len(audio) + len(taps) - 1
    size = 1 << (n - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(audio.astype(np.float64), size) * np.fft.rfft(taps, size), size)[:n]


def minimum_phase_filter(gains_db: np.ndarray) -> np.ndarray:
    """A ``FILTER_TAPS``-tap minimum-phase FIR with the band gains (dB at ``BAND_CENTRES_HZ``,
    interpolated over log frequency): the real cepstrum of the log magnitude, folded onto positive
    time. Minimum phase puts the filter's energy first, so the music is not delayed."""
    frequencies = np.fft.rfftfreq(FILTER_TAPS, 1 / SAMPLE_RATE)
    cepstrum = np.fft.irfft(_curve(gains_db, frequencies) * (np.log(10) / 20), FILTER_TAPS)
    folded = np.zeros(FILTER_TAPS)
    half = FILTER_TAPS // 2
    folded[0], folded[half] = cepstrum[0], cepstrum[half]
    folded[1:half] = 2 * cepstrum[1:half]
    taps = np.fft.irfft(np.exp(np.fft.rfft(folded)), FILTER_TAPS)
    return taps * np.hanning(2 * FILTER_TAPS)[FILTER_TAPS:]  # the tail tapered to 0: no truncation ripple


class ToneStage:
    """Shapes a stream of chunks toward ``target`` (a ``spectral_balance``) at ``strength`` (0–1):
    call it on each chunk in order; each returns a chunk of the same length."""

    def __init__(self, target: np.ndarray, strength: float = 1.0):
        self.target, self.strength = np.asarray(target, np.float64), float(strength)
        self.heard = np.zeros(len(_FREQUENCIES))  # power per bin of the music so far, before the stage
        self.pending = np.zeros(0)  # samples from the next analysis frame's start on
        self.taps: np.ndarray | None = None  # the last chunk's filter
        self.tail = np.zeros(0)  # what the filters rang past the chunks already out

    @classmethod
    def of_blend(cls, blend: list[tuple[str | np.ndarray, float]]) -> "ToneStage | None":
        """The stage for a style's blend, or None when it holds no clip to match."""
        aim = blend_balance(blend)
        return None if aim is None else cls(*aim)

    def gains_db(self) -> np.ndarray:
        """Each band's gain now: the target over the balance heard so far, within ``MAX_TONE_DB``,
        smoothed across bands, at ``strength``, then shifted so the music's power is unchanged."""
        power = self.heard if self.heard.any() else bin_power(_frames(self.pending))  # an opening shorter than a frame: as it is
        balance = _balance(power)
        if balance is None:
            return np.zeros(len(BAND_CENTRES_HZ))
        gains = np.clip(10 * np.log10((self.target + 1e-12) / (balance + 1e-12)), -MAX_TONE_DB, MAX_TONE_DB)
        gains = np.convolve(np.pad(gains, 1, mode="edge"), SMOOTHING, mode="valid") * self.strength
        return gains - 10 * np.log10(np.sum(power * 10 ** (_curve(gains, _FREQUENCIES) / 10)) / power.sum())

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        if not len(audio):
            return audio
        self._listen(audio)
        taps = minimum_phase_filter(self.gains_db())
        shaped = _convolve(audio, taps)
        if self.taps is not None:  # cross-fade from the last chunk's filter over this chunk
            ramp = np.linspace(0.0, 1.0, len(audio))
            shaped[: len(audio)] = _convolve(audio, self.taps)[: len(audio)] * (1 - ramp) + shaped[: len(audio)] * ramp
        self.taps = taps
        total = np.zeros(max(len(shaped), len(self.tail)))
        total[: len(shaped)] += shaped
        total[: len(self.tail)] += self.tail
        self.tail = total[len(audio):]
        return total[: len(audio)].astype(np.float32)

    def _listen(self, audio: np.ndarray) -> None:
        """Add the analysis frames ``audio`` completes to what was heard."""
        self.pending = np.concatenate([self.pending, audio.astype(np.float64)])
        if len(self.pending) >= ANALYSIS_POINTS:
            frames = _frames(self.pending)
            self.heard = self.heard + bin_power(frames)
            self.pending = self.pending[len(frames) * ANALYSIS_HOP:]
