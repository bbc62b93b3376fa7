"""`eval style`: new music in the style of a reference clip (``StyleRequest``) — is the style
heard, and is the clip copied?

Each of N held-out clips (the test split's renders, or recordings never trained on) is the
only source of a piece of new music. Heard: the piece's MuLan audio embedding is closer to its
own reference than to the other N − 1 (identification), and, by an ear this repo did not train,
the same question on librosa's MFCC statistics. Copied: the longest run of semantic tokens the
piece shares with its reference, at any offsets; an exact match is a shared run as long as
``eval memorization``'s continuations (5 s).
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..data.build import read_records
from ..data.recorded import middle_excerpt, recordings
from ..features import SEMANTIC_RATE
from ..generate.musiclm import MusicLM
from ..generate.requests import StyleRequest
from ..generate.settings import GenerationSettings
from .common import render_openings
from .dynamics import integrated_loudness
from .metrics import mfcc_statistics

STYLE_CLIPS = 20
EXACT_RUN_SECONDS = 5.0  # eval memorization's continuation length


def longest_shared_run(a: np.ndarray, b: np.ndarray) -> int:
    """The length of the longest run of equal tokens in ``a`` and ``b`` at any offsets (longest
    common substring, one diagonal of the match matrix at a time)."""
    best = 0
    for shift in range(-len(b) + 1, len(a)):
        equal = a[max(shift, 0):][: len(b) - max(-shift, 0)] == b[max(-shift, 0):][: len(a) - max(shift, 0)]
        if equal.any():
            edges = np.flatnonzero(np.diff(np.concatenate([[0], equal.astype(np.int8), [0]])))
            best = max(best, int((edges[1::2] - edges[::2]).max()))
    return best


def _references(corpus: Path, count: int, seconds: float, folders: tuple[str, ...] | None) -> list[np.ndarray]:
    """``count`` clips of ``seconds``: the first test renders, or the middle of recordings in ``folders``."""
    if folders:
        return [middle_excerpt(str(path), seconds) for path in recordings(folders, count)]
    return render_openings(corpus, read_records(corpus, "test")[:count], seconds)


def _identified(outputs: np.ndarray, references: np.ndarray, owners: np.ndarray) -> np.ndarray:
    """Row i: whether output i is nearer (cosine) to its own reference ``owners[i]`` than to every other reference."""
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)
    similarity = unit(outputs) @ unit(references).T
    return similarity.argmax(1) == owners


def eval_style(corpus: Path, checkpoint: Path | None = None, clips: int | None = None, seconds: float = 10.0, seeds: int = 1,
               folders: tuple[str, ...] | None = None, words: str | None = None, words_weight: float = 0.5, **settings) -> dict:
    """``seeds`` pieces per reference clip (one clip is 1 / N of the figure: more draws tell a
    setting from seed noise). ``settings``: the generator's own to change (``GenerationSettings`` fields), its defaults otherwise.
    ``words``: mixed into every style at ``words_weight`` (the clip at 1), so the two guidance
    scales can be weighed: how often the clip is still heard, and how near MuLan hears the words."""
    t0 = time.perf_counter()
    base = GenerationSettings(seconds=seconds, **settings)
    model = MusicLM.load(checkpoint)
    references = _references(corpus, clips or STYLE_CLIPS, seconds, folders)
    if len(references) < 2:
        raise FileNotFoundError("eval style needs at least two reference clips")
    outputs, runs, owners = [], [], []
    reference_tokens = [model.semantic.tokenize(reference).numpy() for reference in references]
    for draw in range(seeds):
        for i, reference in enumerate(references):
            seed = draw * len(references) + i
            request = StyleRequest((reference,), words, (words_weight, 1.0) if words else None, replace(base, seed=seed))
            made: dict = {}
            outputs.append(np.concatenate([c.audio for c in model.style(request, tokens_out=made)]))
            owners.append(i)
            runs.append(longest_shared_run(made["S"][0, 0].cpu().numpy(), reference_tokens[i]))
    owners = np.array(owners)
    mulan = {kind: np.stack([model.mulan.embed_audio(a).numpy() for a in audios]) for kind, audios in (("out", outputs), ("ref", references))}
    mfcc = {kind: np.stack([mfcc_statistics(a) for a in audios]) for kind, audios in (("out", outputs), ("ref", references))}
    scale = mfcc["ref"].std(0) + 1e-6  # standardized by the references, so no coefficient outweighs the rest
    centre = mfcc["ref"].mean(0)
    heard = _identified(mulan["out"], mulan["ref"], owners)
    heard_mfcc = _identified((mfcc["out"] - centre) / scale, (mfcc["ref"] - centre) / scale, owners)
    exact = np.array(runs) >= int(EXACT_RUN_SECONDS * SEMANTIC_RATE)
    loudness = {kind: np.array([integrated_loudness(a) for a in audios]) for kind, audios in (("out", outputs), ("ref", references))}
    level_gap = loudness["out"] - loudness["ref"][owners]  # pyloudnorm's meter, not the level stage's
    return {
        "clips": len(references), "seeds": seeds, "source": "recordings" if folders else "test renders", "seconds": seconds,
        "guidance": base.guidance, "style_guidance": base.style_guidance, "style_coarse_guidance": base.style_coarse_guidance,
        "tone_match": base.tone_match,
        **({"words": words, "words_weight": words_weight,
            "words_cosine": round(float((mulan["out"] @ model.mulan.embed_text([words])[0].numpy()).mean()), 4)} if words else {}),
        "closest_to_own_reference": {"mulan": round(float(heard.mean()), 4), "mfcc": round(float(heard_mfcc.mean()), 4),
                                     "chance": round(1 / len(references), 4)},
        "own_reference_cosine": round(float(np.mean([o @ mulan["ref"][i] for o, i in zip(mulan["out"], owners)])), 4),
        "exact_match_rate": round(float(exact.mean()), 4),
        "loudness": {"references_lufs": [round(float(loudness["ref"].min()), 1), round(float(loudness["ref"].max()), 1)],
                     "outputs_lufs": [round(float(loudness["out"].min()), 1), round(float(loudness["out"].max()), 1)],
                     "median_abs_gap_lu": round(float(np.median(np.abs(level_gap))), 2),
                     "correlation": round(float(np.corrcoef(loudness["out"], loudness["ref"][owners])[0, 1]), 3)},
        "longest_shared_run_s": round(max(runs) / SEMANTIC_RATE, 2), "median_shared_run_s": round(float(np.median(runs)) / SEMANTIC_RATE, 2),
        "targets": {"closest_to_own_reference": 0.8, "exact_match_rate": 0.0},
        "wall_s": round(time.perf_counter() - t0, 1),
    }
