"""Just enough music theory for the arranger: keys, roman-numeral chords and voicings.

Roman numerals are always read against the *major* scale of the tonic, so a minor-key
progression spells its borrowed degrees explicitly ("i bVI bIII bVII"). Case gives the
triad quality, a suffix adds extensions: ``ii7 V7 Imaj7``, ``bVII``, ``iiø7``, ``V7sus4``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MAJOR_STEPS = (0, 2, 4, 5, 7, 9, 11)
NATURAL_MINOR_STEPS = (0, 2, 3, 5, 7, 8, 10)
NUMERALS = ("I", "II", "III", "IV", "V", "VI", "VII")

# Interval sets (semitones above the root) for each chord quality.
QUALITIES: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "dim": (0, 3, 6),
    "aug": (0, 4, 8),
    "sus2": (0, 2, 7),
    "sus4": (0, 5, 7),
    "5": (0, 7),
    "6": (0, 4, 7, 9),
    "m6": (0, 3, 7, 9),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10),
    "m7b5": (0, 3, 6, 10),
    "dim7": (0, 3, 6, 9),
    "7sus4": (0, 5, 7, 10),
    "9": (0, 4, 7, 10, 14),
    "maj9": (0, 4, 7, 11, 14),
    "m9": (0, 3, 7, 10, 14),
    "add9": (0, 4, 7, 14),
}
LABEL_SUFFIX = {"maj": "", "min": "m", "dim": "dim", "aug": "aug", "5": "5"}


@dataclass(frozen=True)
class Key:
    tonic: int  # pitch class 0..11
    mode: str  # "major" | "minor"

    @property
    def name(self) -> str:
        return f"{PITCH_NAMES[self.tonic]} {self.mode}"


def scale_pitch_classes(key: Key) -> set[int]:
    steps = MAJOR_STEPS if key.mode == "major" else NATURAL_MINOR_STEPS
    return {(key.tonic + s) % 12 for s in steps}


@dataclass(frozen=True)
class Chord:
    root: int  # pitch class
    quality: str

    @property
    def intervals(self) -> tuple[int, ...]:
        return QUALITIES[self.quality]

    @property
    def pitch_classes(self) -> frozenset[int]:
        return frozenset((self.root + i) % 12 for i in self.intervals)

    @property
    def label(self) -> str:
        return PITCH_NAMES[self.root] + LABEL_SUFFIX.get(self.quality, self.quality)

    @property
    def third(self) -> int:
        """Semitones of the chord's third (or the sus/fifth substitute)."""
        return next((i for i in self.intervals if i in (3, 4, 2, 5)), 7)

    @property
    def fifth(self) -> int:
        return next((i for i in self.intervals if i in (6, 7, 8)), 7)


_ROMAN = re.compile(r"^(?P<acc>[b#]?)(?P<num>VII|VI|V|IV|III|II|I|vii|vi|v|iv|iii|ii|i)(?P<suf>.*)$")
_SUFFIX_QUALITY = {
    # suffix → (quality for an upper-case numeral, quality for a lower-case numeral)
    "": ("maj", "min"),
    "7": ("7", "m7"),
    "maj7": ("maj7", "maj7"),
    "6": ("6", "m6"),
    "9": ("9", "m9"),
    "maj9": ("maj9", "maj9"),
    "add9": ("add9", "add9"),
    "sus2": ("sus2", "sus2"),
    "sus4": ("sus4", "sus4"),
    "7sus4": ("7sus4", "7sus4"),
    "o": ("dim", "dim"),
    "o7": ("dim7", "dim7"),
    "ø7": ("m7b5", "m7b5"),
    "+": ("aug", "aug"),
    "5": ("5", "5"),
}


def roman(symbol: str, key: Key) -> Chord:
    """Parse one roman numeral (see module docstring) into a Chord in ``key``."""
    m = _ROMAN.match(symbol)
    if not m or m["suf"] not in _SUFFIX_QUALITY:
        raise ValueError(f"bad roman numeral: {symbol!r}")
    degree = NUMERALS.index(m["num"].upper())
    root = key.tonic + MAJOR_STEPS[degree] + {"b": -1, "#": 1, "": 0}[m["acc"]]
    upper, lower = _SUFFIX_QUALITY[m["suf"]]
    return Chord(root % 12, upper if m["num"].isupper() else lower)


def diatonic_chords(key: Key, sevenths: bool = False) -> list[Chord]:
    """The chords a harmonizer may choose from in ``key``."""
    if key.mode == "major":
        symbols = ["I", "ii", "iii", "IV", "V", "vi"] if not sevenths else ["Imaj7", "ii7", "iii7", "IVmaj7", "V7", "vi7"]
    else:
        symbols = ["i", "iv", "v", "bIII", "bVI", "bVII", "V"] if not sevenths else ["i7", "iv7", "bIIImaj7", "bVImaj7", "bVII7", "V7"]
    return [roman(s, key) for s in symbols]


def voice_chord(chord: Chord, centre: int, previous: list[int] | None, style: str) -> list[int]:
    """MIDI pitches for a chord near ``centre``.

    ``close``: all tones within an octave, inversion chosen for smooth voice leading;
    ``open``: root low, the rest spread; ``power``: root, fifth, octave; ``shell``: 3rd and 7th
    (jazz left hand, rootless).
    """
    if style == "power":
        root = centre - 12 + ((chord.root - (centre - 12)) % 12)
        return [root, root + 7, root + 12]
    intervals = list(chord.intervals)
    if style == "shell":
        keep = [i for i in intervals if i % 12 in (3, 4, 10, 11, 9)] or intervals
        intervals = keep
    pcs = sorted({(chord.root + i) % 12 for i in intervals})
    best, best_cost = None, float("inf")
    for inversion in range(len(pcs)):
        ordered = pcs[inversion:] + pcs[:inversion]
        base = centre - 6 + ((ordered[0] - (centre - 6)) % 12)
        voicing = [base]
        for pc in ordered[1:]:
            nxt = voicing[-1] + ((pc - voicing[-1]) % 12 or 12)
            voicing.append(nxt)
        if style == "open" and len(voicing) >= 3:
            voicing = [voicing[0] - 12] + voicing[1:]
        if previous:
            cost = sum(min(abs(p - q) for q in previous) for p in voicing)
        else:
            cost = abs(float(np.mean(voicing)) - centre)
        if cost < best_cost:
            best, best_cost = voicing, cost
    return best
