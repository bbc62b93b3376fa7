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
from .metrics import pitch_class_agreement

EVALUATION_CAPTIONS = 30  # eval generation's test captions
TUNING_CAPTIONS = 60  # the next ones, kept apart for choosing generation settings (--tuning)


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


def _metrics(ref: np.ndarray, est: np.ndarray, pitch: bool = True) -> dict:
    r, e = torch.from_numpy(ref), torch.from_numpy(est)
    out = {"log_mel_l1": log_mel_l1(r, e), "mr_stft": multires_stft_distance(r, e), "si_snr_db": si_snr(r, e)}
    return {**out, "pitch_class_agreement": pitch_class_agreement(ref, est)} if pitch else out


def through_codec(codec, audio: np.ndarray) -> np.ndarray:
    """``audio`` encoded and decoded by ``codec``, cut to its length: what a perfect token
    generator would output, the ceiling of every generation metric."""
    device = next(codec.parameters()).device
    with torch.inference_mode():
        return codec.decode(codec.encode(torch.from_numpy(audio)[None].to(device)))[0, : len(audio)].cpu().numpy()


def _mean(rows: list[dict]) -> dict:
    return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}


def eval_codec(corpus: Path, checkpoint: Path | None = None, clips: int | None = None, opus_kbps: tuple[float, ...] = ()) -> dict:
    """Codec quality on the corpus test split for 1…Q levels, code usage, the Opus baseline, speed;
    and the encoder → decoder path without the quantizer, which tells the RVQ's losses from the
    autoencoder's."""
    from .codec import HOP, load_codec
    from .data.build import read_records
    from .lm import COARSE_LEVELS

    model = load_codec(checkpoint)
    records = read_records(corpus, "test")[:clips]
    levels = model.cfg.levels
    per_level: dict[int, list[dict]] = {q: [] for q in range(1, levels + 1)}
    opus_rates = tuple(opus_kbps) or (model.cfg.bits_per_second / 1000,)
    opus: dict[float, list[dict]] = {k: [] for k in opus_rates}
    histograms = np.zeros((levels, model.cfg.codebook_size), dtype=np.int64)
    unquantized = []
    for r in records:
        audio, _ = sf.read(str(Path(corpus) / r["audio"]), dtype="float32")
        audio = audio[: len(audio) // HOP * HOP]
        wav = torch.from_numpy(audio)[None]
        with torch.inference_mode():
            codes = model.encode(wav)
            for q in range(1, levels + 1):  # the notes are judged at the coarse and the full bitrate only
                per_level[q].append(_metrics(audio, model.decode(codes[:, :q])[0].numpy(), pitch=q in (COARSE_LEVELS, levels)))
            unquantized.append(_metrics(audio, model.decode_latents(model.encoder(wav))[0].numpy()))
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
        "unquantized": _mean(unquantized),
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


# ----------------------------------------------------------------------------- MuLan
PARAPHRASE_GROUPS = {  # hand-written; none of these prompts is a training caption
    "calm": ("mellow music", "laid-back music", "chill music", "soothing music", "relaxing music"),
    "energetic": ("energetic music", "upbeat music", "driving music", "music full of energy", "pumped-up music"),
    "sad": ("sad music", "melancholy music", "mournful music", "gloomy music", "tearful music"),
    "dark": ("dark music", "menacing music", "sinister music", "creepy music", "foreboding music"),
}


def _recall(similarity: torch.Tensor, ks: tuple[int, ...] = (1, 5, 10)) -> dict:
    """Text→audio retrieval: row i's own clip is column i."""
    own = similarity.diagonal()[:, None]
    rank = (similarity > own).sum(1)  # 0 = retrieved first
    out = {f"recall@{k}": round(float((rank < k).float().mean()), 4) for k in ks}
    out["median_rank"] = int(rank.median()) + 1
    out["chance@10"] = round(10 / similarity.shape[1], 4)
    return out


def _zero_shot(model, audio: torch.Tensor, labels: list, prompts: dict) -> dict:
    """Accuracy of picking the clip's label among all prompts (one prompt per label)."""
    names = list(prompts)
    text = model.embed_text([prompts[n] for n in names])
    predicted = (audio @ text.t()).argmax(1)
    correct = [names[p] == label for p, label in zip(predicted.tolist(), labels)]
    return {"accuracy": round(float(np.mean(correct)), 4), "classes": len(names), "chance": round(1 / len(names), 4)}


def _paraphrase_consistency(model, audio: torch.Tensor) -> dict:
    """Spearman correlation of the clip rankings two prompts induce, within a paraphrase group vs
    across groups: consistent ranking means within ≫ across."""
    prompts = [(g, p) for g, ps in PARAPHRASE_GROUPS.items() for p in ps]
    scores = (model.embed_text([p for _, p in prompts]) @ audio.t()).numpy()
    ranks = scores.argsort(1).argsort(1).astype(np.float64)
    corr = np.corrcoef(ranks)
    within, across = [], []
    for i in range(len(prompts)):
        for j in range(i + 1, len(prompts)):
            (within if prompts[i][0] == prompts[j][0] else across).append(corr[i, j])
    return {"within_group_spearman": round(float(np.mean(within)), 4), "across_group_spearman": round(float(np.mean(across)), 4),
            "groups": len(PARAPHRASE_GROUPS), "prompts": len(prompts)}


def _cosine(x: torch.Tensor, y: torch.Tensor) -> float:
    return round(float(torch.nn.functional.cosine_similarity(x, y, dim=-1).mean()), 4)


def eval_mulan(corpus: Path, checkpoint: Path | None = None, clips: int | None = None) -> dict:
    """DESIGN §5 MuLan metrics on the test split (held-out wording, progressions, melodies)."""
    from .data.build import read_records
    from .data.captions import GENRE_NAMES, INSTRUMENT_NAMES, MOOD_NAMES
    from .features import corpus_frames
    from .mulan import SentenceCache, load_mulan

    model = load_mulan(checkpoint)
    records = read_records(corpus, "test")[:clips]
    frames = corpus_frames(corpus, records)
    t0 = time.perf_counter()
    per_window = [model.embed_frames(f, per_window=True) for f in frames]
    embed_s = (time.perf_counter() - t0) / len(frames)
    audio = torch.nn.functional.normalize(torch.stack([w.mean(0) for w in per_window]), dim=-1)
    sentences = SentenceCache(Path(corpus) / "cache" / "minilm-captions.npz").embed([r["caption"] for r in records])
    with torch.inference_mode():
        text = model.text_tower(torch.from_numpy(sentences))
    leads = [next(i["program"] for i in r["instruments"] if i["role"] == "lead") for r in records]
    windows_all = torch.cat(per_window)
    return {
        "clips": len(records),
        "handcrafted_features": model.cfg.handcrafted,
        "text_to_audio": _recall(text @ audio.t()),
        "zero_shot_genre": _zero_shot(model, audio, [r["genre"] for r in records], {g: f"{n[0][0]} music" for g, n in GENRE_NAMES.items()}),
        "zero_shot_mood": _zero_shot(model, audio, [r["mood"] for r in records], {m: f"{n[0][0]} music" for m, n in MOOD_NAMES.items()}),
        "zero_shot_lead_instrument": _zero_shot(model, audio, leads, {p: f"music led by {INSTRUMENT_NAMES[p][0][0]}" for p in sorted(set(leads))}),
        "paraphrase": _paraphrase_consistency(model, audio),
        "rvq_cosine": {"audio_clip": _cosine(audio, model.reconstruct(audio)), "audio_window": _cosine(windows_all, model.reconstruct(windows_all)),
                       "text": _cosine(text, model.reconstruct(text))},
        "audio_embed_s_per_20s_clip": round(embed_s, 4),
    }


# ----------------------------------------------------------------------------- semantic tokens
PROBES = ("chord_root", "melody_pitch_class", "beat_phase", "instrument_family")


def probe_labels(record: dict, n: int, rate: float) -> dict[str, np.ndarray]:
    """Per-frame ground truth (−1 where undefined) for ``n`` frames at ``rate`` Hz."""
    t = (np.arange(n) + 0.5) / rate
    chord = np.full(n, -1)
    for c in record["chords"]:
        chord[(t >= c["start"]) & (t < c["end"])] = c["root"]
    pitch = np.full(n, -1)
    for note in record["melody"]:
        pitch[(t >= note["onset"]) & (t < note["onset"] + note["duration"])] = note["pitch"] % 12
    beats = np.asarray(record["beats"])
    idx = np.searchsorted(beats, t, side="right") - 1
    inside = (idx >= 0) & (idx < len(beats) - 1)
    phase = np.full(n, -1)
    i = idx[inside]
    phase[inside] = np.clip(((t[inside] - beats[i]) / (beats[i + 1] - beats[i]) * 4).astype(int), 0, 3)
    lead = next(i["program"] for i in record["instruments"] if i["role"] == "lead") // 8
    family = np.where(pitch >= 0, lead, -1)
    return {"chord_root": chord, "melody_pitch_class": pitch, "beat_phase": phase, "instrument_family": family}


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, steps: int = 300) -> float:
    """Multinomial logistic regression (full batch, L-BFGS); integer inputs are token ids and
    are one-hot encoded. Returns test accuracy."""
    classes = int(max(train_y.max(), test_y.max())) + 1
    if train_x.dtype == torch.long:
        vocab = int(max(train_x.max(), test_x.max())) + 1
        layer = torch.nn.Embedding(vocab, classes)
        torch.nn.init.zeros_(layer.weight)
    else:
        mean, std = train_x.mean(0), train_x.std(0) + 1e-5
        train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
        layer = torch.nn.Linear(train_x.shape[1], classes)
    optimizer = torch.optim.LBFGS(layer.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(train_x), train_y) + 1e-4 * sum(p.pow(2).sum() for p in layer.parameters())
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return round(float((layer(test_x).argmax(1) == test_y).float().mean()), 4)


