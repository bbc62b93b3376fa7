"""Audio in and out, and the signal metrics of docs/ARCHITECTURE.md (Metrics).

Reading goes through soundfile (torchaudio's I/O would need torchcodec); resampling and mel
spectrograms through torchaudio. Everything internal is 24 kHz mono float32.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from .files import atomic_write

SAMPLE_RATE = 24_000
MAX_INPUT_SECONDS = 600.0
MAX_INPUT_BYTES = 50_000_000
SILENT_PEAK = 1e-3  # quieter than this everywhere: nothing to follow or continue


class AudioError(ValueError):
    """Input audio we cannot use, with a message meant for the user."""


def to_mono_24k(audio: np.ndarray, sr: int) -> np.ndarray:
    """Downmix (frames, channels) or (frames,) to mono and resample to 24 kHz; rejects bad signals."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if audio.ndim != 1:
        raise AudioError(f"expected mono or multi-channel audio, got an array of shape {audio.shape}")
    if audio.size == 0:
        raise AudioError("the audio is empty")
    if not np.isfinite(audio).all():
        raise AudioError("the audio contains NaN or infinite samples")
    if audio.size / sr > MAX_INPUT_SECONDS:
        raise AudioError(f"the audio is {audio.size / sr:.0f} s long; the limit is {MAX_INPUT_SECONDS:.0f} s")
    if sr != SAMPLE_RATE:
        audio = torchaudio.functional.resample(torch.from_numpy(audio), sr, SAMPLE_RATE).numpy()
    return audio.astype(np.float32)


def load_audio(path: str | Path) -> np.ndarray:
    """Any file soundfile reads (WAV, FLAC, OGG, MP3 …), any rate and channel count → 24 kHz mono."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"no such file: {path}")
    if path.stat().st_size > MAX_INPUT_BYTES:
        raise AudioError(f"{path.name} is {path.stat().st_size / 1e6:.0f} MB; the limit is {MAX_INPUT_BYTES / 1e6:.0f} MB")
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for non-audio or truncated files
        raise AudioError(f"cannot read {path.name} as audio ({exc})") from None
    return to_mono_24k(audio, sr)


def save_audio(path: str | Path, audio: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    """Write 16-bit PCM through a temp file and rename: never a half-written file. Never clips."""
    path = Path(path)
    audio = np.asarray(audio, dtype=np.float32)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 1.0:
        audio = audio / peak
    fmt = path.suffix.lstrip(".").upper() or "WAV"
    atomic_write(path, lambda tmp: sf.write(str(tmp), audio, sr, subtype="PCM_16", format=fmt))


# ----------------------------------------------------------------------------- metrics
@lru_cache(maxsize=8)
def _mel(n_fft: int, hop: int, n_mels: int) -> torchaudio.transforms.MelSpectrogram:
    return torchaudio.transforms.MelSpectrogram(
        SAMPLE_RATE, n_fft=n_fft, hop_length=hop, n_mels=n_mels, power=1.0, center=True
    )


def log_mel(x: torch.Tensor, n_fft: int = 1024, hop: int = 256, n_mels: int = 80) -> torch.Tensor:
    return torch.log10(_mel(n_fft, hop, n_mels).to(x.device)(x).clamp(min=1e-5))


def log_mel_l1(ref: torch.Tensor, est: torch.Tensor) -> float:
    """80 mel bands, n_fft 1024, hop 256, log10 with floor 1e-5, mean absolute difference."""
    n = min(ref.shape[-1], est.shape[-1])
    return float((log_mel(ref[..., :n]) - log_mel(est[..., :n])).abs().mean())


STFT_RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))


def stft_distance(ref: torch.Tensor, est: torch.Tensor, resolutions=STFT_RESOLUTIONS) -> torch.Tensor:
    """Mean over resolutions of spectral convergence + log-magnitude L1 (differentiable: the
    codec trains on it and reports it)."""
    n = min(ref.shape[-1], est.shape[-1])
    ref, est = ref[..., :n], est[..., :n]
    total = ref.new_zeros(())
    for n_fft, hop in resolutions:
        window = torch.hann_window(n_fft, device=ref.device)
        r = torch.stft(ref, n_fft, hop, window=window, return_complex=True).abs()
        e = torch.stft(est, n_fft, hop, window=window, return_complex=True).abs()
        sc = torch.linalg.norm(r - e) / torch.linalg.norm(r).clamp(min=1e-7)
        total = total + sc + (torch.log(r.clamp(min=1e-5)) - torch.log(e.clamp(min=1e-5))).abs().mean()
    return total / len(resolutions)


def multires_stft_distance(ref: torch.Tensor, est: torch.Tensor) -> float:
    return float(stft_distance(ref, est))


def si_snr(ref: torch.Tensor, est: torch.Tensor) -> float:
    """Scale-invariant signal-to-noise ratio in dB (higher is better)."""
    n = min(ref.shape[-1], est.shape[-1])
    ref, est = ref[..., :n] - ref[..., :n].mean(), est[..., :n] - est[..., :n].mean()
    target = (est * ref).sum() / ref.pow(2).sum().clamp(min=1e-8) * ref
    noise = est - target
    return float(10 * torch.log10(target.pow(2).sum().clamp(min=1e-8) / noise.pow(2).sum().clamp(min=1e-8)))
