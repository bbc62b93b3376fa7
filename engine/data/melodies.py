"""Lead melodies: real tunes from the music21 corpus and generated ones.

Parsing the music21 corpus is slow (a large Essen ABC opus takes about a minute), so
``build_index`` extracts the melodies once into a small JSON index that ships in
``assets/melodies/``; corpus builds read that index and never parse music21 themselves.
Rebuild it with ``python -m engine data melodies``.
"""
from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from ..files import atomic_write
from .theory import Chord, Key, scale_pitch_classes

INDEX_PATH = Path(__file__).resolve().parents[2] / "assets" / "melodies" / "music21_melodies.json.gz"

# Sources parsed into the index: Bach chorale soprano lines and Essen / Irish folk songs.
ESSEN_FILES = ("ballad10", "kinder0", "irl", "folkHaydn", "dva0", "altdeu10", "boehme10")
MAX_CHORALES = 371
TEST_FRACTION = 0.15


@dataclass(frozen=True)
class Melody:
    """A monophonic line in beats (quarter notes); bar lines fall on multiples of ``meter``."""

    id: str
    meter: int  # beats per bar: 3 or 4
    tonic: int  # pitch class of the melody's own key
    mode: str  # "major" | "minor"
    notes: tuple[tuple[float, float, int], ...]  # (onset_beats, duration_beats, midi pitch)

    @property
    def bars(self) -> int:
        end = max(o + d for o, d, _ in self.notes)
        return int(np.ceil(end / self.meter - 1e-6))

    @property
    def split(self) -> str:
        return split_of(self.id)

    def signature(self) -> str:
        """Transposition- and tempo-invariant fingerprint (intervals and rhythm) used to prove
        that no test melody appears in the training split."""
        pitches = [p for _, _, p in self.notes]
        intervals = np.diff(pitches).tolist()
        durations = [round(d * 4) for _, d, _ in self.notes]
        return hashlib.sha1(json.dumps([intervals, durations]).encode()).hexdigest()[:16]