def _perplexity(tokens: torch.Tensor, vocab: int) -> dict:
    counts = torch.bincount(tokens, minlength=vocab).double()
    p = counts / counts.sum()
    entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
    return {"perplexity": round(float(np.exp(entropy)), 1), "perplexity_fraction": round(float(np.exp(entropy)) / vocab, 4),
            "used_codes": int((counts > 0).sum())}


def eval_semantic(corpus: Path, checkpoint: Path | None = None, clips: int | None = None, probe_train_clips: int = 400,
                  frames_per_clip: int = 150, seed: int = 0) -> dict:
    """Linear probes (chord root, melody pitch class, beat phase, instrument family) on the
    learned tokens and features vs the handcrafted baseline with the same vocabulary, code
    perplexity, and tokenizing speed."""
    from .data.build import read_records
    from .features import SEMANTIC_RATE, corpus_frames, token_frames
    from .semantic import BaselineTokenizer, load_semantic, sample_token_frames

    model = load_semantic(checkpoint)
    vocab = model.cfg.vocab
    train_records = read_records(corpus, "train")[:probe_train_clips]
    test_records = read_records(corpus, "test")[:clips]
    train_frames, test_frames = corpus_frames(corpus, train_records), corpus_frames(corpus, test_records)
    baseline = BaselineTokenizer(vocab)
    baseline.fit(sample_token_frames(train_frames, per_clip=100, seed=seed), seed=seed)
    rng = np.random.default_rng(seed)

    def views(records, frames, subsample):
        cols = {k: [] for k in ("semantic_tokens", "semantic_features", "baseline_tokens", "handcrafted_features")}
        labels = {k: [] for k in PROBES}
        for record, f in zip(records, frames):
            x = torch.from_numpy(f.astype(np.float32))[None]
            feats = model.features(x)[0]
            n = feats.shape[0]
            pick = np.sort(rng.choice(n, size=min(frames_per_clip, n), replace=False)) if subsample else np.arange(n)
            toks = model.quantize(feats[None])[0]
            cols["semantic_tokens"].append(toks[pick])
            cols["semantic_features"].append(feats[pick])
            cols["baseline_tokens"].append(baseline.tokenize_frames(x)[0, :n][pick])
            cols["handcrafted_features"].append(token_frames(x)[0, :n][pick])
            for k, v in probe_labels(record, n, SEMANTIC_RATE).items():
                labels[k].append(torch.from_numpy(v[pick]))
        return {k: torch.cat(v) for k, v in cols.items()}, {k: torch.cat(v) for k, v in labels.items()}

    train_x, train_y = views(train_records, train_frames, subsample=True)
    test_x, test_y = views(test_records, test_frames, subsample=False)
    probes = {}
    for name in PROBES:
        tr, te = train_y[name] >= 0, test_y[name] >= 0
        probes[name] = {view: linear_probe(train_x[view][tr], train_y[name][tr], test_x[view][te], test_y[name][te]) for view in train_x}
        probes[name]["majority_class"] = round(float((test_y[name][te] == torch.bincount(train_y[name][tr]).argmax()).float().mean()), 4)
    wins = sum(probes[p]["semantic_tokens"] > probes[p]["baseline_tokens"] for p in PROBES)

    from .audio import load_audio

    clip = load_audio(Path(corpus) / test_records[0]["audio"])[: 10 * SAMPLE_RATE]  # speed: 10 s, audio in → tokens out
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        model.tokenize(clip)
        times.append(time.perf_counter() - t0)
    return {
        "test_clips": len(test_records), "probe_train_clips": len(train_records), "vocab": vocab, "token_layer": model.cfg.token_layer,
        "probes": probes, "semantic_beats_baseline_on": f"{wins} of {len(PROBES)}",
        "semantic_codes": _perplexity(test_x["semantic_tokens"], vocab), "baseline_codes": _perplexity(test_x["baseline_tokens"], vocab),
        "tokenize_10s_s": round(float(np.median(times)), 4), "torch_threads": torch.get_num_threads(),
    }


