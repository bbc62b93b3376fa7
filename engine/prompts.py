"""What a prompt says, read the same way by the corpus captions and by generation: its tempo (a
bpm, or a tempo word and the range of bpm it covers), its loudness (a dynamics word and the range
of integrated loudness it covers), and the prompt itself tidied or refused."""
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
# words people write for a tempo that the captions never use: they are read, never trained on
TEMPO_ALIASES = {"slow": ("largo", "lento", "adagio", "grave", "downtempo", "down-tempo", "slow-tempo"),
                 "medium": ("andante", "moderato", "allegretto", "midtempo", "mid tempo", "medium-tempo"),
                 "fast": ("allegro", "vivace", "presto", "prestissimo", "uptempo", "up-tempo", "fast-paced", "speedy")}
MIN_BPM, MAX_BPM = 30.0, 300.0  # a number outside is not a tempo ("808 drum machine" has no unit anyway)

_TEMPO_WORD_BUCKET = {word.lower(): bucket for bucket, (seen, held_out) in TEMPO_WORDS.items() for word in seen + held_out}
_TEMPO_WORD_BUCKET.update({word: bucket for bucket, words in TEMPO_ALIASES.items() for word in words})
_TEMPO_WORD_PATTERN = re.compile(r"\b(" + "|".join(map(re.escape, sorted(_TEMPO_WORD_BUCKET, key=len, reverse=True))) + r")\b", re.IGNORECASE)

# numbers written out ("ninety", "a hundred and twenty", "eighty-five") become digits before the tempo is read
_UNITS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                                     "sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)}
_NUMBER_WORD = r"(?:" + "|".join(sorted([*_UNITS, *_TENS], key=len, reverse=True)) + r"|(?:a[\s-]+)?hundred)"
_SPELLED = re.compile(rf"\b{_NUMBER_WORD}(?:[\s-]+(?:and[\s-]+)?{_NUMBER_WORD})*\b", re.IGNORECASE)
_NUMBER = r"(\d{2,3}(?:\.\d+)?)"
_UNIT = r"(?:bpm|b\.p\.m\.?|beats?\s*(?:per|a|an|/)\s*min(?:ute)?s?)"
_ABOUT = r"(?:(?:of|at|is|around|about|roughly|approximately|near|~|:|=)\s*)*"
_RANGE = re.compile(rf"(?:between\s+)?{_NUMBER}\s*(?:-|–|to|and)\s*{_NUMBER}\s*{_UNIT}", re.IGNORECASE)
_SINGLE = [re.compile(rf"{_NUMBER}\s*(?:-\s*|ish\s*)?{_UNIT}", re.IGNORECASE),  # "96 bpm", "a 90-bpm groove", "100 beats per minute"
           re.compile(rf"\b(?:bpm|tempo)\s*{_ABOUT}{_NUMBER}\b(?!\s*(?:%|percent|s\b|seconds|minutes|bars))", re.IGNORECASE),  # "tempo 150", "bpm: 128"
           re.compile(rf"(?:^|[,;])\s*~?{_NUMBER}\s*(?=$|[,;])")]  # a tag that is a number alone: "dnb, reese bass, 174"


# Dynamics, keyed as the corpus's loudness bands: (words the training captions use, held-out words
# only test captions use), and the integrated loudness (LUFS) each key covers, [low, high). The
# bands nest towards the extremes: a clip below -28 LUFS is soft too, but its caption says
# "whisper-quiet" (``engine.data.dynamics.dynamics_word`` names the narrowest band).
DYNAMICS_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "whisper": (("whisper-quiet", "barely audible", "very soft", "very quiet"), ("pianissimo",)),
    "soft": (("soft", "hushed", "quiet", "gentle"), ("subdued", "low-key")),
    "loud": (("loud", "powerful", "forceful", "punchy"), ("full-throated",)),
    "very loud": (("very loud", "full-power", "blasting", "thunderous"), ("fortissimo",)),
}
DYNAMICS_RANGES = {"whisper": (float("-inf"), -28.0), "soft": (float("-inf"), -23.0),
                   "loud": (-16.0, float("inf")), "very loud": (-13.5, float("inf"))}
# words people write for loud and quiet that the captions never use: read, never trained on
DYNAMICS_ALIASES = {"whisper": ("ppp", "almost silent", "barely there", "whispered", "whispering", "faint", "extremely quiet"),
                    "soft": ("softly", "quietly", "gently", "delicate", "muted", "low volume", "low-volume", "mezzo-piano",
                             "understated", "restrained", "intimate", "pp"),
                    "loud": ("loudly", "forte", "booming", "high volume", "high-volume", "cranked", "roaring",
                             "mezzo-forte", "ff"),
                    "very loud": ("fff", "deafening", "ear-splitting", "full blast", "full volume", "maximum volume",
                                  "cranked up", "extremely loud", "as loud as possible")}
