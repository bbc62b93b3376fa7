"""Frame features: the log-mel input of the learned towers and the handcrafted descriptors.

One analysis at 100 Hz (hop 240) serves three users, so they all see the same signal:
- MuLan's audio tower reads the log-mel and, fused, the window descriptors of "Diverse Neural
  Audio Embeddings — Bringing Features back" (chroma and MFCC statistics, onset rate, rhythm);
- the semantic tokenizer reads the log-mel and learns to predict clusters of handcrafted frames;
- the baseline tokenizer is k-means on those handcrafted frames (chroma + MFCC + onset, 25 Hz).

Features of a corpus are computed once and cached next to it (``<corpus>/cache/frames``).
"""
from __future__ import annotations

from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from .audio import SAMPLE_RATE, load_audio
from .files import atomic_write

FRAME_HOP = 240  # 100 Hz analysis frames
FRAME_RATE = SAMPLE_RATE // FRAME_HOP
N_FFT = 1024
N_MELS = 64
N_MFCC = 20
SEMANTIC_RATE = 25  # Hz, the paper's w2v-BERT token rate
FRAMES_PER_TOKEN = FRAME_RATE // SEMANTIC_RATE  # 4
TEMPO_LAGS = np.arange(FRAME_RATE * 60 // 200, FRAME_RATE * 60 // 50 + 1)  # beat periods for 50–200 bpm
RHYTHM_BINS = 24
CHANNELS = {"mel": slice(0, N_MELS), "chroma": slice(N_MELS, N_MELS + 12),
            "mfcc": slice(N_MELS + 12, N_MELS + 12 + N_MFCC), "onset": slice(N_MELS + 12 + N_MFCC, N_MELS + 13 + N_MFCC)}
N_CHANNELS = N_MELS + 13 + N_MFCC
FEATURE_VERSION = "frames-v1"


@lru_cache(maxsize=1)
@torch.inference_mode(False)
def _filters() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Built once per process as ordinary tensors, even when the first caller runs in inference
    mode (MuLan's ``embed_audio``): a later training step in the same process differentiates
    through them (the codec fine-tune's descriptor terms)."""
    import librosa

    mel = torchaudio.functional.melscale_fbanks(N_FFT // 2 + 1, 30.0, SAMPLE_RATE / 2, N_MELS, SAMPLE_RATE, norm="slaney", mel_scale="slaney")
    chroma = torch.from_numpy(librosa.filters.chroma(sr=SAMPLE_RATE, n_fft=N_FFT, tuning=0.0)).float().T  # (bins, 12)
    dct = torchaudio.functional.create_dct(N_MFCC, N_MELS, norm="ortho")  # (mels, mfcc)
    return mel, chroma, dct


def analyze(audio: torch.Tensor) -> torch.Tensor:
    """(N,) or (B, N) waveform at 24 kHz → (B, N_CHANNELS, T) at 100 Hz: log-mel, chroma, MFCC, onset.

    Chroma is computed from the power spectrum above 60 Hz and normalized per frame; the onset
    envelope is the mean positive log-mel flux (the "spectral flux" novelty curve).
    """
    if audio.dim() == 1:
        audio = audio[None]
    mel_fb, chroma_fb, dct = _filters()
    window = torch.hann_window(N_FFT, device=audio.device)
    spec = torch.stft(audio, N_FFT, FRAME_HOP, window=window, return_complex=True).abs().pow(2)  # (B, bins, T)
    mel = torch.log(torch.einsum("bft,fm->bmt", spec, mel_fb).clamp(min=1e-6))
    chroma = torch.einsum("bft,fc->bct", spec, chroma_fb)
    chroma = chroma / chroma.amax(1, keepdim=True).clamp(min=1e-6)
    mfcc = torch.einsum("bmt,mc->bct", mel, dct)
    flux = torch.relu(mel[:, :, 1:] - mel[:, :, :-1]).mean(1, keepdim=True)
    onset = torch.cat([torch.zeros_like(flux[:, :, :1]), flux], dim=2)
    return torch.cat([mel, chroma, mfcc, onset], dim=1)


def token_frames(frames: torch.Tensor) -> torch.Tensor:
    """(B, N_CHANNELS, T@100 Hz) → handcrafted frames at 25 Hz (B, T/4, 12 + 20 + 1): the baseline's input."""
    t = frames.shape[2] // FRAMES_PER_TOKEN * FRAMES_PER_TOKEN
    pooled = frames[:, :, :t].reshape(frames.shape[0], N_CHANNELS, -1, FRAMES_PER_TOKEN)
    chroma_mfcc = pooled[:, CHANNELS["chroma"].start:CHANNELS["mfcc"].stop].mean(3)
    onset = pooled[:, CHANNELS["onset"]].amax(3)
    return torch.cat([chroma_mfcc, onset], dim=1).transpose(1, 2)


def window_descriptor(frames: np.ndarray) -> np.ndarray:
    """(N_CHANNELS, T) of one window → a fixed vector: chroma and MFCC mean/std, onset rate and
    strength, and the onset autocorrelation over beat periods (a tempo fingerprint)."""
    chroma, mfcc = frames[CHANNELS["chroma"]], frames[CHANNELS["mfcc"]]
    onset = frames[CHANNELS["onset"]][0].astype(np.float64)
    seconds = onset.size / FRAME_RATE
    centered = onset - onset.mean()
    peaks = (onset[1:-1] > onset[:-2]) & (onset[1:-1] >= onset[2:]) & (onset[1:-1] > onset.mean() + onset.std())
    spectrum = np.fft.rfft(centered, n=2 * onset.size)
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[: onset.size]
    acf = acf / max(acf[0], 1e-9)
    lags = TEMPO_LAGS[TEMPO_LAGS < onset.size]
    rhythm = np.interp(np.linspace(0, len(lags) - 1, RHYTHM_BINS), np.arange(len(lags)), acf[lags])
    return np.concatenate([
        chroma.mean(1), chroma.std(1), mfcc.mean(1), mfcc.std(1),
        [peaks.sum() / seconds, onset.mean(), onset.std()], rhythm,
    ]).astype(np.float32)


DESCRIPTOR_DIM = 12 * 2 + N_MFCC * 2 + 3 + RHYTHM_BINS


def windows(n_frames: int, window: int, stride: int) -> list[int]:
    """Start frames of the sliding windows over a clip (MuLan: 10 s windows, 1 s stride); a clip
    shorter than a window gets one window."""
    if n_frames <= window:
        return [0]
    return list(range(0, n_frames - window + 1, stride))


# ----------------------------------------------------------------------------- corpus cache
def _cache_path(corpus: Path, clip_id: str) -> Path:
    return Path(corpus) / "cache" / FEATURE_VERSION / f"{clip_id}.npy"


def stored_frames(audio: np.ndarray) -> np.ndarray:
    """(N,) waveform → its (N_CHANNELS, T) frames in float16, as the corpus cache stores them (so
    tokens computed from them match the token cache's)."""
    with torch.inference_mode():
        return analyze(torch.from_numpy(audio))[0].numpy().astype(np.float16)


def clip_frames(corpus: Path, record: dict) -> np.ndarray:
    """The (N_CHANNELS, T) float16 frames of one corpus clip, computed once and cached."""
    path = _cache_path(corpus, record["id"])
    if path.exists():
        return np.load(path)
    frames = stored_frames(load_audio(Path(corpus) / record["audio"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to a path
            np.save(f, frames)

    atomic_write(path, write)
    return frames


def _clip_frames_job(job: tuple[Path, dict]) -> np.ndarray:
    torch.set_num_threads(1)
    return clip_frames(*job)


def corpus_frames(corpus: Path, records: list[dict], workers: int = 2) -> list[np.ndarray]:
    """Frames of many clips; missing cache entries are computed in ``workers`` processes."""
    missing = [r for r in records if not _cache_path(corpus, r["id"]).exists()]
    if missing and workers > 1:
        with get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_clip_frames_job, [(Path(corpus), r) for r in missing], chunksize=8):
                pass
    return [clip_frames(corpus, r) for r in records]


class MelStem(nn.Module):
    """The learned input of MuLan's audio tower and of the semantic model: 100 Hz log-mel,
    standardized per band with statistics fitted on training audio, then a strided convolution
    down to the encoder's frame rate. (B, 64, T) → (B, T / stride, dim)."""
    def __init__(self, dim: int, stride: int):
        super().__init__()
        self.register_buffer("mel_mean", torch.zeros(N_MELS, 1))
        self.register_buffer("mel_std", torch.ones(N_MELS, 1))
        self.conv = nn.Conv1d(N_MELS, dim, 2 * stride, stride, padding=stride // 2)

    def fit(self, mel: np.ndarray) -> None:
        """Per-band mean and std from (64, frames) of training log-mel."""
        self.mel_mean.copy_(torch.from_numpy(mel.mean(1, keepdims=True).astype(np.float32)))
        self.mel_std.copy_(torch.from_numpy(mel.std(1, keepdims=True).astype(np.float32) + 1e-3))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.conv((mel - self.mel_mean) / self.mel_std)).transpose(1, 2)
