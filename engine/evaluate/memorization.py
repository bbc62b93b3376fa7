"""`eval memorization` (paper §4.4): exact and approximate matches of greedy semantic continuations against their training targets."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..checkpoints import model_set
from ..features import SEMANTIC_RATE
from ..nn.lm import load_stage
from ..nn.semantic import load_semantic
from ..train.tokens import load_token_cache


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
    models = model_set(checkpoint)
    stage1 = load_stage("stage1", models["stage1"])
    centroids = load_semantic(models["semantic"]).token_vectors().numpy().astype(np.float64)
    cost = np.sqrt(((centroids[:, None] - centroids[None]) ** 2).sum(-1))
    cost /= cost.max()
    tokens = load_token_cache(corpus, "train")
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(tokens["S"]), size=min(clips or 100, len(tokens["S"])), replace=False)
    p, c = int(prompt_seconds * SEMANTIC_RATE), int(continuation_seconds * SEMANTIC_RATE)
    if p + c > tokens["S"].shape[1]:  # clips shorter than prompt + continuation: split them in halves
        p = tokens["S"].shape[1] // 2
        c = tokens["S"].shape[1] - p
    greedy = replace(stage1.cfg.layout.sampling, temperature=0.0)
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

