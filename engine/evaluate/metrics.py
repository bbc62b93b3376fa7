"""Audio-level measurements for judging generated music (docs/ARCHITECTURE.md, Metrics): tempo adherence, the
descriptors contrasting prompts should move, and the Fréchet distance between two embedding sets.

They are computed with librosa, independently of every model in this repo, so a generator cannot
score well by learning the evaluator's own features.
"""
from __future__ import annotations

import numpy as np
import torch

from ..audio import SAMPLE_RATE, log_mel

TEMPO_TOLERANCE = 0.08  # issue 5: within 8 %, half or double tempo allowed
ONSET_DELTA = 0.3  # onset-strength units (log-power mel flux); a steady tone gives none, clicks every one


def estimated_bpm(audio: np.ndarray) -> float:
    """librosa's beat tracker on 24 kHz mono audio."""
    import librosa

    tempo, _ = librosa.beat.beat_track(y=audio.astype(np.float32), sr=SAMPLE_RATE)
    return float(np.atleast_1d(tempo)[0])


def tempo_error(estimate: float, target: float) -> float:
    """Relative error against ``target``, forgiving the beat tracker's half / double confusions."""
    return min(abs(estimate * factor - target) / target for factor in (1.0, 0.5, 2.0))


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


def descriptors(audio: np.ndarray) -> dict[str, float]:
    """What "metal with pounding drums" should raise over "solo piano ballad": the percussive share
    of the energy (harmonic/percussive separation), onsets per second, spectral centroid (Hz)."""
    import librosa

    y = audio.astype(np.float32)
    spectrum = np.abs(librosa.stft(y, n_fft=2048, hop_length=512)) ** 2
    harmonic, percussive = librosa.decompose.hpss(spectrum)
    # an absolute threshold: librosa's default rescales each clip's envelope to [0, 1], which finds
    # "onsets" in a steady tone and makes rates incomparable across clips
    onsets = librosa.onset.onset_detect(y=y, sr=SAMPLE_RATE, hop_length=512, units="time", normalize=False, delta=ONSET_DELTA)
    centroid = librosa.feature.spectral_centroid(S=np.sqrt(spectrum), sr=SAMPLE_RATE)
    return {
        "percussive_ratio": float(percussive.sum() / max(harmonic.sum() + percussive.sum(), 1e-12)),
        "onset_rate": float(len(onsets) / (len(y) / SAMPLE_RATE)),
        "spectral_centroid": float(centroid.mean()),
    }


def mfcc_statistics(audio: np.ndarray, coefficients: int = 20) -> np.ndarray:
    """A clip's timbre and its movement as librosa hears them: the mean and standard deviation of
    each MFCC over time (2 × ``coefficients`` numbers), the classic genre and instrument fingerprint."""
    import librosa

    mfcc = librosa.feature.mfcc(y=audio.astype(np.float32), sr=SAMPLE_RATE, n_mfcc=coefficients)
    return np.concatenate([mfcc.mean(1), mfcc.std(1)])


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of embeddings (N, D) (FAD's formula).

    tr √(Σx Σy) is taken as Σ √eig(√Σx Σy √Σx) of a symmetric matrix, which stays exact when a
    covariance is singular (fewer samples than dimensions), where ``sqrtm`` fails."""
    if min(len(x), len(y)) < 2:
        raise ValueError("a Fréchet distance needs at least two embeddings on each side")
    mu_x, mu_y = x.mean(0), y.mean(0)
    cov_x, cov_y = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))
    values, vectors = np.linalg.eigh(cov_x)
    root_x = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    cross = np.sqrt(np.linalg.eigvalsh(root_x @ cov_y @ root_x).clip(min=0)).sum()
    return float(((mu_x - mu_y) ** 2).sum() + np.trace(cov_x) + np.trace(cov_y) - 2 * cross)


def seam_jump(audio: np.ndarray, at: int, hop: int = 256) -> float:
    """How abruptly the sound changes across sample ``at``: the log-mel change between the two
    frames around it over the median change between neighbouring frames of the whole piece
    (≈ 1: the seam is as smooth as the music around it; a hard cut between unrelated clips is far above)."""
    mel = log_mel(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), hop=hop).numpy()
    change = np.abs(np.diff(mel, axis=1)).mean(0)
    k = min(max(at // hop, 1), len(change) - 1)
    return float(change[k - 1:k + 1].max() / max(np.median(change), 1e-9))


def melody_chroma_cosine(hum: np.ndarray, output: np.ndarray) -> float:
    """Issue 6's melody metric on 25 Hz frames: the cosine between the hum's chroma (one-hot pitch
    class of each voiced frame) and the output's dominant-pitch chroma (one-hot pitch class of its
    tracked pitch), averaged over the hum's voiced frames. Both one-hot, so the per-frame cosine is
    1 where the pitch classes agree and 0 elsewhere. Ids ≥ 12 are unvoiced."""
    n = min(hum.size, output.size)
    hum, output = np.asarray(hum[:n]), np.asarray(output[:n])
    voiced = hum < 12
    if not voiced.any():
        raise ValueError("the hum has no voiced frames")
    return float(np.mean(hum[voiced] == output[voiced]))


PITCH_HOP = SAMPLE_RATE // 25  # the melody tokens' 25 Hz frames
PITCH_FFT = 4096  # 5.9 Hz bins: a semitone apart even at 100 Hz
AUDIBLE_DB = -40.0  # frames this far below the loudest frame of the reference are not judged


def pitch_class_agreement(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Share of the reference's audible 25 Hz frames whose strongest chroma bin (the dominant
    pitch class) is the same in ``estimate``: whether a codec or a resynthesis keeps the notes,
    which spectral distances such as log-mel L1 hardly notice."""
    import librosa

    n = min(len(reference), len(estimate))
    ref, est = (np.asarray(x[:n], np.float32) for x in (reference, estimate))
    chroma = [librosa.feature.chroma_stft(y=x, sr=SAMPLE_RATE, n_fft=PITCH_FFT, hop_length=PITCH_HOP).argmax(0) for x in (ref, est)]
    rms = librosa.feature.rms(y=ref, frame_length=PITCH_FFT, hop_length=PITCH_HOP)[0]
    audible = rms >= rms.max() * 10 ** (AUDIBLE_DB / 20)
    return float(np.mean(chroma[0][audible] == chroma[1][audible])) if audible.any() else float("nan")


