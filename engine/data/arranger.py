"""The procedural arranger: a seed becomes a song section with drums, bass, chords, pad and lead.

``arrange(spec)`` is pure: the same ClipSpec always gives the same notes. Timing is computed on
the exact beat grid first (that grid *is* the ground truth for beats, chords and melody), then
swing and humanization move the played notes, as a drummer would around a click.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .genres import DRUM_KEYS, GENRES, HELD_OUT_PROGRESSIONS, MOODS, PITCHED_DRUMS, PROGRESSIONS, Genre, Mood
from .melodies import fit_corpus_melody, generate_melody, harmonize, melody_by_id, pick_corpus_melody
from .theory import Chord, Key, diatonic_chords, roman, voice_chord

# Lead registers (MIDI note range) by GM program; others use DEFAULT_LEAD_REGISTER.
LEAD_REGISTERS = {
    22: (60, 84), 27: (55, 79), 29: (52, 79), 30: (52, 79), 40: (62, 88), 56: (58, 82), 57: (46, 70),
    60: (50, 74), 65: (55, 79), 66: (48, 72), 68: (60, 84), 71: (52, 79), 73: (64, 91), 105: (55, 79),
    110: (60, 86), 53: (55, 77), 11: (60, 86), 12: (60, 86), 24: (55, 79), 0: (60, 84), 4: (58, 82),
    98: (64, 91), 79: (67, 91), 92: (60, 84),
}
DEFAULT_LEAD_REGISTER = (60, 84)
SECTION_FORM = ("intro", "verse", "chorus", "verse", "chorus", "bridge", "chorus", "outro")
SECTION_INTENSITY = {"intro": 0.6, "verse": 0.78, "chorus": 1.0, "bridge": 0.85, "outro": 0.65}
CORPUS_MELODY_PROB = 0.45
MIX_VOLUME = {"drums": 100, "bass": 100, "chords": 82, "pad": 62, "lead": 108, "timpani": 90}


@dataclass(frozen=True)
class ClipSpec:
    """Everything random about a clip, drawn once from its seed."""

    seed: int
    split: str
    genre: str
    mood: str
    key: Key
    tempo: int
    progression: str  # name, or "harmonized:<melody id>" for corpus tunes
    melody_source: str  # "generated" | music21 melody id
    seconds: float

    @property
    def beat_s(self) -> float:
        return 60.0 / self.tempo


@dataclass
class Note:
    start: float
    end: float
    pitch: int
    velocity: int


@dataclass
class Part:
    role: str  # drums | bass | chords | pad | lead | timpani
    program: int
    is_drum: bool
    notes: list[Note] = field(default_factory=list)
    volume: int = 100
    reverb: int = 40


@dataclass
class Arrangement:
    spec: ClipSpec
    parts: list[Part]
    beats: list[float]
    downbeats: list[float]
    chords: list[tuple[float, float, Chord]]
    melody: list[Note]  # the lead line as played on the grid (ground truth)
    sections: list[tuple[str, float, float]]

    def part(self, role: str) -> Part | None:
        return next((p for p in self.parts if p.role == role), None)


# ----------------------------------------------------------------------------- the spec
def sample_spec(seed: int, split: str, seconds: float) -> ClipSpec:
    """Draw genre, mood, key, tempo, progression and melody source for one clip."""
    rng = np.random.default_rng([seed, 0])
    genre = GENRES[sorted(GENRES)[rng.integers(len(GENRES))]]
    mood = MOODS[genre.moods[rng.integers(len(genre.moods))]]
    want_minor = rng.random() < mood.minor_prob
    allowed = [p for p in genre.progressions if (p in HELD_OUT_PROGRESSIONS) == (split == "test")]
    preferred = [p for p in allowed if (PROGRESSIONS[p][0] == "minor") == want_minor] or allowed
    progression = preferred[rng.integers(len(preferred))]
    mode = PROGRESSIONS[progression][0]
    key = Key(int(rng.integers(12)), mode)
    lo, hi = genre.tempo
    position = np.clip((mood.tempo_bias + 1) / 2 + rng.normal(0, 0.2), 0, 1)
    tempo = int(np.clip(round(lo + position * (hi - lo)), 60, 180))
    melody_source = "generated"
    if rng.random() < CORPUS_MELODY_PROB:
        tune = pick_corpus_melody(rng, genre.meter, mode, split)
        if tune is not None:
            melody_source, progression = tune.id, f"harmonized:{tune.id}"
    return ClipSpec(seed, split, genre.name, mood.name, key, tempo, progression, melody_source, seconds)


# ----------------------------------------------------------------------------- arranging
def arrange(spec: ClipSpec) -> Arrangement:
    rng = np.random.default_rng([spec.seed, 1])
    genre, mood = GENRES[spec.genre], MOODS[spec.mood]
    bar_s = genre.meter * spec.beat_s
    n_bars = int(np.ceil(spec.seconds / bar_s)) + 1  # one spare bar: the render is cropped

    sections = _sections(rng, n_bars, phrase=8 if spec.tempo >= 140 else 4)
    lead_program = int(rng.choice(genre.lead_programs))
    shift = mood.register
    reg = LEAD_REGISTERS.get(lead_program, DEFAULT_LEAD_REGISTER)
    register = (reg[0] + shift, reg[1] + shift)

    # Harmony and melody on the beat grid.
    if spec.melody_source != "generated":
        tune = melody_by_id(spec.melody_source)
        line = fit_corpus_melody(tune, spec.key, n_bars, register, rng)
        candidates = diatonic_chords(spec.key, genre.sevenths)
        forbidden = held_out_sequences(spec.key) if spec.split == "train" else []
        bar_chords = [[c] for c in harmonize(line, spec.key, n_bars, genre.meter, candidates, forbidden)]
    else:
        bar_chords = _progression_bars(spec.progression, spec.key, n_bars)
        first = [cs[0] for cs in bar_chords]
        line = generate_melody(first, spec.key, genre.meter, register, mood.density, rng)

    grid = _Grid(spec, genre, rng)
    chords = []
    for b, cs in enumerate(bar_chords):
        span = genre.meter / len(cs)
        for i, c in enumerate(cs):
            chords.append((grid.beat_time(b * genre.meter + i * span), grid.beat_time(b * genre.meter + (i + 1) * span), c))

    bar_section = [name for name, length in sections for _ in range(length)][:n_bars]
    parts = []
    kit = int(rng.choice(genre.kits)) if genre.grooves else None
    reverb = int(np.clip(genre.reverb + mood.reverb, 0, 127))

    lead = Part("lead", lead_program, False, volume=MIX_VOLUME["lead"], reverb=reverb)
    melody = []
    for onset, dur, pitch in line:
        bar = int(onset // genre.meter)
        if bar >= n_bars or bar_section[bar] == "intro":
            continue  # the tune enters after the intro
        vel = _velocity(rng, mood, SECTION_INTENSITY[bar_section[bar]], accent=onset % genre.meter == 0)
        start, end = grid.beat_time(onset), grid.beat_time(onset + dur)
        melody.append(Note(start, end, pitch, vel))
        lead.notes.append(Note(*grid.humanize(start, end), pitch, vel))
    parts.append(lead)

    parts.append(_bass_part(rng, spec, genre, mood, grid, chords, bar_section))
    parts.append(_comp_part(rng, spec, genre, mood, grid, chords, bar_section, reverb, avoid=lead_program))
    if genre.pad_programs:
        pad = _pad_part(rng, spec, genre, mood, grid, chords, bar_section, reverb)
        if pad.notes:
            parts.append(pad)
    if kit is not None:
        parts.extend(_drum_parts(rng, spec, genre, mood, grid, n_bars, bar_section, kit, reverb))

    beats = [i * spec.beat_s for i in range(int(spec.seconds / spec.beat_s) + 1) if i * spec.beat_s < spec.seconds]
    downbeats = beats[:: genre.meter]
    section_times, t = [], 0
    for name, length in sections:
        section_times.append((name, t * bar_s, min((t + length) * bar_s, spec.seconds)))
        t += length
    section_times = [s for s in section_times if s[1] < spec.seconds]
    chords = [(s, min(e, spec.seconds), c) for s, e, c in chords if s < spec.seconds]
    melody = [n for n in melody if n.start < spec.seconds]
    return Arrangement(spec, parts, beats, downbeats, chords, melody, section_times)


def _sections(rng: np.random.Generator, n_bars: int, phrase: int) -> list[tuple[str, int]]:
    """A window onto the song form: a clip may begin at the intro or mid-song, like a crop."""
    start = 0 if rng.random() < 0.4 else int(rng.integers(1, len(SECTION_FORM) - 1))
    out, bars, i = [], 0, start
    while bars < n_bars:
        name = SECTION_FORM[i % len(SECTION_FORM)]
        length = phrase // 2 if name in ("intro", "outro") else phrase
        out.append((name, length))
        bars += length
        i += 1
    return out


def held_out_sequences(key: Key) -> list[list[Chord]]:
    """Every rotation of every held-out one-chord-per-bar progression, spelled in ``key``.

    Progressions loop, so a rotation of a held-out progression is the same progression."""
    out = []
    for name in HELD_OUT_PROGRESSIONS:
        mode, bars = PROGRESSIONS[name]
        if mode != key.mode or "," in bars:
            continue
        chords = [roman(s, key) for s in bars.split()]
        out.extend(chords[i:] + chords[:i] for i in range(len(chords)))
    return out


def _progression_bars(name: str, key: Key, n_bars: int) -> list[list[Chord]]:
    bars = PROGRESSIONS[name][1].split()
    return [[roman(s, key) for s in bars[b % len(bars)].split(",")] for b in range(n_bars)]


class _Grid:
    """Beat positions → seconds, with swing on off-steps and humanized performance timing."""

    def __init__(self, spec: ClipSpec, genre: Genre, rng: np.random.Generator):
        self.beat_s, self.genre, self.rng = spec.beat_s, genre, rng
        self.step_beats = 1.0 / genre.subdivision

    def beat_time(self, beats: float) -> float:
        return beats * self.beat_s

    def step_time(self, bar: int, step: int) -> float:
        swing = self.genre.swing * (step % 2) if self.genre.subdivision == 4 else 0.0
        return self.beat_time(bar * self.genre.meter + (step + swing) * self.step_beats)

    def humanize(self, start: float, end: float) -> tuple[float, float]:
        sigma = self.genre.humanize_ms / 1000
        if sigma <= 0:
            return start, end
        jitter = float(np.clip(self.rng.normal(0, sigma), -2.5 * sigma, 2.5 * sigma))
        start = max(0.0, start + jitter)
        return start, max(start + 0.03, end + jitter * 0.5)


def _velocity(rng: np.random.Generator, mood: Mood, intensity: float, accent: bool = False, scale: float = 1.0) -> int:
    v = mood.velocity * (0.55 + 0.45 * intensity) * scale * (1.1 if accent else 1.0)
    return int(np.clip(v + rng.normal(0, 5), 20, 127))


def _pattern_events(pattern: str, codes: str) -> list[tuple[int, int, str]]:
    """Parse a step pattern into (step, length_in_steps, code) events; '-' holds the note."""
    events = []
    for i, ch in enumerate(pattern):
        if ch in codes:
            length = 1
            while i + length < len(pattern) and pattern[i + length] == "-":
                length += 1
            events.append((i, length, ch))
    return events


def _chord_at(chords, t: float) -> Chord:
    for s, e, c in chords:
        if s - 1e-6 <= t < e - 1e-6:
            return c
    return chords[-1][2]


def _next_chord(chords, t: float) -> Chord:
    for s, e, c in chords:
        if s > t + 1e-6:
            return c
    return chords[-1][2]


def _bass_part(rng, spec, genre: Genre, mood: Mood, grid: _Grid, chords, bar_section) -> Part:
    part = Part("bass", int(rng.choice(genre.bass_programs)), False, volume=MIX_VOLUME["bass"], reverb=20)
    pattern = genre.bass_patterns[rng.integers(len(genre.bass_patterns))]
    prev = None
    for bar, section in enumerate(bar_section):
        if section == "intro" and rng.random() < 0.5:
            continue
        for step, length, code in _pattern_events(pattern, "R3578AW"):
            start = grid.step_time(bar, step)
            end = grid.step_time(bar, step + length) - 0.02
            chord = _chord_at(chords, start)
            root = genre.bass_octave + (chord.root - genre.bass_octave) % 12
            if code == "W":
                pitch = _walking_note(rng, chord, _next_chord(chords, start), root, step, genre, prev)
            elif code == "A":
                target = genre.bass_octave + (_next_chord(chords, start).root - genre.bass_octave) % 12
                pitch = target + (1 if rng.random() < 0.5 else -1)
            else:
                pitch = root + {"R": 0, "3": chord.third, "5": chord.fifth, "7": chord.intervals[-1] if len(chord.intervals) > 3 else 12, "8": 12}[code]
            vel = _velocity(rng, mood, SECTION_INTENSITY[section], accent=step == 0, scale=0.95)
            part.notes.append(Note(*grid.humanize(start, end), pitch, vel))
            prev = pitch
    return part


def _walking_note(rng, chord: Chord, nxt: Chord, root: int, step: int, genre: Genre, prev: int | None) -> int:
    beat = step // genre.subdivision
    if beat == 0:
        return root
    if beat == genre.meter - 1:  # approach the next root by half step
        target = root + (nxt.root - chord.root) % 12
        return target + (-1 if rng.random() < 0.6 else 1)
    tones = [root + i for i in chord.intervals if i < 12] + [root + 12]
    near = sorted(tones, key=lambda p: abs(p - (prev or root)))
    return int(near[rng.integers(min(3, len(near)))])


def _comp_part(rng, spec, genre: Genre, mood: Mood, grid: _Grid, chords, bar_section, reverb: int, avoid: int) -> Part:
    programs = [p for p in genre.chord_programs if p != avoid] or list(genre.chord_programs)  # lead ≠ comping
    part = Part("chords", int(rng.choice(programs)), False, volume=MIX_VOLUME["chords"], reverb=reverb)
    pattern = genre.comp_patterns[rng.integers(len(genre.comp_patterns))]
    centre = genre.chord_centre + mood.register // 2
    voicing = None
    strum_s = 0.012
    for bar, section in enumerate(bar_section):
        for step, length, code in _pattern_events(pattern, "CS1234"):
            start = grid.step_time(bar, step)
            end = grid.step_time(bar, step + length) - 0.015
            chord = _chord_at(chords, start)
            voicing = voice_chord(chord, centre, voicing, genre.voicing)
            vel = _velocity(rng, mood, SECTION_INTENSITY[section], accent=step == 0, scale=0.85)
            if code in "1234":
                idx = min(int(code) - 1, len(voicing) - 1)
                part.notes.append(Note(*grid.humanize(start, end), voicing[idx], vel))
                continue
            for i, pitch in enumerate(voicing):
                offset = i * strum_s if code == "S" else 0.0
                s, e = grid.humanize(start + offset, end)
                part.notes.append(Note(s, e, pitch, max(20, vel - 4 * i if code == "S" else vel)))
    return part


def _pad_part(rng, spec, genre: Genre, mood: Mood, grid: _Grid, chords, bar_section, reverb: int) -> Part:
    part = Part("pad", int(rng.choice(genre.pad_programs)), False, volume=MIX_VOLUME["pad"], reverb=min(127, reverb + 20))
    always = genre.name == "ambient" or mood.name in ("dreamy", "calm")
    voicing = None
    for bar, section in enumerate(bar_section):
        if not (always or section in ("chorus", "bridge")):
            continue
        start, end = grid.step_time(bar, 0), grid.step_time(bar + 1, 0) - 0.01
        chord = _chord_at(chords, start)
        voicing = voice_chord(chord, 60 + mood.register // 2, voicing, "open")
        vel = _velocity(rng, mood, SECTION_INTENSITY[section], scale=0.7)
        part.notes.extend(Note(start, end, p, vel) for p in voicing)
    return part


def _drum_parts(rng, spec: ClipSpec, genre: Genre, mood: Mood, grid: _Grid, n_bars: int, bar_section, kit: int, reverb: int) -> list[Part]:
    drums = Part("drums", kit, True, volume=MIX_VOLUME["drums"], reverb=max(10, reverb - 15))
    pitched = {name: Part(name, program, False, volume=MIX_VOLUME.get(name, 90), reverb=reverb) for name, program in PITCHED_DRUMS.items()}
    groove = genre.grooves[rng.integers(len(genre.grooves))]
    accents = {"X": 1.15, "x": 0.95, "o": 0.5}
    bounds = np.cumsum([0] + [1 if bar_section[i] != bar_section[i - 1] else 0 for i in range(1, n_bars)])
    for bar, section in enumerate(bar_section):
        last_of_section = bar + 1 < n_bars and bounds[bar + 1] != bounds[bar]
        first_of_section = bar == 0 or bounds[bar] != bounds[bar - 1]
        voices = dict(groove.steps)
        if section == "intro":  # thinner: keep the time-keeping voices only
            voices = {k: v for k, v in voices.items() if k in ("hat", "ride", "kick", "shaker", "pedal", "side")}
        if last_of_section:
            cut = genre.steps_per_bar // 2
            for name in voices:
                voices[name] = voices[name][:cut] + "." * (genre.steps_per_bar - cut)
            for name, steps in groove.fill.items():
                merged = voices.get(name, "." * genre.steps_per_bar)
                voices[name] = "".join(f if f != "." else m for f, m in zip(steps, merged))
        if "crash" not in groove.steps and first_of_section and section == "chorus" and bar > 0:
            voices["crash"] = "X" + "." * (genre.steps_per_bar - 1)
        if "crash" in voices and not first_of_section:
            voices.pop("crash")
        for name, steps in voices.items():
            for step, ch in enumerate(steps):
                if ch not in accents:
                    continue
                t = grid.step_time(bar, step)
                vel = _velocity(rng, mood, SECTION_INTENSITY[section], scale=accents[ch] * 1.05)
                start, _ = grid.humanize(t, t + 0.1)
                if name in pitched:
                    tonic = 41 + (spec.key.tonic - 41) % 12  # timpani: tonic, then fifth
                    pitched[name].notes.append(Note(start, start + 0.4, tonic + 7 * (bar % 2), vel))
                else:
                    drums.notes.append(Note(start, start + 0.1, DRUM_KEYS[name], vel))
    return [drums] + [p for p in pitched.values() if p.notes]
