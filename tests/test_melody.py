"""Hum → melody tokens: the tracker follows a tune through vibrato, breath noise, octave
changes and gaps; bad recordings get one clear message; the metric means what it says."""
import numpy as np
import pytest

from engine.audio import SAMPLE_RATE, AudioError
from engine.evaluate.metrics import melody_chroma_cosine
from engine.melody import UNVOICED, melody_tokens, synthetic_hum, tokens, track

SCALE = [60, 62, 64, 65, 67, 69, 71, 72]


def _scale_hum(shift: int = 0, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """C major scale, 0.4 s notes with 0.1 s breaths; returns (audio, expected 25 Hz tokens)."""
    notes = [(0.2 + 0.5 * i, 0.4, p + shift) for i, p in enumerate(SCALE)]
    expected = np.full(int(4.5 * 25), UNVOICED)
    for onset, duration, pitch in notes:
        expected[int(round(onset * 25)):int(round((onset + duration) * 25))] = pitch % 12
    return synthetic_hum(notes, 4.5, **kwargs), expected


def _agreement(found: np.ndarray, expected: np.ndarray) -> float:
    voiced = expected != UNVOICED
    return float(np.mean(found[voiced] == expected[voiced]))


@pytest.mark.parametrize("shift", [-12, 0, 12])
def test_tracker_recovers_the_pitch_classes_in_any_octave(shift):
    audio, expected = _scale_hum(shift)
    found = melody_tokens(audio)
    assert found.size == expected.size
    assert _agreement(found, expected) >= 0.9
    assert np.mean(found[expected == UNVOICED][:5] == UNVOICED) == 1.0  # the silent lead-in stays unvoiced


@pytest.mark.parametrize("level_db", [-10, -40])
@pytest.mark.parametrize("hz", [110.0, 440.0, 1300.0])
def test_a_pure_whistle_or_hum_is_heard_at_any_sensible_level_and_silence_is_not(hz, level_db):
    """A sine is what a whistle nearly is; torchcrepe's own silence gate dropped one at -10 dBFS."""
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    found = tokens(track((10 ** (level_db / 20) * np.sqrt(2) * np.sin(2 * np.pi * hz * t)).astype(np.float32)))
    assert np.mean(found[2:-2] == round(12 * np.log2(hz / 440) + 69) % 12) > 0.95
    hiss = np.random.default_rng(0).standard_normal(2 * SAMPLE_RATE).astype(np.float32) * 1e-4  # -80 dBFS
    assert (tokens(track(hiss)) == UNVOICED).all()


def test_repeated_notes_are_heard_as_notes_and_a_held_note_as_one():
    """notes_heard: "Twinkle, twinkle" keeps its 14 notes whether the breaths are long or short."""
    from engine.melody import notes_heard

    tune, beats = [60, 60, 67, 67, 69, 69, 67, 65, 65, 64, 64, 62, 62, 60], [1] * 6 + [2] + [1] * 6 + [2]
    for breath in (0.08, 0.03):
        notes, onset = [], 0.2
        for pitch, beat in zip(tune, beats):
            notes.append((onset, 0.4 * beat - breath, pitch))
            onset += 0.4 * beat
        heard = notes_heard(track(synthetic_hum(notes, onset + 0.3)))
        assert heard == ["C4", "C4", "G4", "G4", "A4", "A4", "G4", "F4", "F4", "E4", "E4", "D4", "D4", "C4"]
    held = track(synthetic_hum([(0.2, 2.0, 64), (2.3, 1.0, 67)], 3.5, vibrato_cents=45, breath=0.05))
    assert notes_heard(held) == ["E4", "G4"]


def test_tracker_survives_wide_vibrato_and_breath_noise():
    audio, expected = _scale_hum(vibrato_cents=45, breath=0.05, seed=3)
    assert _agreement(melody_tokens(audio), expected) >= 0.85


def test_short_breaths_between_notes_are_bridged():
    audio, _ = _scale_hum()
    voiced = tokens(track(audio)) != UNVOICED
    first, last = np.flatnonzero(voiced)[[0, -1]]
    assert voiced[first:last + 1].mean() > 0.95  # 0.1 s gaps are 2–3 frames: filled


def test_other_sample_rates_give_the_same_frames():
    audio, expected = _scale_hum()
    import torch
    import torchaudio

    at_44k = torchaudio.functional.resample(torch.from_numpy(audio), SAMPLE_RATE, 44_100).numpy()
    assert _agreement(melody_tokens(at_44k, 44_100), expected) >= 0.9


BAD_HUMS = {
    "silent": (np.zeros(SAMPLE_RATE * 3, np.float32), "silent"),
    "too short": (_scale_hum()[0][: SAMPLE_RATE // 2], "at least 1 s"),
    "too long": (np.tile(_scale_hum()[0], 14), "limit for a melody is 60 s"),
    "clipped": (np.clip(_scale_hum()[0] * 20, -1, 1), "clipped"),
    "noise only": (np.random.default_rng(0).standard_normal(SAMPLE_RATE * 3).astype(np.float32) * 0.3, "no melody"),
}


@pytest.mark.parametrize("case", sorted(BAD_HUMS))
def test_bad_recordings_get_one_clear_message(case):
    audio, message = BAD_HUMS[case]
    with pytest.raises(AudioError, match=message):
        melody_tokens(audio)


def test_chroma_cosine_counts_agreeing_voiced_frames():
    hum = np.array([0, 0, 4, 4, UNVOICED, 7])
    assert melody_chroma_cosine(hum, np.array([0, 0, 4, 4, 2, 7])) == 1.0
    assert melody_chroma_cosine(hum, np.array([0, 1, 4, 5, 7, 7])) == 0.6  # unvoiced hum frames do not count
    with pytest.raises(ValueError):
        melody_chroma_cosine(np.full(4, UNVOICED), np.zeros(4, int))


def test_the_decoder_is_torchcrepes_weighted_argmax_without_its_dither(monkeypatch):
    import torch
    import torchcrepe

    from engine.melody import weighted_argmax

    logits = torch.randn(2, 360, 40) * 3
    monkeypatch.setattr(torchcrepe.convert, "dither", lambda cents: cents)
    monkeypatch.delattr(torchcrepe.decode.weighted_argmax, "weights", raising=False)  # it caches its dithered table
    bins, hz = weighted_argmax(logits.clone())
    their_bins, their_hz = torchcrepe.decode.weighted_argmax(logits.clone())
    assert torch.equal(bins, their_bins)
    assert torch.allclose(hz, their_hz, rtol=1e-5)


@pytest.mark.slow
def test_the_same_hum_tracks_identically_in_fresh_processes():
    """torchcrepe dithers its pitch table once per process; ours must not depend on the process."""
    import subprocess
    import sys

    script = ("import numpy as np; from engine.melody import synthetic_hum, track; "
              "audio = synthetic_hum([(0.2, 0.6, 61), (0.9, 0.6, 66)], 1.6, seed=2); "
              "print(np.round(track(audio).midi, 6).tobytes().hex())")
    runs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout for _ in range(2)}
    assert len(runs) == 1