def split_of(melody_id: str) -> str:
    """Stable train/test assignment of a source melody (hash, not order, so the index can grow)."""
    h = int(hashlib.sha1(melody_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < TEST_FRACTION else "train"


# --------------------------------------------------------------------------- music21 index
def _extract(score, melody_id: str) -> dict | None:
    """First part of a score → a Melody record, or None when it does not fit our meters."""
    from music21 import meter as m21meter

    part = score.parts[0] if hasattr(score, "parts") and len(score.parts) else score
    part = part.stripTies()
    sigs = part.recurse().getElementsByClass(m21meter.TimeSignature)
    if not sigs:
        return None
    ts = sigs[0]
    if ts.denominator not in (2, 4) or ts.barDuration.quarterLength not in (2.0, 3.0, 4.0):
        return None
    if len({s.ratioString for s in sigs}) > 1:  # meter changes mid-tune
        return None
    bar = ts.barDuration.quarterLength
    meter = 3 if bar == 3.0 else 4
    measures = part.getElementsByClass("Measure")
    pickup = 0.0
    if measures and measures[0].duration.quarterLength < bar:
        pickup = bar - measures[0].duration.quarterLength
        if meter == 4 and bar == 2.0:  # 2/4 tunes are grouped in pairs of bars
            pickup += 2.0
    notes = []
    for n in part.flatten().notes:
        dur = float(n.duration.quarterLength)
        if dur <= 0:
            continue
        pitch = max(p.midi for p in n.pitches)
        notes.append((round(float(n.offset) + pickup, 4), round(dur, 4), int(pitch)))
    if len(notes) < 12:
        return None
    key = part.analyze("key")
    return {
        "id": melody_id,
        "meter": meter,
        "tonic": int(key.tonic.pitchClass),
        "mode": "minor" if key.mode == "minor" else "major",
        "notes": notes,
    }


def _parse_essen(name: str) -> list[dict]:
    from music21 import corpus

    opus = corpus.parse(f"essenFolksong/{name}")
    scores = opus.scores if hasattr(opus, "scores") else [opus]
    out = []
    for i, score in enumerate(scores):
        try:
            rec = _extract(score, f"essen/{name}/{i}")
        except Exception:  # a malformed tune in the corpus is skipped, not fatal
            rec = None
        if rec:
            out.append(rec)
    return out


def _parse_chorales(limit: int) -> list[dict]:
    from music21 import corpus

    out = []
    for i, score in enumerate(corpus.chorales.Iterator(returnType="stream")):
        if i >= limit:
            break
        try:
            rec = _extract(score, f"bach/{score.metadata.title or i}/{i}")
        except Exception:
            rec = None
        if rec:
            out.append(rec)
    return out


def _parse_source(source: str) -> list[dict]:
    return _parse_chorales(MAX_CHORALES) if source == "chorales" else _parse_essen(source)


def build_index(path: Path = INDEX_PATH, workers: int = 2) -> dict:
    """Parse the music21 sources (in parallel) and write the gzipped JSON index."""
    sources = ["chorales", *ESSEN_FILES]
    with Pool(workers) as pool:
        results = pool.map(_parse_source, sources)
    melodies = [m for chunk in results for m in chunk]
    # Identical tunes appear under several names; keep the first so the split stays clean.
    seen, unique = set(), []
    for rec in melodies:
        sig = Melody(rec["id"], rec["meter"], rec["tonic"], rec["mode"], tuple(map(tuple, rec["notes"]))).signature()
        if sig not in seen:
            seen.add(sig)
            unique.append(rec)
    path.parent.mkdir(parents=True, exist_ok=True)
    def write(tmp: Path) -> None:
        with gzip.open(tmp, "wt") as f:
            json.dump({"version": 1, "melodies": unique}, f)

    atomic_write(path, write)
    return {"melodies": len(unique), "by_source": {s: len(r) for s, r in zip(sources, results)}}


_CACHE: list[Melody] | None = None


def load_index(path: Path = INDEX_PATH) -> list[Melody]:
    global _CACHE
    if _CACHE is None:
        if not path.exists():
            raise FileNotFoundError(f"melody index missing: {path}. Build it with: python -m engine data melodies")
        with gzip.open(path, "rt") as f:
            data = json.load(f)
        _CACHE = [
            Melody(m["id"], m["meter"], m["tonic"], m["mode"], tuple(tuple(n) for n in m["notes"]))
            for m in data["melodies"]
        ]
    return _CACHE


def melody_by_id(melody_id: str) -> Melody:
    return next(m for m in load_index() if m.id == melody_id)


def pick_corpus_melody(rng: np.random.Generator, meter: int, mode: str, split: str) -> Melody | None:
    pool = [m for m in load_index() if m.meter == meter and m.mode == mode and m.split == split]
    return pool[rng.integers(len(pool))] if pool else None


# --------------------------------------------------------------------------- placing a melody
def fit_corpus_melody(
    melody: Melody, key: Key, bars: int, register: tuple[int, int], rng: np.random.Generator
) -> list[tuple[float, float, int]]:
    """Transpose a corpus tune into ``key`` and the lead's register, and crop/loop it to ``bars``.

    Cropping starts on a phrase boundary (a multiple of 4 bars) so the tune begins musically.
    """
    shift = (key.tonic - melody.tonic) % 12
    if shift > 6:
        shift -= 12
    notes = [(o, d, p + shift) for o, d, p in melody.notes]
    median = float(np.median([p for _, _, p in notes]))
    centre = (register[0] + register[1]) / 2
    notes = [(o, d, p + 12 * int(round((centre - median) / 12))) for o, d, p in notes]
    total_beats = melody.bars * melody.meter
    starts = list(range(0, max(1, melody.bars - bars + 1), 4)) or [0]
    start = starts[rng.integers(len(starts))] * melody.meter
    out: list[tuple[float, float, int]] = []
    want = bars * melody.meter
    offset = -start
    while offset < want:
        for o, d, p in notes:
            t = o + offset
            if 0 <= t < want:
                out.append((t, min(d, want - t), p))
        offset += total_beats
    return out


def harmonize(
    notes: list[tuple[float, float, int]],
    key: Key,
    bars: int,
    meter: int,
    candidates: list[Chord],
    forbidden: list[list[Chord]] = (),
) -> list[Chord]:
    """One chord per bar for a given tune: the diatonic chord that covers most of the bar's
    melody (weighted by duration and strong beats), with a cadence on the final bar.

    ``forbidden`` chord sequences are never completed (a training clip must not reproduce a
    held-out progression by chance); the next-best chord is taken instead."""
    chords = []
    for b in range(bars):
        lo, hi = b * meter, (b + 1) * meter
        weight = np.zeros(12)
        for o, d, p in notes:
            overlap = min(o + d, hi) - max(o, lo)
            if overlap > 0:
                strong = 1.5 if (o - lo) % meter == 0 else 1.0
                weight[p % 12] += overlap * strong
        scores = []
        for c in candidates:
            s = sum(weight[pc] for pc in c.pitch_classes)
            s -= 0.25 * sum(weight[pc] for pc in range(12) if pc not in c.pitch_classes)
            if c.root == key.tonic and b in (0, bars - 1):
                s += 1.0  # start and end at home
            if chords and c == chords[-1]:
                s -= 0.3  # prefer harmonic motion
            scores.append(s)
        for i in np.argsort(scores)[::-1]:
            if not _completes_any(chords, candidates[i], forbidden):
                chords.append(candidates[i])
                break
        else:
            chords.append(candidates[int(np.argmax(scores))])
    return chords


def _completes_any(chords: list[Chord], nxt: Chord, sequences: list[list[Chord]]) -> bool:
    tail = chords + [nxt]
    return any(len(tail) >= len(seq) and tail[-len(seq):] == seq for seq in sequences)


def generate_melody(
    chords: list[Chord],
    key: Key,
    meter: int,
    register: tuple[int, int],
    density: float,
    rng: np.random.Generator,
) -> list[tuple[float, float, int]]:
    """A phrase-structured melody over a chord-per-bar progression.

    Rhythm comes from a 2-bar motif repeated with variation (A A' B A''), pitch from chord
    tones on strong beats and scale steps in between, the way a songwriter sketches a line.
    """
    scale = scale_pitch_classes(key)
    pool = [p for p in range(register[0], register[1] + 1) if p % 12 in scale]
    grid = 0.5 if density < 0.7 else 0.25

    def motif() -> list[tuple[float, float]]:
        rhythm, t = [], 0.0
        while t < 2 * meter - 1e-6:
            if rng.random() < 0.15 + 0.25 * (1 - density) and t > 0:
                t += grid * 2  # a breath
                continue
            choices = [grid, grid * 2, grid * 2, 1.0, 1.5, 2.0] if density < 0.5 else [grid, grid, grid * 2, 1.0]
            d = float(rng.choice(choices))
            d = min(d, 2 * meter - t)
            rhythm.append((t, d))
            t += d
        return rhythm

    a, b = motif(), motif()
    form = [a, a, b, a]
    out: list[tuple[float, float, int]] = []
    prev = pool[len(pool) // 2]
    for pair in range(int(np.ceil(len(chords) / 2))):
        rhythm = form[pair % 4]
        for onset, dur in rhythm:
            t = pair * 2 * meter + onset
            bar = int(t // meter)
            if bar >= len(chords):
                break
            chord_pcs = chords[bar].pitch_classes
            strong = (t % meter) in (0.0, 2.0) if meter == 4 else (t % meter) == 0.0
            near = [p for p in pool if abs(p - prev) <= (7 if strong else 4)] or pool
            cands = [p for p in near if p % 12 in chord_pcs] if strong else near
            cands = cands or near
            weights = np.array([1.0 / (1 + abs(p - prev)) for p in cands])
            if t + dur >= len(chords) * meter - 1e-6 or (pair % 4 == 3 and onset + dur >= 2 * meter - 1e-6):
                tonic = [p for p in cands if p % 12 == key.tonic]
                cands, weights = (tonic, np.ones(len(tonic))) if tonic else (cands, weights)
            p = int(rng.choice(cands, p=weights / weights.sum()))
            out.append((t, dur * (0.95 if rng.random() < 0.7 else 0.6), p))
            prev = p
    return out
