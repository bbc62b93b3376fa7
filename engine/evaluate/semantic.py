"""`eval semantic`: linear probes (chord root, melody pitch class, beat phase) on the semantic tokens against the handcrafted baseline."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..audio import SAMPLE_RATE, load_audio
from ..data.build import read_records
from ..features import SEMANTIC_RATE, corpus_frames, token_frames
from ..nn.semantic import BaselineTokenizer, load_semantic
from ..train.semantic import sample_token_frames


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



# ----------------------------------------------------------------------------- semantic tokens
PROBES = ("chord_root", "melody_pitch_class", "beat_phase", "instrument_family")

