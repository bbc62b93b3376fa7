"""Render an Arrangement with FluidSynth and a General MIDI SoundFont to 24 kHz mono.

A fresh synthesizer per render (0.3 s to load FluidR3) makes output bit-identical for a seed:
no reverb tail or controller state can leak from one clip into the next. Audio is pulled as
float (``fluid_synth_write_float``) so a dense mix can never clip inside the synth; it is then
loudness-normalized (ITU-R BS.1770 via pyloudnorm) with a true peak ceiling.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from .arranger import Arrangement, Note, Part
from .dynamics import PEAK_CEILING

SAMPLE_RATE = 24_000
TARGET_LUFS = -18.0
MAX_DRIVE_DB = 10.0  # the most a loud clip is pushed into the limiter (as mastering makes music loud)
BLOCK = 64  # fluidsynth renders in 64-sample blocks; events land on block edges
DRUM_CHANNEL = 9

# A General MIDI SoundFont that ships in a registry package: FluidR3 (Debian fluid-soundfont-gm)
# sounds far better; TimGM6mb ships inside the pretty_midi wheel and is the pip-only fallback.
SOUNDFONT_CANDIDATES = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/soundfonts/FluidR3_GM.sf2"),
)


class SynthUnavailable(RuntimeError):
    pass


def bundled_soundfont() -> Path | None:
    """TimGM6mb, inside the pretty_midi wheel (None without it)."""
    try:
        import pretty_midi
    except ImportError:
        return None
    bundled = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    return bundled if bundled.exists() else None


def find_soundfont() -> Path:
    for path in (*SOUNDFONT_CANDIDATES, bundled_soundfont()):
        if path is not None and path.exists():
            return path
    raise SynthUnavailable("no General MIDI SoundFont found: apt-get install fluid-soundfont-gm")


def _fluidsynth():
    try:
        import fluidsynth
    except (ImportError, OSError) as exc:  # the Python binding loads libfluidsynth at import
        raise SynthUnavailable("FluidSynth is not available: apt-get install libfluidsynth3") from exc
    return fluidsynth


def _write_float(fluidsynth):
    return fluidsynth.cfunc(
        "fluid_synth_write_float", ctypes.c_int,
        ("synth", ctypes.c_void_p, 1), ("len", ctypes.c_int, 1),
        ("lout", ctypes.c_void_p, 1), ("loff", ctypes.c_int, 1), ("lincr", ctypes.c_int, 1),
        ("rout", ctypes.c_void_p, 1), ("roff", ctypes.c_int, 1), ("rincr", ctypes.c_int, 1),
    )


def synthesize(parts: list[Part], seconds: float, soundfont: Path | None = None) -> np.ndarray:
    """Play the parts through a fresh FluidSynth; returns float32 mono, not yet normalized."""
    fluidsynth = _fluidsynth()
    write_float = _write_float(fluidsynth)
    synth = fluidsynth.Synth(gain=0.5, samplerate=float(SAMPLE_RATE))
    try:
        sfid = synth.sfload(str(soundfont or find_soundfont()))
        events = []  # (time, order, channel, pitch, velocity): note-offs sort before note-ons
        melodic = iter(c for c in range(16) if c != DRUM_CHANNEL)
        for part in parts:
            channel = DRUM_CHANNEL if part.is_drum else next(melodic)
            synth.program_select(channel, sfid, 128 if part.is_drum else 0, part.program)
            synth.cc(channel, 7, part.volume)
            synth.cc(channel, 91, part.reverb)
            for n in part.notes:
                events.append((n.start, 1, channel, n.pitch, n.velocity))
                events.append((n.end, 0, channel, n.pitch, 0))
        events.sort()
        total = int(round(seconds * SAMPLE_RATE))
        left = np.zeros(total, dtype=np.float32)
        right = np.zeros(total, dtype=np.float32)
        cursor = 0

        def render_until(sample: int) -> None:
            nonlocal cursor
            sample = min(sample, total)
            if sample > cursor:
                n = sample - cursor
                write_float(
                    synth.synth, n,
                    left[cursor:].ctypes.data, 0, 1, right[cursor:].ctypes.data, 0, 1,
                )
                cursor = sample

        for t, is_on, channel, pitch, velocity in events:
            render_until(int(round(t * SAMPLE_RATE)))
            if cursor >= total:
                break
            if is_on:
                synth.noteon(channel, pitch, velocity)
            else:
                synth.noteoff(channel, pitch)
        render_until(total)
    finally:
        synth.delete()
    return (0.5 * (left + right)).astype(np.float32)


def normalize_loudness(audio: np.ndarray, target_lufs: float = TARGET_LUFS, limit: bool = False) -> tuple[np.ndarray, float]:
    """Scale to the target integrated loudness, but never above the peak ceiling; with ``limit``,
    a target the ceiling would hold back drives the music into a limiter instead (up to
    ``MAX_DRIVE_DB``), so loud music is loud as mastered music is, peaks held at the ceiling.

    Returns the scaled audio and its measured loudness (LUFS) after scaling.
    """
    import pyloudnorm

    meter = pyloudnorm.Meter(SAMPLE_RATE)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak < 1e-6:
        return audio.astype(np.float32), float("-inf")
    loudness = meter.integrated_loudness(audio.astype(np.float64))
    gain = 10 ** ((target_lufs - loudness) / 20) if np.isfinite(loudness) else 1.0
    if limit and gain * peak > PEAK_CEILING:
        from pedalboard import Limiter

        drive = min(MAX_DRIVE_DB, 20 * np.log10(gain * peak / PEAK_CEILING))
        out = Limiter(threshold_db=-drive, release_ms=100.0)((audio / peak).astype(np.float32)[None], SAMPLE_RATE)[0]
        out = np.clip(out, -1.0, 1.0) * PEAK_CEILING
        over = meter.integrated_loudness(out.astype(np.float64)) - target_lufs  # the limiter's own make-up gain overshoots
        out = (out * 10 ** (-max(over, 0.0) / 20)).astype(np.float32)
    else:
        out = (audio * min(gain, PEAK_CEILING / peak)).astype(np.float32)
    return out, float(meter.integrated_loudness(out.astype(np.float64)))


def render(arrangement: Arrangement, soundfont: Path | None = None, target_lufs: float = TARGET_LUFS) -> tuple[np.ndarray, float]:
    audio = synthesize(arrangement.parts, arrangement.spec.seconds, soundfont)
    return normalize_loudness(audio, target_lufs, limit=True)


def render_midi(path: Path, seconds: float, soundfont: Path) -> np.ndarray:
    """A corpus clip's MIDI file through another SoundFont, loudness-normalized: the same notes in
    sounds the corpus never used, for judging a model on timbres it was not trained on. The MIDI
    keeps notes, programs and velocities; part volumes and reverb take their defaults."""
    import pretty_midi

    parts = [Part(inst.name or "part", inst.program, inst.is_drum, [Note(n.start, n.end, n.pitch, n.velocity) for n in inst.notes])
             for inst in pretty_midi.PrettyMIDI(str(path)).instruments]
    return normalize_loudness(synthesize(parts, seconds, soundfont))[0]
