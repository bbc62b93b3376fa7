"""One request type per mode: what a user asks for, checked before any model runs.

The CLI and the studio build a request and hand it to ``MusicLM.run`` (a stream of chunks) or
``MusicLM.render`` (the whole piece); that dispatch is the only place a mode is told from another.
Each request also says how long its output is (``seconds``), how much of that is new music
(``generated_seconds``, the RTF's denominator) and what to record to reproduce it (``record``).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Union

import numpy as np

from ..audio import SAMPLE_RATE, SILENT_PEAK
from ..melody import MIN_HUM_SECONDS, melody_tokens
from ..prompts import clean_prompt
from .settings import MAX_SECONDS, GenerationSettings

MAX_SEGMENTS = 50
MAX_BLEND = 8  # sources in one blend of prompts and clips (live mode's sliders, --style)


def check_story(segments) -> list[tuple[str, float]]:
    """A story's (prompt, seconds) segments, tidied, or a ValueError naming the first problem."""
    if not isinstance(segments, (list, tuple)) or not segments:
        raise ValueError("the story has no segments; give at least one (prompt, seconds)")
    if len(segments) > MAX_SEGMENTS:
        raise ValueError(f"the story has {len(segments)} segments; the limit is {MAX_SEGMENTS}")
    tidy = []
    for i, segment in enumerate(segments, 1):
        try:
            text, seconds = segment
            seconds = float(seconds)
        except (TypeError, ValueError):
            raise ValueError(f"segment {i} must be a prompt and a number of seconds") from None
        if not 0 < seconds <= MAX_SECONDS:  # NaN fails too
            raise ValueError(f"segment {i} lasts {seconds} s; each segment needs (0, {MAX_SECONDS:.0f}] seconds")
        try:
            tidy.append((clean_prompt(text if isinstance(text, str) else ""), seconds))
        except ValueError as exc:
            raise ValueError(f"segment {i}: {exc}") from None
    total = sum(seconds for _, seconds in tidy)
    if total > MAX_SECONDS:
        raise ValueError(f"the story lasts {total:g} s; the limit is {MAX_SECONDS:.0f} s")
    return tidy


def parse_story(text: str) -> list[tuple[str, float]]:
    """A story file, ``{"segments": [{"prompt": …, "seconds": …}, …]}``, read as data only."""
    try:
        story = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"the story is not valid JSON ({exc})") from None
    if not isinstance(story, dict) or not isinstance(story.get("segments"), list):
        raise ValueError('a story is {"segments": [{"prompt": "…", "seconds": 12.0}, …]}')
    rows = story["segments"]
    if not all(isinstance(r, dict) for r in rows):
        raise ValueError('each segment is {"prompt": "…", "seconds": 12.0}')
    return check_story([(r.get("prompt"), r.get("seconds")) for r in rows])


def story_json(segments: list[tuple[str, float]]) -> str:
    return json.dumps({"segments": [{"prompt": p, "seconds": s} for p, s in segments]}, indent=1, ensure_ascii=False)


def _optional_prompt(prompt: str | None) -> str | None:
    return clean_prompt(prompt) if (prompt or "").strip() else None


MIN_CLIP_SECONDS = MIN_HUM_SECONDS  # a clip to continue or inpaint: the same floor as a hum


def _check_clip(clip: np.ndarray, verb: str) -> None:
    seconds = len(clip) / SAMPLE_RATE
    if seconds < MIN_CLIP_SECONDS:
        raise ValueError(f"the clip is {seconds:.2f} s long; give at least {MIN_CLIP_SECONDS:.0f} s of music to {verb}")
    if np.abs(clip).max() < SILENT_PEAK:
        raise ValueError(f"the clip is silent: there is nothing to {verb}")


def check_weight(weight) -> float:
    """A blend weight as a float, or a ValueError: a finite number ≥ 0."""
    if not (isinstance(weight, (int, float)) and not isinstance(weight, bool) and np.isfinite(weight) and weight >= 0):
        raise ValueError(f"a blend weight must be a number ≥ 0, got {weight!r}")
    return float(weight)


def _clip_seconds(clip: np.ndarray) -> float:
    return round(len(clip) / SAMPLE_RATE, 2)


class _NewMusic:
    """What every request shares: its output lasts ``seconds``, ``generated_seconds`` of which are
    new music (the RTF's denominator); by default both are ``settings.seconds``."""
    settings: GenerationSettings

    @property
    def seconds(self) -> float:
        return self.settings.seconds

    @property
    def generated_seconds(self) -> float:
        return self.settings.seconds


@dataclass(frozen=True)
class TextRequest(_NewMusic):
    """Text → music."""
    prompt: str
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    mode = "text"

    def __post_init__(self):
        object.__setattr__(self, "prompt", clean_prompt(self.prompt))
        self.settings.check()

    def record(self) -> dict:
        return {"mode": self.mode, "prompt": self.prompt, **asdict(self.settings)}


