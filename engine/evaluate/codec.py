"""`eval codec`: the codec on the test split at 1…12 levels, against Opus, and its speed; `eval
recordings`: the same judges on recorded music the corpus never made."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..audio import SAMPLE_RATE, load_audio
from ..data.build import pitch_class_roll, read_records
from ..data.recorded import HELD_OUT_MUSIC, recordings
from ..data.render import render_midi
from ..nn.codec import HOP, load_codec
from ..nn.lm import COARSE_LEVELS
from .common import mean_rows, opus_roundtrip, paired_gap, signal_metrics, through_codec
from .metrics import grid_shares
from .transcribe import note_f1, score_notes, transcribe


def eval_codec(corpus: Path, checkpoint: Path | None = None, clips: int | None = None, opus_kbps: tuple[float, ...] = (),
               soundfont: Path | None = None) -> dict:
    """Codec quality on the corpus test split for 1…Q levels, code usage, the Opus baseline, speed;
    the encoder → decoder path without the quantizer, which tells the RVQ's losses from the
    autoencoder's; and the notes a transcriber nobody here trained finds in the original, the
    round trip and Opus, against the score (``note_f1_vs_score``); the comb's gaps clip by clip
    (``comb_gaps``). ``soundfont``: each test clip is rendered again from its MIDI through this
    SoundFont instead (timbres the corpus never used)."""
    model = load_codec(checkpoint)
    records = read_records(corpus, "test")[:clips]
    levels = model.cfg.levels
    per_level: dict[int, list[dict]] = {q: [] for q in range(1, levels + 1)}
    opus_rates = tuple(opus_kbps) or (model.cfg.bits_per_second / 1000,)
    opus: dict[float, list[dict]] = {k: [] for k in opus_rates}
    histograms = np.zeros((levels, model.cfg.codebook_size), dtype=np.int64)
    unquantized, original = [], []
    notes = {"true_positive": 0, "predicted": 0, "sounding": 0}  # the note head's verdicts, from the first levels alone
    transcribed: dict[str, list[float]] = {"original": [], "codec": [], "opus": []}
    for r in records:
        audio = (render_midi(Path(corpus) / r["midi"], r["seconds"], soundfont) if soundfont
                 else sf.read(str(Path(corpus) / r["audio"]), dtype="float32")[0])
        audio = audio[: len(audio) // HOP * HOP]
        wav = torch.from_numpy(audio)[None]
        original.append(grid_shares(audio))
        with torch.inference_mode():
            codes = model.encode(wav)
            for q in range(1, levels + 1):  # the notes are judged at the coarse and the full bitrate only
                round_trip = model.decode(codes[:, :q])[0].numpy()  # the last: every level, which the transcriber judges below
                per_level[q].append(signal_metrics(audio, round_trip, pitch=q in (COARSE_LEVELS, levels)))
            unquantized.append(signal_metrics(audio, model.decode_latents(model.encoder(wav))[0].numpy()))
            if model.note_head is not None:
                heard = (model.pitch_class_logits(codes)[0] > 0).numpy()
                sounding = pitch_class_roll(corpus, r, heard.shape[1], SAMPLE_RATE / HOP) > 0
                notes["true_positive"] += int((heard & sounding).sum())
                notes["predicted"] += int(heard.sum())
                notes["sounding"] += int(sounding.sum())
        for level in range(levels):
            histograms[level] += np.bincount(codes[0, level].numpy(), minlength=model.cfg.codebook_size)
        through_opus = {kbps: opus_roundtrip(audio, kbps) for kbps in opus_rates}
        for kbps, version in through_opus.items():
            opus[kbps].append(signal_metrics(audio, version))
        score = score_notes(Path(corpus) / r["midi"], len(audio) / SAMPLE_RATE)
        for name, version in (("original", audio), ("codec", round_trip), ("opus", through_opus[opus_rates[0]])):
            transcribed[name].append(note_f1(score, transcribe(version)))
    probs = histograms / histograms.sum(1, keepdims=True)
    entropy = -(probs * np.log(np.where(probs > 0, probs, 1))).sum(1)
    full = mean_rows(per_level[levels])
    opus_full = mean_rows(opus[opus_rates[0]])
    return {
        "clips": len(records),
        "seconds": round(sum(r["seconds"] for r in records), 1),
        "soundfont": str(soundfont) if soundfont else "the corpus renders",
        "levels": levels,
        "kbps": model.cfg.bits_per_second / 1000,
        "codec": {str(q): mean_rows(rows) for q, rows in per_level.items()},
        "unquantized": mean_rows(unquantized),
        "opus": {f"{k:g}kbps": mean_rows(rows) for k, rows in opus.items()},
        "log_mel_l1_ratio_vs_opus": round(full["log_mel_l1"] / opus_full["log_mel_l1"], 4),
        **original_shares(original),  # beside each row's comb shares: what the music itself has
        **comb_gaps(per_level[levels], opus[opus_rates[0]], original),
        "code_usage": [round(float((h > 0).mean()), 4) for h in histograms],
        "code_perplexity": [round(float(np.exp(e)), 1) for e in entropy],
        "speed": codec_speed(model),
        "note_f1_vs_score": {name: round(float(np.mean(f1s)), 4) for name, f1s in transcribed.items()},
        **({"note_head_f1": round(2 * notes["true_positive"] / max(1, notes["predicted"] + notes["sounding"]), 4)}
           if model.note_head is not None else {}),
    }


EXCERPT_SECONDS = 10.0


def eval_recordings(corpus: Path | None = None, checkpoint: Path | None = None, clips: int | None = None,
                    folders: tuple[str, ...] = HELD_OUT_MUSIC) -> dict:
    """The codec and Opus at its bitrate on the middle ``EXCERPT_SECONDS`` of recorded music
    (default: 24 pieces from the Debian packages reserved for held-out evaluation): log-mel L1,
    pitch class kept, comb share, and the share of the notes basic-pitch hears in the original
    that it hears again in the round trip (``notes_kept_f1``). ``corpus`` is not read."""
    model = load_codec(checkpoint)
    kbps = model.cfg.bits_per_second / 1000
    rows, opus, original = [], [], []
    files = recordings(tuple(folders), clips or 24)
    for path in files:
        audio = load_audio(path)
        start = max(0, len(audio) // 2 - int(EXCERPT_SECONDS * SAMPLE_RATE) // 2)
        excerpt = audio[start:start + int(EXCERPT_SECONDS * SAMPLE_RATE)]
        excerpt = excerpt[: len(excerpt) // HOP * HOP]
        ours, theirs = through_codec(model, excerpt), opus_roundtrip(excerpt, kbps)
        heard = transcribe(excerpt)  # no score here: the notes a transcriber hears in the original are the reference
        rows.append({**signal_metrics(excerpt, ours), "notes_kept_f1": note_f1(heard, transcribe(ours))})
        opus.append({**signal_metrics(excerpt, theirs), "notes_kept_f1": note_f1(heard, transcribe(theirs))})
        original.append(grid_shares(excerpt))
    codec, reference = mean_rows(rows), mean_rows(opus)
    return {"clips": len(files), "excerpt_seconds": EXCERPT_SECONDS, "sources": sorted({str(p.parent) for p in files}), "codec": codec,
            f"opus_{kbps:g}kbps": reference, "log_mel_l1_ratio_vs_opus": round(codec["log_mel_l1"] / reference["log_mel_l1"], 4),
            **original_shares(original), **comb_gaps(rows, opus, original)}


def original_shares(original: list[dict]) -> dict:
    """The music's own ``grid_shares``, averaged over the clips, each named ``original_<share>``."""
    return {f"original_{share}": value for share, value in mean_rows(original).items()}


def comb_gaps(codec: list[dict], opus: list[dict], original: list[dict]) -> dict:
    """The codec's comb shares over Opus's and over the music's own (rows with ``grid_shares``'
    keys), on the token rate's grid and on the grid a quarter of it apart, paired clip by clip
    (``paired_gap``)."""
    gaps = {}
    for share in original[0]:
        ours, grid = [row[share] for row in codec], share.removesuffix("_share")
        gaps[f"{grid}_over_opus"] = paired_gap(ours, [row[share] for row in opus])
        gaps[f"{grid}_over_original"] = paired_gap(ours, [row[share] for row in original])
    return gaps


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

