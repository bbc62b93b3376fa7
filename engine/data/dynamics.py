"""Loud and quiet in the corpus. A corpus levelled to one loudness teaches no model what "hushed"
or "full power" sounds like, so each clip is rendered at a loudness that follows its music (the
mood, the genre, how busy the arrangement is, whether it is still the intro) with a spread of
its own, over a musical range; the caption says so when the clip is clearly soft or loud, in
words read from the loudness the render measured."""
from __future__ import annotations

import numpy as np

from ..prompts import DYNAMICS_RANGES

LOUDNESS_RANGE_LUFS = (-32.0, -12.0)
PEAK_CEILING = 10 ** (-1.0 / 20)  # -1 dBFS: no render, and no level the level stage sets, peaks above it
MOOD_LUFS = {  # where each mood's clips centre
    "calm": -26.0, "dreamy": -25.0, "sad": -25.0, "romantic": -23.0, "dark": -21.0,
    "tense": -19.0, "playful": -19.0, "happy": -18.0, "epic": -15.5, "energetic": -14.5,
}
GENRE_OFFSET_DB = {  # genres played softer or harder than their mood alone says
    "ambient": -3.0, "string quartet": -2.0, "bossa nova": -2.0, "lo-fi": -2.0, "folk": -1.0,
    "jazz swing": -1.0, "waltz": -1.0, "rock": 2.0, "metal": 3.0, "techno": 2.0, "house": 1.0, "funk": 1.0,
}
DENSITY_DB_PER_DOUBLING = 1.5  # busier than the corpus's typical NOTES_PER_SECOND: louder
NOTES_PER_SECOND = 18.0  # about the corpus's median (all parts)
INTRO_OFFSET_DB = -2.0  # a clip cropped inside the intro (no lead line yet) sits below the piece
SPREAD_DB = 2.5  # the clip's own deviation (standard deviation)


def loudness_target(genre: str, mood: str, notes_per_second: float, intro: bool, rng: np.random.Generator) -> float:
    """The integrated loudness (LUFS) to render one clip at."""
    target = (MOOD_LUFS[mood] + GENRE_OFFSET_DB.get(genre, 0.0)
              + DENSITY_DB_PER_DOUBLING * np.log2(max(notes_per_second, 0.5) / NOTES_PER_SECOND)
              + (INTRO_OFFSET_DB if intro else 0.0) + rng.normal(0.0, SPREAD_DB))
    return float(np.clip(target, *LOUDNESS_RANGE_LUFS))


def dynamics_word(lufs: float) -> str | None:
    """The dynamics a caption names for a clip at ``lufs``: the narrowest band of
    ``prompts.DYNAMICS_RANGES`` that holds it, the words a prompt asking for it would use (None:
    the middle, louder than "soft" and quieter than "loud", goes unsaid, as most captions leave it)."""
    quietest, loudest = LOUDNESS_RANGE_LUFS
    held = [(min(high, loudest) - max(low, quietest), key) for key, (low, high) in DYNAMICS_RANGES.items() if low <= lufs < high]
    return min(held)[1] if held else None
