"""Hum / whistle → 25 Hz melody tokens (MusicLM §3.4, melody conditioning).

The paper learns a melody embedding; with a small corpus we keep the part that matters for
following a tune and make it robust by construction: a pitch tracker (CREPE "tiny", whose weights
ship inside the ``torchcrepe`` package) gives one pitch per 40 ms frame, and each frame becomes
its **pitch class** (12 tokens) or **unvoiced** (token 12). Pitch classes make octave errors and a
hummer's register harmless; median filters absorb vibrato and breath noise; short gaps between
notes are bridged. Corpus melody renditions (the lead line on voice / whistle-like patches) are
tracked exactly the same way to train stage 1, so training and use see the same token errors.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchaudio

from .audio import SAMPLE_RATE, SILENT_PEAK, AudioError

FRAME_RATE = 25  # melody tokens share the semantic tokens' clock
UNVOICED = 12
VOCAB = 13
TRACKER_RATE = 16_000  # CREPE's input rate
CREPE_CENTS_OFFSET = 1997.3794084376191  # cents of CREPE's bin 0 (≈ 31.7 Hz), from torchcrepe.convert
HOP = TRACKER_RATE // FRAME_RATE
MELODY_SOURCES = ("tracked", "score")  # where stage 1's training melodies come from: the rendition as a hum is tracked, or the score's lead line
PITCH_CLASSES = ("C", "C♯", "D", "D♯", "E", "F", "F♯", "G", "G♯", "A", "A♯", "B")


def note_name(midi: int) -> str:
    """MIDI number → scientific pitch name (60 → C4)."""
    return f"{PITCH_CLASSES[midi % 12]}{midi // 12 - 1}"


@dataclass(frozen=True)
class TrackerConfig:
    model: str = "tiny"
    fmin: float = 65.0  # C2: low hums
    fmax: float = 1400.0  # F6: whistles
    voicing: float = 0.45  # periodicity above which a frame is a note
    silence_db: float = -50.0  # frames whose RMS is below this (dBFS) are unvoiced whatever the periodicity
    smooth_frames: int = 3  # median filter on pitch and periodicity: vibrato, breath
    bridge_frames: int = 2  # unvoiced gaps this short between notes are filled (breaths, consonants)


# hum checks (issue 6): what a user may hand the hum tab
MIN_HUM_SECONDS = 1.0
MAX_HUM_SECONDS = 60.0
CLIPPED_SHARE = 0.01  # more than 1 % of samples at full scale: the input level was too high


def check_hum(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Raise ``AudioError`` with one clear message for a recording we cannot follow."""
    seconds = audio.size / sample_rate
    if seconds < MIN_HUM_SECONDS:
        raise AudioError(f"the hum is {seconds:.2f} s long; hum or whistle for at least {MIN_HUM_SECONDS:.0f} s")
    if seconds > MAX_HUM_SECONDS:
        raise AudioError(f"the hum is {seconds:.0f} s long; the limit for a melody is {MAX_HUM_SECONDS:.0f} s")
    peak = float(np.abs(audio).max())
    if peak < SILENT_PEAK:
        raise AudioError("the hum is silent; check the microphone and hum a little louder")
    clipped = float(np.mean(np.abs(audio) >= 0.999))
    if clipped > CLIPPED_SHARE:
        raise AudioError(f"the hum is clipped ({clipped:.0%} of samples at full scale); lower the input level and record again")


@dataclass(frozen=True)
class PitchTrack:
    """Per-frame (25 Hz) MIDI pitch (NaN where unvoiced), the tracker's periodicity and the
    frame's level (dBFS), which tells a repeated note from a held one."""
    midi: np.ndarray
    periodicity: np.ndarray
    level_db: np.ndarray

    @property
    def voiced(self) -> np.ndarray:
        return np.isfinite(self.midi)

    @property
    def times(self) -> np.ndarray:
        return np.arange(self.midi.size) / FRAME_RATE


