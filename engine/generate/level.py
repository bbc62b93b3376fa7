"""The level stage: a piece as loud or as quiet as its words ask, after the codec.

The shipped models learnt from a corpus levelled to one loudness, so they make every piece about
as loud; models trained on loud and quiet renders follow the words but lose text adherence
(docs/experiments.md, 2026-12-04). A prompt that states its dynamics ("hushed", "thunderous",
``prompts.stated_loudness``) therefore sets a loudness the output is steered to as it streams, the
way a mastering engineer rides a fader: each chunk's gain is the target minus the loudness
(ITU-R BS.1770) of the music so far, ramped from the last chunk's gain so nothing clicks, and
peaks that the gain would push past the ceiling are bent under it. A prompt that states none
keeps the models' own level, so unstated prompts and sets that already follow the words are
untouched. In a story each segment has its own target, and the gain glides between them.
"""
from __future__ import annotations

import numpy as np
import torch
import torchaudio.functional as AF

from ..audio import SAMPLE_RATE
from ..data.dynamics import LOUDNESS_RANGE_LUFS, PEAK_CEILING
from ..prompts import stated_loudness

MAX_GAIN_DB = 15.0  # the most the stage moves a piece: the corpus's whole range is 20 LU
MEASURED_SECONDS = 6.0  # the music the next gain is read from: long enough to hold a bar or two
SHORTEST_MEASURE = 0.4  # one BS.1770 gating block
KNEE = 0.7  # peaks above this are bent smoothly under the ceiling instead of clipped


def target_loudness(prompt: str) -> float | None:
    """The integrated loudness (LUFS) a prompt's dynamics word asks for: the middle of its band
    as the corpus renders it (``DYNAMICS_RANGES`` within ``LOUDNESS_RANGE_LUFS``), or None."""
    band = stated_loudness(prompt)
    if band is None:
        return None
    quietest, loudest = LOUDNESS_RANGE_LUFS
    return (max(band[0], quietest) + min(band[1], loudest)) / 2


def bend_peaks(audio: np.ndarray) -> np.ndarray:
    """Samples above ``KNEE`` follow a tanh curve that never reaches ``PEAK_CEILING``: no clipping."""
    over = np.abs(audio) > KNEE
    if not over.any():
        return audio
    room = PEAK_CEILING - KNEE
    out = audio.copy()
    out[over] = np.sign(audio[over]) * (KNEE + room * np.tanh((np.abs(audio[over]) - KNEE) / room))
    return out


class LevelStage:
    """Steers a stream of chunks to loudness targets. A piece whose targets are known in advance
    gives them as (start second, LUFS or None: the models' own level), in time order, the first at
    0, and calls the stage on each chunk with its start; a stream steered as it plays (live) calls
    ``aim`` when its words change and ``apply`` on each chunk."""

    def __init__(self, targets: list[tuple[float, float | None]] = ((0.0, None),)):
        self.targets = list(targets)
        self.target: float | None = None
        self.gain_db: float | None = None  # the gain the last chunk ended on
        self.heard = np.zeros(0, np.float32)  # the music since the target was set, before the gain
        self.segment = -1

    @classmethod
    def of_targets(cls, targets: list[tuple[float, float | None]], after_music: bool = False) -> "LevelStage | None":
        """The stage for (start second, LUFS or None) targets, or None when no segment has one.
        ``after_music``: the stream goes on from music heard at its own level (a continuation), so
        the gain glides from 0 dB instead of starting where the target puts it."""
        if all(target is None for _, target in targets):
            return None
        stage = cls(targets)
        if after_music:
            stage.gain_db = 0.0
        return stage

    def __call__(self, audio: np.ndarray, start: float) -> np.ndarray:
        """``audio``: the chunk that begins ``start`` seconds into the stream."""
        segment = sum(begin <= start + 1e-6 for begin, _ in self.targets[1:])
        if segment != self.segment:
            self.segment = segment
            self.aim(self.targets[segment][1])
        return self.apply(audio)

    def aim(self, target: float | None) -> None:
        """Steer toward ``target`` from the next chunk on, measuring afresh (the same target goes on as it was)."""
        if target != self.target:
            self.target, self.heard = target, np.zeros(0, np.float32)

    def apply(self, audio: np.ndarray) -> np.ndarray:
        """The next chunk at its gain, ramped from the last chunk's."""
        if not len(audio):
            return audio
        gain = 0.0
        if self.target is not None:  # only a target needs the music measured
            self.heard = np.concatenate([self.heard, audio])[-int(MEASURED_SECONDS * SAMPLE_RATE):]
            gain = self._gain_to(self.target)
        start_gain = gain if self.gain_db is None else self.gain_db
        self.gain_db = gain
        if start_gain == gain == 0.0:  # the models' own level: the music as they made it
            return audio
        ramp = 10 ** (np.linspace(start_gain, gain, len(audio), dtype=np.float32) / 20)
        return bend_peaks((audio * ramp).astype(np.float32))

    def _gain_to(self, target: float) -> float:
        """The gain (dB) that brings the music heard so far to ``target``, within ``MAX_GAIN_DB``."""
        loudness = measured_loudness(self.heard)
        if loudness is None:  # silence so far: nothing to steer yet
            return self.gain_db or 0.0
        return float(np.clip(target - loudness, -MAX_GAIN_DB, MAX_GAIN_DB))


def measured_loudness(audio: np.ndarray) -> float | None:
    """Integrated loudness (ITU-R BS.1770, LUFS) of ``audio``, a clip shorter than one gating
    block repeated to fill it; None for silence."""
    if len(audio) < SHORTEST_MEASURE * SAMPLE_RATE:
        audio = np.resize(audio, int(SHORTEST_MEASURE * SAMPLE_RATE))
    loudness = float(AF.loudness(torch.from_numpy(np.ascontiguousarray(audio, np.float32))[None], SAMPLE_RATE))
    return loudness if np.isfinite(loudness) else None


def source_loudness(source: str | np.ndarray) -> float | None:
    """The loudness a source of a blend asks for: a prompt's stated one (None if it states none), a
    reference clip's own, within the corpus's range (a clip mastered louder than any piece the
    models heard asks for the loudest they did)."""
    if isinstance(source, str):
        return target_loudness(source)
    loudness = measured_loudness(source)
    return None if loudness is None else float(np.clip(loudness, *LOUDNESS_RANGE_LUFS))


def blend_loudness(blend: tuple[tuple[str | np.ndarray, float], ...] | list[tuple[str | np.ndarray, float]]) -> float | None:
    """The loudness a weighted blend of prompts and clips asks for: the weighted mean of the
    loudness of the sources that say one (a prompt that does not leaves it to the others), or None
    when none does."""
    stated = [(source_loudness(source), weight) for source, weight in blend]
    stated = [(target, weight) for target, weight in stated if target is not None and weight > 0]
    if not stated:
        return None
    return float(sum(target * weight for target, weight in stated) / sum(weight for _, weight in stated))
