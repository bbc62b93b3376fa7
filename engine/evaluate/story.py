"""`eval story` and `eval continuation`: does each segment follow its own prompt, does a continuation follow its clip, and are the seams clean."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE
from ..data.build import read_records
from ..generate.musiclm import MusicLM, collect
from ..generate.settings import GenerationSettings
from ..prompts import stated_bpm
from .common import render_openings
from .metrics import TEMPO_TOLERANCE, estimated_bpm, seam_jump, tempo_error


def _margins(mulan, pieces: list[np.ndarray], prompts: list[str]) -> list[float]:
    """Per piece: MuLan similarity to its own prompt minus the best other prompt."""
    text = mulan.embed_text(prompts).numpy()
    audio = np.stack([mulan.embed_audio(p).numpy() for p in pieces])
    sims = audio @ text.T
    return [float(sims[i, i] - np.delete(sims[i], i).max()) for i in range(len(pieces))]



def eval_story(corpus: Path, checkpoint: Path | None = None, clips: int | None = None, seconds: float = 10.0, seeds: int = 1,
               **settings) -> dict:
    """Story mode: per-segment MuLan margin, and the seams against hard cuts between
    independently generated clips of the same prompts; each tempo story (``_story_tempi``) drawn
    ``seeds`` times. ``settings``: the generator's own to change (``GenerationSettings`` fields),
    its defaults otherwise."""
    t0 = time.perf_counter()
    model = MusicLM.load(checkpoint)
    base = GenerationSettings(**settings)
    stories = STORIES[: clips or len(STORIES)]
    margins, independent_margins, story_seams, cut_seams, rtf = [], [], [], [], []
    seg = int(seconds * SAMPLE_RATE)
    tempo = _story_tempi(model, base, seconds, clips, seeds)
    for i, prompts in enumerate(stories):
        piece = replace(base, seconds=seconds * len(prompts), seed=i)
        audio, info = collect(model.story([(p, seconds) for p in prompts], piece), piece)
        rtf.append(info["rtf"])
        margins += _margins(model.mulan, [audio[k * seg:(k + 1) * seg] for k in range(len(prompts))], list(prompts))
        story_seams += [seam_jump(audio, k * seg) for k in range(1, len(prompts))]
        alone = [model.generate(p, replace(base, seconds=seconds, seed=i))[0] for p in prompts]
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
        "tempo": tempo, "generation_rtf_mean": round(float(np.mean(rtf)), 4), "wall_s": round(time.perf_counter() - t0, 1),
    }


def _story_tempi(model, base: GenerationSettings, seconds: float, clips: int | None, seeds: int) -> dict:
    """Stories whose segments state different tempi (``TEMPO_STORIES``), each drawn with ``seeds``
    seeds: is each segment's own tempo kept (librosa's beat tracker on the segment, its first
    second skipped: the handover)?"""
    stories = TEMPO_STORIES[: clips or len(TEMPO_STORIES)]
    seg, skip = int(seconds * SAMPLE_RATE), SAMPLE_RATE
    draws = []
    for i, prompts in enumerate(stories):
        for draw in range(seeds):
            piece = replace(base, seconds=seconds * len(prompts), seed=100 + i + len(TEMPO_STORIES) * draw)
            audio, _ = collect(model.story([(p, seconds) for p in prompts], piece), piece)
            for k, prompt in enumerate(prompts):
                heard = estimated_bpm(audio[k * seg + skip:(k + 1) * seg])
                draws.append({"prompt": prompt, "seed": piece.seed, "stated": stated_bpm(prompt), "heard": round(heard, 1),
                              "error": round(tempo_error(heard, stated_bpm(prompt)), 4)})
    return {"segments": len(draws), "within_8pct": round(float(np.mean([d["error"] <= TEMPO_TOLERANCE for d in draws])), 4), "draws": draws}


def eval_continuation(corpus: Path, checkpoint: Path | None = None, clips: int | None = None, seconds: float = 10.0,
                      seeds: int = 1, **settings) -> dict:
    """Continuation: is the continuation of a test clip (no new prompt: M from the
    clip itself) closer in MuLan space to its own clip than to an unrelated one; and its seam.
    ``settings``: as ``eval_story``'s."""
    t0 = time.perf_counter()
    model = MusicLM.load(checkpoint)
    base = GenerationSettings(**settings)
    records = read_records(corpus, "test")[: clips or 20]
    prompts = render_openings(corpus, records, seconds)
    own, other, seams = [], [], []
    for i, clip in enumerate(prompts):
        piece = replace(base, seconds=seconds, seed=i)
        audio, _ = collect(model.continuation(clip, None, piece), piece)
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



# ----------------------------------------------------------------------------- story and continuation
STORIES = (  # contrasting neighbours, so a segment that ignored its prompt shows
    ("tender solo piano, slow tempo", "heavy metal with distorted guitar and powerful drums", "calm ambient music with a warm synth pad", "fast techno with an 808 drum machine"),
    ("string quartet with violin and cello", "chiptune with a square lead", "laid-back reggae with a one-drop groove", "energetic rock with crunchy guitar"),
    ("peaceful folk with acoustic guitar and flute", "deep house with synth bass", "jazz swing with upright bass and brushes", "cinematic orchestral strings"),
    ("lo-fi hip hop with Rhodes keys", "country with banjo and fiddle", "dreamy vocal pad, sparse texture", "funky groove with slap bass"),
    ("melancholic cello solo, slow", "happy pop music with piano and drums", "dark ominous ambient drone", "blues with harmonica and shuffle drums"),
)

TEMPO_STORIES = (  # three segments, three stated tempi from 60 to 180 bpm, moved between without a gap
    ("lo-fi hip hop with mellow keys, 75 bpm", "funk with slap bass and clavinet, 105 bpm", "techno with a driving kick drum, 140 bpm"),
    ("slow piano ballad, 62 bpm", "pop rock with guitars and drums, 120 bpm", "drum and bass with fast breakbeats, 172 bpm"),
    ("reggae one-drop groove, 80 bpm", "disco with strings and four-on-the-floor drums, 118 bpm", "punk rock, 180 bpm"),
    ("house music with piano chords, 124 bpm", "hip hop beat with boom bap drums, 90 bpm", "dubstep, half-time drums, 70 bpm"),
)