def track(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, cfg: TrackerConfig = TrackerConfig()) -> PitchTrack:
    """Pitch-track mono audio into 25 Hz frames (frame k centred at k / 25 s)."""
    import torchcrepe

    frames = int(round(audio.size / sample_rate * FRAME_RATE))
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
    if sample_rate != TRACKER_RATE:
        x = torchaudio.functional.resample(x, sample_rate, TRACKER_RATE)
    with torch.inference_mode():
        pitch, periodicity = torchcrepe.predict(x, TRACKER_RATE, HOP, cfg.fmin, cfg.fmax, cfg.model, return_periodicity=True,
                                                batch_size=1024, device="cpu", decoder=weighted_argmax)
        periodicity = torchcrepe.filter.median(periodicity, cfg.smooth_frames)
        pitch = torchcrepe.filter.median(pitch, cfg.smooth_frames)
    midi = 69 + 12 * np.log2(pitch[0].numpy()[:frames] / 440.0)
    p = np.nan_to_num(periodicity[0].numpy()[:frames])
    level = frame_db(x[0].numpy(), frames)
    p[level < cfg.silence_db] = 0.0
    midi[p < cfg.voicing] = np.nan
    return PitchTrack(_bridge(midi, cfg.bridge_frames), p, level)


def frame_db(audio: np.ndarray, frames: int) -> np.ndarray:
    """RMS level (dBFS) of each tracker frame, centred like CREPE's. (torchcrepe's own silence
    gate reads an A-weighted scale on which a sine at -10 dBFS sits at -62 dB: with a threshold
    of -55 it silenced every whistle and every pure hum.)"""
    padded = np.pad(audio, HOP // 2)
    usable = padded[: len(padded) // HOP * HOP].reshape(-1, HOP)
    rms = np.sqrt(np.mean(usable.astype(np.float64) ** 2, axis=1))[:frames]
    rms = np.pad(rms, (0, frames - len(rms)))
    return 20 * np.log10(np.maximum(rms, 1e-10))


def weighted_argmax(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CREPE's decoder: the probability-weighted mean pitch of the 9 bins around the most likely
    one, as ``torchcrepe.decode.weighted_argmax`` but without its dither. torchcrepe adds noise to
    the bin pitches once per process (its dither draws from numpy's global generator), so the
    same hum gave different tokens in different processes; the noise only trades quantization
    error, which a weighted mean does not have. (B, 360, T) logits → (bins, Hz), each (B, T)."""
    import torchcrepe

    bins = logits.argmax(dim=1)
    index = torch.arange(logits.shape[1], device=logits.device)[None, :, None]
    near = (index >= bins[:, None] - 4) & (index <= bins[:, None] + 4)
    probs = torch.sigmoid(logits) * near
    cents = torchcrepe.CENTS_PER_BIN * index + CREPE_CENTS_OFFSET
    return bins, torchcrepe.convert.cents_to_frequency((cents * probs).sum(1) / probs.sum(1))


def _bridge(midi: np.ndarray, longest: int) -> np.ndarray:
    """Fill unvoiced runs of ≤ ``longest`` frames that sit between two voiced frames."""
    out, voiced = midi.copy(), np.isfinite(midi)
    t = 0
    while t < midi.size:
        if voiced[t]:
            t += 1
            continue
        end = t
        while end < midi.size and not voiced[end]:
            end += 1
        if 0 < t and end < midi.size and end - t <= longest:
            out[t:end] = midi[t - 1]
        t = end
    return out


def tokens(track_: PitchTrack) -> np.ndarray:
    """Pitch track → int64 melody tokens: pitch class 0–11 (C = 0) or ``UNVOICED``."""
    out = np.full(track_.midi.size, UNVOICED, dtype=np.int64)
    v = track_.voiced
    out[v] = np.round(track_.midi[v]).astype(np.int64) % 12
    return out


def score_tokens(notes: list[dict], frames: int) -> np.ndarray:
    """A score's melody (notes with onset, duration in seconds and MIDI pitch) → the tokens that
    ``tokens`` reads off a rendition of it: the sounding pitch class per 25 Hz frame (the latest
    onset wins an overlap), ``UNVOICED`` between notes."""
    out = np.full(frames, UNVOICED, dtype=np.int64)
    centres = np.arange(frames) / FRAME_RATE
    for note in sorted(notes, key=lambda n: n["onset"]):
        out[(centres >= note["onset"]) & (centres < note["onset"] + note["duration"])] = int(note["pitch"]) % 12
    return out


def analyse_hum(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[PitchTrack, np.ndarray]:
    """A user's hum → (pitch track to show, melody tokens to condition on), after the checks a
    recording must pass."""
    check_hum(audio, sample_rate)
    pitch = track(audio, sample_rate)
    out = tokens(pitch)
    if (out == UNVOICED).all():
        raise AudioError("no melody found in the recording; hum or whistle a clear tune")
    return pitch, out


def melody_tokens(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    return analyse_hum(audio, sample_rate)[1]


def synthetic_hum(midi_notes: list[tuple[float, float, int]], seconds: float, seed: int = 0,
                  vibrato_cents: float = 40.0, breath: float = 0.02) -> np.ndarray:
    """A test hum: sine notes (onset s, duration s, MIDI pitch) with 5.5 Hz vibrato, a soft
    attack, and breath noise — the things a tracker must survive."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    out = np.zeros_like(t)
    for onset, duration, pitch in midi_notes:
        idx = (t >= onset) & (t < onset + duration)
        local = t[idx] - onset
        freq = 440.0 * 2 ** ((pitch - 69 + vibrato_cents / 100 * np.sin(2 * np.pi * 5.5 * local)) / 12)
        phase = 2 * np.pi * np.cumsum(freq) / SAMPLE_RATE
        envelope = np.minimum(1.0, local / 0.03) * np.minimum(1.0, (duration - local) / 0.03)
        out[idx] += 0.3 * envelope * (np.sin(phase) + 0.3 * np.sin(2 * phase))
    return (out + breath * rng.standard_normal(t.size)).astype(np.float32)


SHORTEST_NOTE_FRAMES = 2  # 80 ms: shorter pitch excursions are a glide, not a note
HOLD_SEMITONES = 0.7  # vibrato around a held note does not start a new one


def notes_heard(pitch: PitchTrack) -> list[str]:
    """The notes of a pitch track, each named by its median pitch (C4 = 60): a note ends at a
    silence, at a re-attack (the level dips by ``REATTACK_DB`` and comes back: "twin-kle twin-kle"
    is four notes, not two), or where the pitch leaves it by more than 0.7 semitones for at least
    80 ms."""
    attacks = reattacks(pitch.level_db)
    runs: list[list[float]] = []
    current: list[float] = []
    leaving: list[float] = []
    for t, m in enumerate(list(pitch.midi) + [np.nan]):
        if not np.isfinite(m) or (current and attacks[t]):
            runs.append(current)
            current, leaving = ([m] if np.isfinite(m) else []), []
        elif not current or abs(m - np.median(current)) <= HOLD_SEMITONES:
            current.append(m)
            leaving = []
        else:
            leaving.append(m)
            if len(leaving) >= SHORTEST_NOTE_FRAMES:
                runs.append(current)
                current, leaving = leaving, []
    return [note_name(int(round(np.median(r)))) for r in runs if len(r) >= SHORTEST_NOTE_FRAMES]


REATTACK_DB = 6.0  # a dip this deep between two louder stretches is a breath or a new syllable
REATTACK_FRAMES = 4  # … looked for this far (160 ms) on either side


def reattacks(level_db: np.ndarray) -> np.ndarray:
    """(frames + 1,) bool: True where a new note starts after a dip in level (the frame after
    the dip's lowest point); the extra last entry keeps ``notes_heard``'s sentinel in range."""
    out = np.zeros(level_db.size + 1, dtype=bool)
    for t in range(1, level_db.size - 1):
        before = level_db[max(0, t - REATTACK_FRAMES):t]
        after = level_db[t + 1:t + 1 + REATTACK_FRAMES]
        lowest = level_db[t] <= level_db[t - 1] and level_db[t] < level_db[t + 1]
        if lowest and before.max() - level_db[t] >= REATTACK_DB and after.max() - level_db[t] >= REATTACK_DB:
            out[t + 1] = True
    return out