_NEGATION = re.compile(r"(?:\b(?:not|no|never|without|isn't|never too|not too)\s+(?:too\s+|so\s+|very\s+|overly\s+)?|\bnon-|\bnot-(?:too-|so-)?)$",
                       re.IGNORECASE)
# "soft rock" and "quiet storm" are genres: these words after a dynamics word take it back
_NOT_DYNAMICS_AFTER = re.compile(r"^[\s-]*(?:rock|pop|storm)\b", re.IGNORECASE)

_DYNAMICS_WORD_KEY = {word.lower(): key for key, (seen, held_out) in DYNAMICS_WORDS.items() for word in seen + held_out}
_DYNAMICS_WORD_KEY.update({word.lower(): key for key, words in DYNAMICS_ALIASES.items() for word in words})
# a word of its own, or the end of a compound ("ultra-quiet", "super-loud"); never the start of one ("soft-rock")
_DYNAMICS_PATTERN = re.compile(r"(?<!\w)(" + "|".join(map(re.escape, sorted(_DYNAMICS_WORD_KEY, key=len, reverse=True))) + r")(?![\w-])",
                               re.IGNORECASE)


def stated_loudness(text: str) -> tuple[float, float] | None:
    """The loudness a prompt asks for, as the LUFS range [low, high) of ``DYNAMICS_RANGES`` its
    first dynamics word covers (one not negated, "not too loud", nor part of a genre, "soft rock"),
    or None."""
    for match in _DYNAMICS_PATTERN.finditer(text):
        if _NEGATION.search(text[: match.start()]) or _NOT_DYNAMICS_AFTER.match(text[match.end():]):
            continue
        return DYNAMICS_RANGES[_DYNAMICS_WORD_KEY[match.group(1).lower()]]
    return None


def _digits(match: re.Match) -> str:
    """A written-out number as digits ("a hundred and twenty" → "120")."""
    words = [w for w in re.split(r"[\s-]+", match.group(0).lower()) if w != "and"]
    if len(words) >= 2 and _UNITS.get(words[0]) in (1, 2) and (words[1] in _TENS or _UNITS.get(words[1], 0) >= 10):
        words = [words[0], "hundred", *words[1:]]  # "one-thirty", "one twenty-five": how tempi are said aloud
    total = 0
    for word in words:
        if word in _UNITS:
            total += _UNITS[word]
        elif word in _TENS:
            total += _TENS[word]
        elif word == "hundred":
            total = max(total, 1) * 100
    return str(total)


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


def tempo_bucket(bpm: float) -> str:
    return next(bucket for bucket, (low, high) in TEMPO_RANGES.items() if low <= bpm < high)


def stated_bpms(text: str) -> tuple[float, float] | None:
    """The bpm a prompt asks for, however it is written, as (low, high): equal for one number
    ("96 bpm", "tempo 150", "at 100 beats per minute", "a 90-bpm groove", "ninety bpm"), a span
    for a range ("90–100 bpm", "between 90 and 100 bpm"); None when it names no bpm in 30–300."""
    plain = _SPELLED.sub(_digits, text)
    match = _RANGE.search(plain)
    if match:
        low, high = sorted(float(x) for x in match.groups())
        if MIN_BPM <= low and high <= MAX_BPM:
            return low, high
    for pattern in _SINGLE:
        for match in pattern.finditer(plain):
            bpm = float(match.group(1))
            if MIN_BPM <= bpm <= MAX_BPM:
                return bpm, bpm
    return None


def stated_bpm(text: str) -> float | None:
    """The tempo a prompt asks for in bpm (a range's middle), or None (``stated_bpms``)."""
    span = stated_bpms(text)
    return (span[0] + span[1]) / 2 if span else None


def stated_tempo(text: str, tolerance: float) -> StatedTempo | None:
    """The tempo a prompt asks for: its bpm ± ``tolerance`` (relative; a range widened by it), else
    the bucket of its first tempo word ("slow", "brisk", "allegro" …), else None."""
    span = stated_bpms(text)
    if span is not None:
        return StatedTempo((span[0] + span[1]) / 2, (span[0] * (1 - tolerance), span[1] * (1 + tolerance)))
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