COMB_SPACING_HZ = 50.0  # the codec's token rate; its STFT frames (100 Hz) fall on the same grid's even lines
COMB_WIDTH_HZ = 3.0
COMB_BAND_HZ = (90.0, 3000.0)


def _long_term_spectrum(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Welch power spectrum with 1 Hz bins: fine enough to tell a line on a grid from one beside it."""
    from scipy.signal import welch  # deferred on purpose: scipy.signal takes 0.6 s to import, which every CLI command would pay

    audio = np.asarray(audio, np.float64)
    if len(audio) < SAMPLE_RATE:
        raise ValueError("comb_share needs at least 1 s of audio (1 Hz bins)")
    return welch(audio, fs=SAMPLE_RATE, nperseg=SAMPLE_RATE)


def _share_near_grid(freqs: np.ndarray, power: np.ndarray, spacing: float, width: float, band: tuple[float, float] = COMB_BAND_HZ) -> float:
    inside = (freqs >= band[0]) & (freqs <= band[1])
    distance = np.abs(freqs - spacing * np.round(freqs / spacing))
    total = power[inside].sum()
    return float(power[inside & (distance <= width)].sum() / total) if total > 0 else float("nan")


def comb_share(audio: np.ndarray, spacing: float = COMB_SPACING_HZ, width: float = COMB_WIDTH_HZ,
               band: tuple[float, float] = COMB_BAND_HZ) -> float:
    """Share of the energy in ``band`` that lies within ``width`` Hz of a multiple of ``spacing``
    (Welch spectrum, 1 Hz bins). A decoder whose overlap-added frames repeat at the frame rate
    piles energy onto that grid whatever the notes were; music and Opus put about what the grid's
    width gives there by chance (2 × 3 + 1 of every 50 bins: 14 %)."""
    return _share_near_grid(*_long_term_spectrum(audio), spacing, width, band)


QUARTER_COMB_SPACING_HZ = COMB_SPACING_HZ / 4  # 12.5 Hz: the lines of a buzz that repeats every fourth token
QUARTER_COMB_WIDTH_HZ = 1.0  # narrower than the 50 Hz measure's, so chance stays low: 3 of every 12.5 one-hertz bins


def quarter_comb_share(audio: np.ndarray) -> float:
    """``comb_share`` on a grid four times finer (within 1 Hz of a multiple of 12.5 Hz). The
    codec's decoders put energy 12.5, 25 and 37.5 Hz off the token rate's lines as well as on
    them (their output also repeats every fourth token), which the 50 Hz measure does not count;
    a training term that took energy off the 50 Hz lines moved it there (docs/experiments.md,
    2026-12-07). The music and Opus put 0.17–0.21 there, under chance (0.24)."""
    return comb_share(audio, QUARTER_COMB_SPACING_HZ, QUARTER_COMB_WIDTH_HZ)


def grid_shares(audio: np.ndarray) -> dict[str, float]:
    """``comb_share`` and ``quarter_comb_share`` from one Welch spectrum, named as the evaluations report them."""
    spectrum = _long_term_spectrum(audio)
    return {"comb_share": _share_near_grid(*spectrum, COMB_SPACING_HZ, COMB_WIDTH_HZ),
            "quarter_comb_share": _share_near_grid(*spectrum, QUARTER_COMB_SPACING_HZ, QUARTER_COMB_WIDTH_HZ)}


def dominant_frequency(audio: np.ndarray) -> float:
    """The strongest frequency of a steady tone (Hann-windowed FFT of at least 1 s, zero-padded to
    0.1 Hz bins, parabolic interpolation of the peak)."""
    audio = np.asarray(audio, np.float64)
    n = max(len(audio), 10 * SAMPLE_RATE)
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio)), n=n))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1:k + 2] + 1e-12)
    offset = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c != 0 else 0.0
    return float((k + offset) * SAMPLE_RATE / n)


def cents(frequency: float, reference: float) -> float:
    return float(1200 * np.log2(frequency / reference))
