"""`eval dynamics`: is loud music louder than quiet music? Held-out prompt pairs that ask for the
same kind of music (or a different one) soft and loud, judged by loudness meters this repository
did not train (ITU-R BS.1770 via pyloudnorm, and RMS), and stories that go quiet → loud → quiet."""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE
from ..generate.musiclm import MusicLM, collect
from ..generate.settings import GenerationSettings
from .generation import FREE_FORM_PROMPTS
from .metrics import rms

STORY_SWELL = 1.5  # a story's loud middle must be this many times either neighbour's RMS
HANDOVER_SECONDS = 1.0  # the start of a story segment, where the last one still sounds, is not judged


def integrated_loudness(audio: np.ndarray) -> float:
    import pyloudnorm

    return float(pyloudnorm.Meter(SAMPLE_RATE).integrated_loudness(np.asarray(audio, np.float64)))


def eval_dynamics(corpus: Path, checkpoint: Path | None = None, clips: int | None = None, seconds: float = 10.0, seeds: int = 3,
                  **settings) -> dict:
    """Each held-out [quiet, loud] pair (``dynamics_pairs`` of the free-form prompts) at ``seeds``
    seeds: is the loud one louder (LUFS)? Each quiet → loud → quiet story (``dynamics_stories``):
    is the middle's RMS at least ``STORY_SWELL`` × either neighbour's? ``settings``: the
    generator's own to change (``GenerationSettings`` fields; ``level_stage=False``: the models' own loudness)."""
    t0 = time.perf_counter()
    held_out = json.loads(FREE_FORM_PROMPTS.read_text())
    pairs = held_out["dynamics_pairs"][: clips or None]
    stories = held_out["dynamics_stories"][: clips or None]
    model = MusicLM.load(checkpoint)
    base = GenerationSettings(**settings)
    draws = []
    for quiet, loud in pairs:
        for seed in range(seeds):
            draw = replace(base, seconds=seconds, seed=seed)
            levels = [integrated_loudness(model.generate(p, draw)[0]) for p in (quiet, loud)]
            draws.append({"quiet": quiet, "loud": loud, "seed": seed, "lufs": [round(v, 2) for v in levels], "louder": levels[1] > levels[0]})
    swells = []
    seg, skip = int(seconds * SAMPLE_RATE), int(HANDOVER_SECONDS * SAMPLE_RATE)
    for i, prompts in enumerate(stories):
        draw = replace(base, seconds=seconds * len(prompts), seed=i)
        audio, _ = collect(model.story([(p, seconds) for p in prompts], draw), draw)
        level = [rms(audio[k * seg + skip:(k + 1) * seg]) for k in range(len(prompts))]
        ratio = level[1] / max(level[0], level[2], 1e-9)
        swells.append({"prompts": prompts, "rms": [round(v, 4) for v in level], "middle_over_neighbours": round(ratio, 3)})
    return {
        "pairs": len(pairs), "seeds": seeds, "seconds": seconds, "level_stage": base.level_stage,
        "loud_louder_fraction": round(float(np.mean([d["louder"] for d in draws])), 4),
        "loudness_gap_lufs_median": round(float(np.median([d["lufs"][1] - d["lufs"][0] for d in draws])), 2),
        "stories": len(stories),
        "story_swell_fraction": round(float(np.mean([s["middle_over_neighbours"] >= STORY_SWELL for s in swells])), 4),
        "story_swell_median": round(float(np.median([s["middle_over_neighbours"] for s in swells])), 3),
        "draws": draws, "story_draws": swells, "wall_s": round(time.perf_counter() - t0, 1),
    }
