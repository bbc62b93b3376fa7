"""What a prompt says, read the same way by the corpus captions and by generation: its tempo (a
bpm, or a tempo word and the range of bpm it covers), and the prompt itself tidied or refused."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MAX_PROMPT_CHARS = 500

# (words the training captions use, held-out words only test captions use)
TEMPO_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "slow": (("slow", "unhurried"), ("leisurely",)),
    "medium": (("medium", "moderate"), ("mid-tempo",)),
    "fast": (("fast", "quick"), ("brisk",)),
}
TEMPO_RANGES = {"slow": (0.0, 85.0), "medium": (85.0, 125.0), "fast": (125.0, float("inf"))}  # bpm, each word's bucket [low, high)
_BPM = re.compile(r"(\d{2,3})\s*bpm", re.IGNORECASE)
_TEMPO_WORD_BUCKET = {word.lower(): bucket for bucket, (seen, held_out) in TEMPO_WORDS.items() for word in seen + held_out}
_TEMPO_WORD_PATTERN = re.compile(r"\b(" + "|".join(map(re.escape, _TEMPO_WORD_BUCKET)) + r")\b", re.IGNORECASE)


def tempo_bucket(bpm: float) -> str:
    return next(bucket for bucket, (low, high) in TEMPO_RANGES.items() if low <= bpm < high)


def stated_bpm(text: str) -> float | None:
    """The tempo a prompt asks for ("… at 96 bpm"), or None."""
    match = _BPM.search(text)
    return float(match.group(1)) if match else None


@dataclass(frozen=True)
class StatedTempo:
    """A prompt's tempo, read once per request: the bpm it names (None for a tempo word) and the
    range [low, high) of bpm that answers it."""
    bpm: float | None
    range: tuple[float, float]

    @classmethod
    def at(cls, bpm: float, tolerance: float) -> "StatedTempo":
        """A bpm, answered by anything within ``tolerance`` (relative) of it."""
        return cls(bpm, (bpm * (1 - tolerance), bpm * (1 + tolerance)))


def stated_tempo(text: str, tolerance: float) -> StatedTempo | None:
    """The tempo a prompt asks for: its bpm ± ``tolerance`` (relative), else the bucket of its
    first tempo word ("slow", "brisk" …, the words the captions use), else None."""
    bpm = stated_bpm(text)
    if bpm is not None:
        return StatedTempo.at(bpm, tolerance)
    word = _TEMPO_WORD_PATTERN.search(text)
    return StatedTempo(None, TEMPO_RANGES[_TEMPO_WORD_BUCKET[word.group(1).lower()]]) if word else None


def clean_prompt(prompt: str | None) -> str:
    """The prompt tidied, or a ValueError that says what to write instead. Odd Unicode is made
    plain: NFKC (full-width letters, ligatures), no control or invisible format characters (NUL,
    zero-width spaces, bidi overrides), no lone surrogates; emoji and every script stay."""
    text = unicodedata.normalize("NFKC", (prompt or "").encode("utf-8", "ignore").decode("utf-8"))
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text if unicodedata.category(c) != "Cf")
    text = " ".join(text.split())
    if not text:
        raise ValueError('the prompt is empty; describe the music, e.g. "calm violin melody over a guitar riff, 90 bpm"')
    if len(text) > MAX_PROMPT_CHARS:
        raise ValueError(f"the prompt is {len(text)} characters long; the limit is {MAX_PROMPT_CHARS}")
    return text
