"""``python -m engine eval …``: quality metrics as JSON (DESIGN §5)."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from .audio import SAMPLE_RATE, log_mel_l1, multires_stft_distance, si_snr


def opus_roundtrip(audio: np.ndarray, kbps: float) -> np.ndarray:
    """Encode and decode with the reference Opus tools (Debian opus-tools) at ``kbps``, back at 24 kHz."""
    if not shutil.which("opusenc") or not shutil.which("opusdec"):
        raise RuntimeError("Opus baseline needs opus-tools: apt-get install opus-tools")
    with tempfile.TemporaryDirectory() as tmp:
        src, enc, dec = Path(tmp, "in.wav"), Path(tmp, "x.opus"), Path(tmp, "out.wav")
        sf.write(src, audio, SAMPLE_RATE, subtype="PCM_16")
        subprocess.run(["opusenc", "--quiet", "--bitrate", f"{kbps:g}", "--hard-cbr", str(src), str(enc)], check=True)
        subprocess.run(["opusdec", "--quiet", "--rate", str(SAMPLE_RATE), str(enc), str(dec)], check=True)
        out, _ = sf.read(dec, dtype="float32")
    out = out.mean(1) if out.ndim == 2 else out
    out = np.pad(out, (0, max(0, len(audio) - len(out))))[: len(audio)]
    return out.astype(np.float32)


def _metrics(ref: np.ndarray, est: np.ndarray) -> dict:
    r, e = torch.from_numpy(ref), torch.from_numpy(est)
    return {"log_mel_l1": log_mel_l1(r, e), "mr_stft": multires_stft_distance(r, e), "si_snr_db": si_snr(r, e)}


def _mean(rows: list[dict]) -> dict:
    return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}


def eval_codec(corpus: Path, checkpoint: Path | None = None, clips: int | None = None, opus_kbps: tuple[float, ...] = ()) -> dict:
    """Codec quality on the corpus test split for 1…Q levels, code usage, the Opus baseline, speed."""
    from .codec import HOP, load_codec
    from .data.build import read_records

    model = load_codec(checkpoint)
    records = read_records(corpus, "test")[:clips]
    levels = model.cfg.levels
    per_level: dict[int, list[dict]] = {q: [] for q in range(1, levels + 1)}
    opus_rates = tuple(opus_kbps) or (model.cfg.bits_per_second / 1000,)
    opus: dict[float, list[dict]] = {k: [] for k in opus_rates}
    histograms = np.zeros((levels, model.cfg.codebook_size), dtype=np.int64)
    for r in records:
        audio, _ = sf.read(str(Path(corpus) / r["audio"]), dtype="float32")
        audio = audio[: len(audio) // HOP * HOP]
        with torch.inference_mode():
            codes = model.encode(torch.from_numpy(audio)[None])
            for q in range(1, levels + 1):
                per_level[q].append(_metrics(audio, model.decode(codes[:, :q])[0].numpy()))
        for level in range(levels):
            histograms[level] += np.bincount(codes[0, level].numpy(), minlength=model.cfg.codebook_size)
        for kbps in opus_rates:
            opus[kbps].append(_metrics(audio, opus_roundtrip(audio, kbps)))
    probs = histograms / histograms.sum(1, keepdims=True)
    entropy = -(probs * np.log(np.where(probs > 0, probs, 1))).sum(1)
    full = _mean(per_level[levels])
    opus_full = _mean(opus[opus_rates[0]])
    return {
        "clips": len(records),
        "seconds": round(sum(r["seconds"] for r in records), 1),
        "levels": levels,
        "kbps": model.cfg.bits_per_second / 1000,
        "codec": {str(q): _mean(rows) for q, rows in per_level.items()},
        "opus": {f"{k:g}kbps": _mean(rows) for k, rows in opus.items()},
        "log_mel_l1_ratio_vs_opus": round(full["log_mel_l1"] / opus_full["log_mel_l1"], 4),
        "code_usage": [round(float((h > 0).mean()), 4) for h in histograms],
        "code_perplexity": [round(float(np.exp(e)), 1) for e in entropy],
        "speed": codec_speed(model),
    }


def codec_speed(model, seconds: float = 10.0, repeats: int = 3) -> dict:
    """Wall time to encode + decode ``seconds`` of audio, and the latency of the first streamed chunk."""
    wav = torch.from_numpy(np.random.default_rng(0).standard_normal(int(seconds * SAMPLE_RATE)).astype(np.float32) * 0.1)[None]
    times, first = [], []
    with torch.inference_mode():
        codes = model.encode(wav)
        model.decode(codes)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.decode(model.encode(wav))
            times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            next(model.stream_decode(codes[0], chunk_tokens=5))
            first.append(time.perf_counter() - t0)
    return {
        "seconds": seconds,
        "encode_decode_s": round(float(np.median(times)), 4),
        "realtime_x": round(seconds / float(np.median(times)), 1),
        "first_chunk_s": round(float(np.median(first)), 4),
        "threads": torch.get_num_threads(),
    }