# ----------------------------------------------------------------------------- generation
CONTRAST_PAIRS = (  # (A, B): B asks for more percussive, busier and brighter music than A
    ("tender solo piano, slow tempo, calm", "heavy metal with distorted guitar and powerful drums, fast tempo"),
    ("calm ambient music with a warm synth pad, slow tempo", "techno with an 808 drum machine and synth bass, fast tempo"),
    ("melancholic string quartet with violin and cello, slow tempo", "energetic rock with crunchy guitar and a drum kit, fast tempo"),
    ("peaceful folk with nylon-string guitar and flute, unhurried tempo", "chiptune with a square lead and electronic drums, quick tempo"),
    ("dreamy vocal pad, sparse texture, slow tempo", "high-energy house with a drum machine, fast tempo"),
)


def _generation_set(records: list[dict], n: int, tuning: bool = False) -> list[dict]:
    """``n`` test captions, two thirds of them stating a bpm so tempo adherence has enough prompts;
    ``tuning``: drawn from those outside the evaluation's ``EVALUATION_CAPTIONS``, so settings can
    be chosen on captions the reported figures never see."""
    from .data.captions import stated_bpm

    if tuning:
        kept = {r["id"] for r in _generation_set(records, EVALUATION_CAPTIONS)}
        records = [r for r in records if r["id"] not in kept]
    timed = [r for r in records if stated_bpm(r["caption"])][: (2 * n) // 3]
    return timed + [r for r in records if not stated_bpm(r["caption"])][: n - len(timed)]


def _contrast(model, seconds: float, seeds: int) -> dict:
    from .metrics import descriptors
    from .pipeline import GenerationSettings

    pairs = []
    for a, b in CONTRAST_PAIRS:
        deltas = []
        for seed in range(seeds):
            settings = GenerationSettings(seconds=seconds, seed=seed)
            da, db = (descriptors(model.generate(p, settings)[0]) for p in (a, b))
            deltas.append({k: db[k] - da[k] for k in da})
        mean = {k: round(float(np.mean([d[k] for d in deltas])), 4) for k in deltas[0]}
        pairs.append({"a": a, "b": b, "mean_b_minus_a": mean, "moved": all(v > 0 for v in mean.values()),
                      "seeds_all_moved": sum(all(v > 0 for v in d.values()) for d in deltas)})
    per_feature = {k: sum(p["mean_b_minus_a"][k] > 0 for p in pairs) for k in pairs[0]["mean_b_minus_a"]}
    return {"seeds": seeds, "pairs_moved": sum(p["moved"] for p in pairs), "of": len(pairs), "per_feature": per_feature, "pairs": pairs}


def _fine_stage_fidelity(model, corpus: Path, records: list[dict], seconds: float) -> dict:
    """Does stage 3 help? On test renders: the codec's own coarse levels (1–4) completed by stage 3,
    against the coarse levels alone and against all 12 true levels (the codec's ceiling), as
    log-mel L1 to the render (lower is better)."""
    from .lm import COARSE_LEVELS, windowed

    stage3 = model.stages["stage3"]
    rows = []
    for i, record in enumerate(records):
        audio, _ = sf.read(str(Path(corpus) / record["audio"]), dtype="float32", frames=int(seconds * SAMPLE_RATE))
        with torch.inference_mode():
            codes = model.codec.encode(torch.from_numpy(audio)[None])
            coarse = codes[:, :COARSE_LEVELS]
            fine = torch.cat(list(windowed(stage3, coarse.shape[2], [(0, None)], {"A_coarse": coarse}, stage3.cfg.layout.sampling,
                                           torch.Generator().manual_seed(i))), 2)
            decoded = {"coarse_plus_stage3": torch.cat([coarse, fine], 1), "coarse_only": coarse, "all_true_levels": codes}
            reference = torch.from_numpy(audio)
            rows.append({k: log_mel_l1(reference, model.codec.decode(v)[0, : len(audio)]) for k, v in decoded.items()})
    return {"clips": len(rows), **_mean(rows)}


def eval_generation(corpus: Path, checkpoint: Path | None = None, clips: int | None = None, seconds: float = 10.0,
                    seeds: int = 3, tempo_drafts: int | None = None, tuning: bool = False) -> dict:
    """Issue 5's adherence metrics on test captions never seen in training: MuLan cycle
    consistency (MCC) against reference renders of the same captions, tempo adherence, contrasting
    prompt pairs, and Fréchet distances to the test renders — each also for the unconditioned
    generator (null M), the baseline that shows what the text adds. Two more rows locate the
    losses: the render through the codec (what a perfect token generator would reach) and stages
    2–3 run on the render's own S instead of stage 1's ("true_semantic").

    Every caption is generated with ``seeds`` seeds (caption i, round k: seed k × captions + i, so
    round 0 is the one-seed protocol); one draw per caption leaves the MCC ratio ±0.02 and the tempo
    share ±2 prompts, so each round's own figures are reported beside the pooled ones.
    ``tempo_drafts``: the generator's setting, its default if None (1: without tempo drafts);
    ``tuning``: the tuning captions instead (``_generation_set``), ``TUNING_CAPTIONS`` by default."""
    from .data.build import read_records
    from .data.captions import stated_bpm
    from .features import FRAME_RATE, analyze, corpus_frames, window_descriptor
    from .metrics import TEMPO_TOLERANCE, estimated_bpm, frechet_distance, tempo_error
    from .pipeline import GenerationSettings, MusicLM

    t0 = time.perf_counter()
    model = MusicLM.load(checkpoint)
    mulan = model.mulan
    records = read_records(corpus, "test")
    window = int(seconds * FRAME_RATE)
    reference_frames = [f[:, :window].astype(np.float32) for f in corpus_frames(corpus, records)]  # first `seconds` of each test render (cached as float16)
    reference = {"mulan": np.stack([mulan.embed_frames(f).numpy() for f in reference_frames]),
                 "handcrafted": np.stack([window_descriptor(f) for f in reference_frames])}
    index = {r["id"]: i for i, r in enumerate(records)}
    chosen = _generation_set(records, clips or (TUNING_CAPTIONS if tuning else EVALUATION_CAPTIONS), tuning)
    # reference_through_codec: the render encoded and decoded by the codec, what a perfect token generator would reach
    kinds = ("generated", "unconditional", "reference", "reference_through_codec", "true_semantic")
    drawn = ("generated", "unconditional", "true_semantic")  # the kinds that depend on the seed
    mcc = {k: [] for k in kinds}  # per kind: (round, score) pairs
    tempo = {k: [] for k in kinds}  # per kind: (round, relative error) pairs
    embeddings = {k: {"mulan": [], "handcrafted": []} for k in kinds[:2]}
    rtf = []
    for i, record in enumerate(chosen):
        longer, _ = sf.read(str(Path(corpus) / record["audio"]), dtype="float32", frames=int((seconds + 1) * SAMPLE_RATE))
        rendered = longer[: int(seconds * SAMPLE_RATE)]
        slack = max(0, int((seconds + 1) * SAMPLE_RATE) - len(longer))  # a second more of the render: S for every frame
        own_s = model.semantic.tokenize(np.pad(longer, (0, slack)))[None, None]
        text = mulan.embed_text([record["caption"]])[0].numpy()
        bpm = stated_bpm(record["caption"])
        pieces = [(0, "reference", rendered), (0, "reference_through_codec", through_codec(model.codec, rendered))]
        for round_ in range(seeds):
            settings = GenerationSettings(seconds=seconds, seed=round_ * len(chosen) + i,
                                          **({} if tempo_drafts is None else {"tempo_drafts": tempo_drafts}))
            generated, info = model.generate(record["caption"], settings)
            rtf.append(info["rtf"])
            pieces += [(round_, "generated", generated),
                       (round_, "unconditional", model.generate(record["caption"], settings, unconditional=True)[0]),
                       (round_, "true_semantic", model.generate(record["caption"], settings, semantic=own_s)[0])]
        for round_, kind, audio in pieces:
            if kind == "reference":
                emb = reference["mulan"][index[record["id"]]]
            else:
                frames = analyze(torch.from_numpy(audio))[0].numpy()
                emb = mulan.embed_frames(frames).numpy()
            if kind in embeddings:
                embeddings[kind]["mulan"].append(emb)
                embeddings[kind]["handcrafted"].append(window_descriptor(frames))
            mcc[kind].append((round_, float(text @ emb)))
            if bpm:
                tempo[kind].append((round_, tempo_error(estimated_bpm(audio), bpm)))

    def mean(rows, keep=lambda r: True, score=lambda x: x) -> float:
        return round(float(np.mean([score(x) for r, x in rows if keep(r)])), 4)

    def within(error: float) -> bool:
        return error <= TEMPO_TOLERANCE

    scale = {"mulan": 1.0, "handcrafted": reference["handcrafted"].std(0) + 1e-6}  # descriptors mix units: standardize by the renders
    enough = len(chosen) >= 2 and len(records) >= 2  # a covariance needs two samples (the smoke corpus has one test clip)
    frechet = {space: {kind: round(frechet_distance(np.stack(embeddings[kind][space]) / scale[space], reference[space] / scale[space]), 4)
                       if enough else None for kind in embeddings} for space in scale}
    mean_mcc = {k: mean(v) for k, v in mcc.items()}
    rounds = range(seeds)
    return {
        "captions": len(chosen), "caption_set": "tuning" if tuning else "evaluation", "seeds_per_caption": seeds, "tempo_drafts": settings.tempo_drafts, "seconds": seconds, "reference_renders": len(records),
        "mcc": {**mean_mcc, "generated_over_reference": round(mean_mcc["generated"] / mean_mcc["reference"], 4),
                "codec_ceiling_over_reference": round(mean_mcc["reference_through_codec"] / mean_mcc["reference"], 4),
                "per_seed": {k: [mean(mcc[k], lambda r: r == n) for n in rounds] for k in drawn},
                "generated_over_reference_per_seed": [round(mean(mcc["generated"], lambda r: r == n) / mean_mcc["reference"], 4) for n in rounds]},
        "tempo": {"prompts_with_bpm": sum(r == 0 for r, _ in tempo["generated"]),
                  **{f"{k}_within_8pct": mean(v, score=within) if v else None for k, v in tempo.items()},
                  **{f"{k}_median_error": round(float(np.median([e for _, e in v])), 4) if v else None for k, v in tempo.items()},
                  "per_seed_within_8pct": {k: [mean(tempo[k], lambda r: r == n, within) for n in rounds] if tempo[k] else None
                                           for k in drawn}},
        "contrast": _contrast(model, seconds, seeds),
        "fine_stage_log_mel_l1": _fine_stage_fidelity(model, corpus, records[:10], seconds),
        "frechet": frechet,
        "generation_rtf_mean": round(float(np.mean(rtf)), 4),
        "wall_s": round(time.perf_counter() - t0, 1),
    }


# ----------------------------------------------------------------------------- story and continuation
STORIES = (  # contrasting neighbours, so a segment that ignored its prompt shows
    ("tender solo piano, slow tempo", "heavy metal with distorted guitar and powerful drums", "calm ambient music with a warm synth pad", "fast techno with an 808 drum machine"),
    ("string quartet with violin and cello", "chiptune with a square lead", "laid-back reggae with a one-drop groove", "energetic rock with crunchy guitar"),
    ("peaceful folk with acoustic guitar and flute", "deep house with synth bass", "jazz swing with upright bass and brushes", "cinematic orchestral strings"),
    ("lo-fi hip hop with Rhodes keys", "country with banjo and fiddle", "dreamy vocal pad, sparse texture", "funky groove with slap bass"),
    ("melancholic cello solo, slow", "happy pop music with piano and drums", "dark ominous ambient drone", "blues with harmonica and shuffle drums"),
)


def _margins(mulan, pieces: list[np.ndarray], prompts: list[str]) -> list[float]:
    """Per piece: MuLan similarity to its own prompt minus the best other prompt."""
    text = mulan.embed_text(prompts).numpy()
    audio = np.stack([mulan.embed_audio(p).numpy() for p in pieces])
    sims = audio @ text.T
    return [float(sims[i, i] - np.delete(sims[i], i).max()) for i in range(len(pieces))]


def eval_story(corpus: Path, checkpoint: Path | None = None, clips: int | None = None, seconds: float = 10.0, seeds: int = 1) -> dict:
    """Story mode (DESIGN §5): per-segment MuLan margin, and the seams against hard cuts between
    independently generated clips of the same prompts."""
    from .metrics import seam_jump
    from .pipeline import GenerationSettings, MusicLM, collect

    t0 = time.perf_counter()
    model = MusicLM.load(checkpoint)
    stories = STORIES[: clips or len(STORIES)]
    margins, independent_margins, story_seams, cut_seams, rtf = [], [], [], [], []
    seg = int(seconds * SAMPLE_RATE)
    for i, prompts in enumerate(stories):
        settings = GenerationSettings(seconds=seconds * len(prompts), seed=i)
        audio, info = collect(model.story([(p, seconds) for p in prompts], settings), settings)
        rtf.append(info["rtf"])
        margins += _margins(model.mulan, [audio[k * seg:(k + 1) * seg] for k in range(len(prompts))], list(prompts))
        story_seams += [seam_jump(audio, k * seg) for k in range(1, len(prompts))]
        alone = [model.generate(p, GenerationSettings(seconds=seconds, seed=i))[0] for p in prompts]
        independent_margins += _margins(model.mulan, alone, list(prompts))
        joined = np.concatenate(alone)
        cut_seams += [seam_jump(joined, k * seg) for k in range(1, len(prompts))]
    return {
        "stories": len(stories), "segments": len(margins), "segment_seconds": seconds,
        "margin_positive_fraction": round(float(np.mean([m > 0 for m in margins])), 4),
        "margin_mean": round(float(np.mean(margins)), 4),
        "independent_clips_margin_positive_fraction": round(float(np.mean([m > 0 for m in independent_margins])), 4),
        "seam_jump_story_median": round(float(np.median(story_seams)), 3),
        "seam_jump_hard_cut_median": round(float(np.median(cut_seams)), 3),
        "generation_rtf_mean": round(float(np.mean(rtf)), 4), "wall_s": round(time.perf_counter() - t0, 1),
    }


def eval_continuation(corpus: Path, checkpoint: Path | None = None, clips: int | None = None, seconds: float = 10.0,
                      seeds: int = 1) -> dict:
    """Continuation (DESIGN §5): is the continuation of a test clip (no new prompt: M from the
    clip itself) closer in MuLan space to its own clip than to an unrelated one; and its seam."""
    from .data.build import read_records
    from .metrics import seam_jump
    from .pipeline import GenerationSettings, MusicLM, collect

    t0 = time.perf_counter()
    model = MusicLM.load(checkpoint)
    records = read_records(corpus, "test")[: clips or 20]
    prompts = [sf.read(str(Path(corpus) / r["audio"]), dtype="float32", frames=int(seconds * SAMPLE_RATE))[0] for r in records]
    own, other, seams = [], [], []
    for i, clip in enumerate(prompts):
        settings = GenerationSettings(seconds=seconds, seed=i)
        audio, _ = collect(model.continuation(clip, None, settings), settings)
        given = len(audio) - int(seconds * SAMPLE_RATE)
        new = model.mulan.embed_audio(audio[given:]).numpy()
        own.append(float(new @ model.mulan.embed_audio(clip).numpy()))
        unrelated = prompts[(i + len(prompts) // 2) % len(prompts)] if len(prompts) > 1 else -clip
        other.append(float(new @ model.mulan.embed_audio(unrelated).numpy()))
        seams.append(seam_jump(audio, given))
    return {
        "clips": len(prompts), "prompt_seconds": seconds, "continuation_seconds": seconds,
        "closer_to_own_clip_fraction": round(float(np.mean([o > u for o, u in zip(own, other)])), 4),
        "similarity_own_mean": round(float(np.mean(own)), 4), "similarity_unrelated_mean": round(float(np.mean(other)), 4),
        "seam_jump_median": round(float(np.median(seams)), 3), "wall_s": round(time.perf_counter() - t0, 1),
    }


# ----------------------------------------------------------------------------- stage LMs
def eval_stages(corpus: Path, checkpoint: Path | None = None, clips: int | None = None) -> dict:
    """Held-out loss of each stage LM on test-split token crops (nats per token; uniform = ln 1024
    = 6.93), with its own M, the null M and a shuffled M: what the text conditioning is worth (and,
    for the melody-conditioned stages, the same with no or a shuffled melody)."""
    from .lm import hears_melody, held_out_loss, load_stage, with_melody
    from .models import CHECKPOINT_DIR
    from .tokens import load_token_cache

    tokens = load_token_cache(corpus, "test")
    result = {}
    for stage in ("stage1", "stage2", "stage3"):
        model = load_stage(stage, (Path(checkpoint) if checkpoint else CHECKPOINT_DIR) / f"{stage}.safetensors")
        hums = hears_melody(model.cfg.layout)
        crops = with_melody(corpus, "test", tokens) if hums else tokens
        row = {k: held_out_loss(model, crops, batches=clips or 16, prefix=k) for k in ("own", "null", "shuffled")}
        result[stage] = row if model.cfg.layout.prefix is not None else {"own": row["own"]}
        if hums:  # what a hum is worth: the crop's own tracked melody, none, another crop's
            result[stage].update({f"melody_{k}": held_out_loss(model, crops, batches=clips or 16, melody=k) for k in ("none", "shuffled")})
    return {"uniform": round(float(np.log(1024)), 4), **result}


# ----------------------------------------------------------------------------- melody
def _melody_start(record: dict) -> float:
    """Where the lead line begins, on the 40 ms frame grid: hums are cut from there."""
    from .melody import FRAME_RATE

    return float(np.floor(min(n["onset"] for n in record["melody"]) * FRAME_RATE) / FRAME_RATE)


def _lead_window(path: Path, record: dict, seconds: float) -> np.ndarray:
    """``seconds`` of a clip's audio (its render or its melody rendition) from where the lead starts."""
    from .audio import SAMPLE_RATE, load_audio

    start = int(_melody_start(record) * SAMPLE_RATE)
    return load_audio(path)[start:start + int(seconds * SAMPLE_RATE)]


def _notes_hum(record: dict, seconds: float, seed: int) -> np.ndarray:
    """A synthetic hum of a clip's ground-truth lead line (sine + vibrato + breath), moved by
    octaves into a comfortable humming register."""
    from .melody import synthetic_hum

    start = _melody_start(record)
    notes = [(n["onset"] - start, n["duration"], n["pitch"]) for n in record["melody"] if start <= n["onset"] < start + seconds]
    shift = 12 * int(round((57 - np.median([p for _, _, p in notes])) / 12)) if notes else 0
    return synthetic_hum([(o, d, p + shift) for o, d, p in notes], seconds, seed=seed)


def eval_melody(corpus: Path, checkpoint: Path | None = None, clips: int | None = None, seconds: float = 10.0) -> dict:
    """Issue 6 (paper §5.3): hum → music on held-out test melodies, as the corpus renditions on
    patches never used in training and as synthetic hums. For each hum: generate with the clip's
    caption as the text style, track the output's dominant pitch with the same tracker, and take
    the chroma cosine against the hum's track. Baselines: the same outputs against another clip's
    hum (shuffled), and text-only generations (no melody) against the hum. Calibration: the clip's
    own render, which holds that very melody among its other parts, scored the same way
    ("reference_render"), shows what a perfect follower reaches under this metric, and the same
    render through the codec ("reference_through_codec") what anything this generator outputs can
    reach. Hums start where the lead line does."""
    from .data.build import read_records
    from .melody import FRAME_RATE, TrackerConfig, melody_tokens, tokens, track
    from .metrics import melody_chroma_cosine
    from .pipeline import GenerationSettings, MusicLM

    t0 = time.perf_counter()
    model = MusicLM.load(checkpoint)
    records = [r for r in read_records(corpus, "test") if r.get("rendition")][: clips or 20]
    dominant = TrackerConfig(voicing=0.0)  # the output's dominant pitch on every audible frame
    length = int(seconds * FRAME_RATE)
    result = {}
    text_only, reference, coded = {}, {}, {}
    for kind in ("rendition", "synthetic"):
        hums, outputs = [], []
        for seed, record in enumerate(records):
            if kind == "rendition":
                audio = _lead_window(Path(corpus) / record["rendition"]["audio"], record, seconds)
            else:
                audio = _notes_hum(record, seconds, seed)
            hum = melody_tokens(audio)
            settings = GenerationSettings(seconds=seconds, seed=seed)
            generated, _ = model.generate(record["caption"], settings, melody=hum)
            hums.append(hum[:length])
            outputs.append(tokens(track(generated, cfg=dominant)))
            if seed not in text_only:
                plain, _ = model.generate(record["caption"], settings)
                text_only[seed] = tokens(track(plain, cfg=dominant))
                render = _lead_window(Path(corpus) / record["audio"], record, seconds)
                reference[seed] = tokens(track(render, cfg=dominant))
                coded[seed] = tokens(track(through_codec(model.codec, render), cfg=dominant))
        own = [melody_chroma_cosine(h, o) for h, o in zip(hums, outputs)]
        shuffled = [melody_chroma_cosine(hums[(i + 1) % len(hums)], o) for i, o in enumerate(outputs)]
        plain = [melody_chroma_cosine(h, text_only[i]) for i, h in enumerate(hums)]
        rendered = [melody_chroma_cosine(h, reference[i]) for i, h in enumerate(hums)]
        rendered_coded = [melody_chroma_cosine(h, coded[i]) for i, h in enumerate(hums)]
        result[kind] = {"chroma_cosine": round(float(np.mean(own)), 4), "shuffled": round(float(np.mean(shuffled)), 4),
                        "text_only": round(float(np.mean(plain)), 4), "reference_render": round(float(np.mean(rendered)), 4),
                        "reference_through_codec": round(float(np.mean(rendered_coded)), 4),
                        "ratio_to_shuffled": round(float(np.mean(own) / max(np.mean(shuffled), 1e-9)), 3),
                        "per_clip": [round(x, 3) for x in own]}
    targets = {"chroma_cosine": 0.55, "ratio_to_shuffled": 2.0}
    met = all(result[k][m] >= v for k in result for m, v in targets.items())
    return {"clips": len(records), "seconds": seconds, **result, "targets": targets, "met": met,
            "wall_s": round(time.perf_counter() - t0, 1)}


# ----------------------------------------------------------------------------- memorization
def sinkhorn_distance(a: np.ndarray, b: np.ndarray, cost: np.ndarray, reg: float = 0.05, iters: int = 300) -> float:
    """Entropic optimal-transport cost between two histograms (each summing to 1) under ``cost``."""
    kernel = np.exp(-cost / reg)
    u = np.ones_like(a)
    for _ in range(iters):
        v = b / (kernel.T @ u + 1e-30)
        u = a / (kernel @ v + 1e-30)
    return float((u[:, None] * kernel * v[None, :] * cost).sum())


def _histogram_distance(x: np.ndarray, y: np.ndarray, centroid_cost: np.ndarray) -> float:
    """OT between the token histograms of two sequences, on the tokens they use (≤ 2 × length)."""
    support = np.union1d(x, y)
    a = np.array([np.mean(x == t) for t in support])
    b = np.array([np.mean(y == t) for t in support])
    return sinkhorn_distance(a, b, centroid_cost[np.ix_(support, support)])


def eval_memorization(corpus: Path, checkpoint: Path | None = None, clips: int | None = None, prompt_seconds: float = 5.0,
                      continuation_seconds: float = 5.0, permuted_pairs: int = 10_000, seed: int = 0) -> dict:
    """Paper §4.4: greedy stage-1 continuations of training prompts (S given, M of the clip)
    against the training targets. Exact match: every token equal. Approximate match: optimal
    transport between token histograms with the semantic k-means centroid distances as cost,
    below a threshold set so that ≤ 0.01 % of permuted (unrelated) pairs pass."""
    from dataclasses import replace as _replace

    from .features import SEMANTIC_RATE
    from .lm import load_stage
    from .models import CHECKPOINT_DIR
    from .semantic import load_semantic
    from .tokens import load_token_cache

    root = Path(checkpoint) if checkpoint else CHECKPOINT_DIR
    stage1 = load_stage("stage1", root / "stage1.safetensors")
    centroids = load_semantic(root / "semantic.safetensors").token_vectors().numpy().astype(np.float64)
    cost = np.sqrt(((centroids[:, None] - centroids[None]) ** 2).sum(-1))
    cost /= cost.max()
    tokens = load_token_cache(corpus, "train")
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(tokens["S"]), size=min(clips or 100, len(tokens["S"])), replace=False)
    p, c = int(prompt_seconds * SEMANTIC_RATE), int(continuation_seconds * SEMANTIC_RATE)
    if p + c > tokens["S"].shape[1]:  # clips shorter than prompt + continuation: split them in halves
        p = tokens["S"].shape[1] // 2
        c = tokens["S"].shape[1] - p
    greedy = _replace(stage1.cfg.layout.sampling, temperature=0.0)
    generated, targets = [], []
    t0 = time.perf_counter()
    for i in rows:
        s = tokens["S"][i]
        out = stage1.generate(c, prefix=tokens["M"][i, 0][None], sampling=greedy, prompt=s[None, None, :p])
        generated.append(out[0, 0].numpy())
        targets.append(s[p:p + c].numpy())
    own = np.array([_histogram_distance(g, t, cost) for g, t in zip(generated, targets)])
    n = len(rows)  # distinct ordered pairs of different clips, without repeats
    picks = rng.choice(n * (n - 1), size=min(permuted_pairs, n * (n - 1)), replace=False)
    pairs = [(int(k // (n - 1)), int(k % (n - 1) + (k % (n - 1) >= k // (n - 1)))) for k in picks]
    unrelated = np.array([_histogram_distance(generated[i], targets[j], cost) for i, j in pairs])
    allowed = int(1e-4 * len(unrelated))  # permuted pairs the threshold may let through: ≤ 0.01 %
    threshold = float(np.sort(unrelated)[allowed])  # a match is strictly closer than this
    exact = np.array([np.array_equal(g, t) for g, t in zip(generated, targets)])
    held = np.array([len(np.unique(t)) == 1 for t in targets])  # one token throughout: silence or a held sound, nothing to memorize
    return {
        "clips": len(rows), "prompt_seconds": p / SEMANTIC_RATE, "continuation_seconds": c / SEMANTIC_RATE,
        "exact_match_rate": round(float(exact.mean()), 4),
        "held_sound_targets": int(held.sum()), "exact_matches_on_held_sound": int((exact & held).sum()),
        "exact_match_rate_excluding_held_sound": round(float(exact[~held].mean()), 4) if (~held).any() else None,
        "approximate_match_rate": round(float(np.mean(own < threshold)), 4),
        "threshold": round(threshold, 5), "permuted_pairs": len(pairs),
        "permuted_false_positive_rate": round(float(np.mean(unrelated < threshold)), 6),
        "own_distance_median": round(float(np.median(own)), 4), "unrelated_distance_median": round(float(np.median(unrelated)), 4),
        "token_accuracy_mean": round(float(np.mean([np.mean(g == t) for g, t in zip(generated, targets)])), 4),
        "own_distances": [round(float(d), 4) for d in own],
        "wall_s": round(time.perf_counter() - t0, 1),
    }