@dataclass(frozen=True)
class HumRequest(_NewMusic):
    """A hum or whistle (24 kHz mono) → music that follows its tune, in the style of ``style``."""
    hum: np.ndarray
    style: str
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    melody: np.ndarray | None = field(default=None, repr=False)  # the hum's 25 Hz melody tokens, tracked from it when not given
    mode = "hum"

    def __post_init__(self):
        object.__setattr__(self, "style", clean_prompt(self.style))
        self.settings.check()
        if self.melody is None:  # tracked once: a copy with other settings (another candidate's seed) keeps them
            object.__setattr__(self, "melody", melody_tokens(self.hum))  # checks the hum: length, silence, clipping

    def record(self) -> dict:
        return {"mode": self.mode, "prompt": self.style, "melody_frames": int(self.melody.size), **asdict(self.settings)}


@dataclass(frozen=True)
class StoryRequest(_NewMusic):
    """A timeline of (prompt, seconds) segments → one continuous piece; ``settings.seconds`` is
    the segments' total."""
    segments: tuple[tuple[str, float], ...]
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    mode = "story"

    def __post_init__(self):
        segments = tuple(check_story(list(self.segments)))
        object.__setattr__(self, "segments", segments)
        object.__setattr__(self, "settings", replace(self.settings, seconds=sum(s for _, s in segments)))
        self.settings.check()

    def record(self) -> dict:
        return {"mode": self.mode, "segments": [{"prompt": p, "seconds": s} for p, s in self.segments], **asdict(self.settings)}


@dataclass(frozen=True)
class ContinueRequest(_NewMusic):
    """Continue a clip (24 kHz mono) by ``settings.seconds``; a prompt turns it somewhere new,
    without one the clip's own style goes on. The output starts with the clip."""
    clip: np.ndarray
    prompt: str | None = None
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    mode = "continue"

    def __post_init__(self):
        object.__setattr__(self, "prompt", _optional_prompt(self.prompt))
        _check_clip(self.clip, "continue")
        self.settings.check()

    @property
    def seconds(self) -> float:
        return len(self.clip) / SAMPLE_RATE + self.settings.seconds

    def record(self) -> dict:
        return {"mode": self.mode, "prompt": self.prompt, "clip_seconds": _clip_seconds(self.clip), **asdict(self.settings)}


@dataclass(frozen=True)
class InpaintRequest(_NewMusic):
    """Regenerate [start, end) s of a clip (24 kHz mono) and keep the rest; ``settings.seconds``
    is not used."""
    clip: np.ndarray
    start: float
    end: float
    prompt: str | None = None
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    mode = "inpaint"

    def __post_init__(self):
        object.__setattr__(self, "prompt", _optional_prompt(self.prompt))
        try:
            object.__setattr__(self, "start", float(self.start))
            object.__setattr__(self, "end", float(self.end))
        except (TypeError, ValueError):
            raise ValueError("give the range to inpaint as two numbers of seconds") from None
        _check_clip(self.clip, "inpaint")
        self.settings.check()

    @property
    def seconds(self) -> float:
        return len(self.clip) / SAMPLE_RATE

    @property
    def generated_seconds(self) -> float:
        return max(self.end - self.start, 1e-3)

    def record(self) -> dict:
        return {"mode": self.mode, "prompt": self.prompt, "range_s": [self.start, self.end], "clip_seconds": _clip_seconds(self.clip),
                **asdict(self.settings)}


@dataclass(frozen=True)
class StyleRequest(_NewMusic):
    """New music in the style of reference clips (24 kHz mono), a prompt optional beside them:
    M from a weighted blend of the clips' MuLan audio embeddings and the prompt's, in the space
    MuLan shares between text and music. Unlike a continuation, none of a clip's tokens is a
    prompt: only its style goes in, so the music is drawn fresh."""
    clips: tuple[np.ndarray, ...]
    prompt: str | None = None
    weights: tuple[float, ...] | None = None  # one per source, the prompt's first when there is one; None: equal
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    mode = "style"

    def __post_init__(self):
        object.__setattr__(self, "prompt", _optional_prompt(self.prompt))
        clips = tuple(np.asarray(clip, np.float32) for clip in self.clips)
        sources = len(clips) + (self.prompt is not None)
        if not clips:
            raise ValueError("give at least one reference clip to take a style from")
        if sources > MAX_BLEND:
            raise ValueError(f"a style blends at most {MAX_BLEND} clips and prompts, got {sources}")
        for clip in clips:
            _check_clip(clip, "take a style from")
        weights = tuple(check_weight(w) for w in self.weights) if self.weights is not None else (1.0,) * sources
        if len(weights) != sources:
            raise ValueError(f"give one weight per source ({sources}: the prompt first, then each clip), got {len(weights)}")
        if not sum(weights) > 0:
            raise ValueError("every blend weight is 0: give at least one source a weight above 0")
        object.__setattr__(self, "clips", clips)
        object.__setattr__(self, "weights", weights)
        self.settings.check()

    def blend(self) -> list[tuple[str | np.ndarray, float]]:
        """(source, weight) pairs, the prompt first; sources of weight 0 left out."""
        sources = ([self.prompt] if self.prompt is not None else []) + list(self.clips)
        return [(source, weight) for source, weight in zip(sources, self.weights) if weight > 0]

    def record(self) -> dict:
        return {"mode": self.mode, "prompt": self.prompt, "clip_seconds": [_clip_seconds(c) for c in self.clips],
                "weights": list(self.weights), **asdict(self.settings)}


Request = Union[TextRequest, HumRequest, StoryRequest, ContinueRequest, InpaintRequest, StyleRequest]

