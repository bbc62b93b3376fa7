"""The level stage: stated loud and quiet reach their loudness as a stream, without a click, a
clipped peak, or a touch on music whose words state none."""
from dataclasses import replace

import numpy as np
import pytest
import torch
import torchaudio.functional as AF

from engine.audio import SAMPLE_RATE
from engine.data.dynamics import PEAK_CEILING
from engine.generate.level import LevelStage, bend_peaks, blend_loudness, source_loudness, target_loudness

CHUNK = SAMPLE_RATE // 2


def lufs(audio: np.ndarray) -> float:
    return float(AF.loudness(torch.from_numpy(np.asarray(audio, np.float32))[None], SAMPLE_RATE))


def worded(segments: list[tuple[float, str]]) -> list[tuple[float, float | None]]:
    """(start, prompt) segments → the targets their words state, as generation reads them."""
    return [(start, target_loudness(prompt)) for start, prompt in segments]


def streamed(stage: LevelStage, audio: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    return np.concatenate([stage(audio[i:i + chunk], i / SAMPLE_RATE) for i in range(0, len(audio), chunk)])


def music_like(seconds: float, level: float, seed: int = 0) -> np.ndarray:
    """Noise under a slow swell (so a fixed gain cannot be read off one chunk), scaled by ``level``."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    noise = np.random.default_rng(seed).normal(0, 1, len(t))
    return (level * noise * (0.6 + 0.4 * np.sin(2 * np.pi * 0.3 * t))).astype(np.float32)


def test_dynamics_words_ask_for_the_middle_of_their_band_and_other_words_for_nothing():
    assert target_loudness("a hushed piano nocturne") == pytest.approx(-27.5)
    assert target_loudness("whisper-quiet ambient pads") == pytest.approx(-30.0)
    assert target_loudness("LOUD punk, 180 bpm") == pytest.approx(-14.0)
    assert target_loudness("thunderous taiko drums") == pytest.approx(-12.75)
    assert target_loudness("soft rock ballad") is None and target_loudness("not too loud, a jazz trio") is None
    assert target_loudness("funk groove with slap bass") is None


@pytest.mark.parametrize("prompt, level", [("a hushed lullaby", 0.2), ("a thunderous drum line", 0.05), ("a loud anthem", 0.1)])  # from -14, -26, -20 LUFS
def test_a_stated_loudness_is_reached_from_any_level_and_peaks_stay_under_the_ceiling(prompt, level):
    out = streamed(LevelStage.of_targets(worded([(0.0, prompt)])), music_like(12, level))
    assert abs(lufs(out[-6 * SAMPLE_RATE:]) - target_loudness(prompt)) < 1.5  # a fader that rides a swell, not a normalizer
    assert np.abs(out).max() <= PEAK_CEILING


def test_the_gain_glides_from_chunk_to_chunk_without_a_jump():
    audio = music_like(8, 0.02)
    out = streamed(LevelStage.of_targets(worded([(0.0, "very loud")])), audio)
    gain = out / np.where(np.abs(audio) > 1e-4, audio, np.nan)  # sample by sample, where nothing was bent
    unbent = np.abs(out) < 0.69
    for edge in range(CHUNK, len(audio), CHUNK):
        before = gain[edge - 200:edge][unbent[edge - 200:edge]]
        after = gain[edge:edge + 200][unbent[edge:edge + 200]]
        assert abs(np.nanmedian(after) / np.nanmedian(before) - 1) < 0.01, edge


def test_unstated_words_leave_the_music_as_the_models_made_it():
    assert LevelStage.of_targets(worded([(0.0, "funk groove"), (4.0, "calm strings")])) is None
    audio = music_like(12, 0.1)
    out = streamed(LevelStage.of_targets(worded([(0.0, "a soft intro"), (4.0, "calm strings, no dynamics said"), (8.0, "loud finale")])), audio)
    middle = slice(6 * SAMPLE_RATE, 8 * SAMPLE_RATE)  # after the glide back to the models' own level
    assert np.allclose(out[middle], audio[middle], atol=1e-6)
    assert lufs(out[:4 * SAMPLE_RATE]) < lufs(audio[:4 * SAMPLE_RATE]) - 4 and lufs(out[10 * SAMPLE_RATE:]) > lufs(audio[10 * SAMPLE_RATE:]) + 3


def test_a_story_that_swells_swells_even_from_music_that_does_not():
    audio = music_like(15, 0.05)
    stage = LevelStage.of_targets(worded([(0.0, "quiet, gentle"), (5.0, "loud and powerful"), (10.0, "hushed again")]))
    out = streamed(stage, audio)
    rms = [float(np.sqrt(np.mean(out[k * 5 * SAMPLE_RATE + SAMPLE_RATE:(k + 1) * 5 * SAMPLE_RATE] ** 2))) for k in range(3)]
    assert rms[1] >= 3 * max(rms[0], rms[2])


def test_bent_peaks_keep_their_sign_and_order_and_quiet_samples_stay_exact():
    x = np.linspace(-1.5, 1.5, 1001, dtype=np.float32)
    y = bend_peaks(x)
    assert np.all(np.diff(y) > 0) and np.abs(y).max() < PEAK_CEILING
    assert np.abs(bend_peaks(np.array([-40.0, 40.0], np.float32))).max() <= PEAK_CEILING
    quiet = np.abs(x) <= 0.7
    assert np.array_equal(y[quiet], x[quiet])


def test_the_pipeline_steers_a_stated_loudness_and_the_setting_turns_it_off(tiny_pipeline):
    from engine.generate.settings import GenerationSettings

    settings = GenerationSettings(seconds=3.0, seed=0)
    prompt, m = "a very loud march", torch.zeros(1, 12, dtype=torch.long)  # the tiny set has no MuLan: M given, as a continuation's
    raw, _ = tiny_pipeline.generate(prompt, replace(settings, level_stage=False), prefix=m)
    steered, _ = tiny_pipeline.generate(prompt, settings, prefix=m)
    assert len(raw) == len(steered)
    assert abs(lufs(steered[SAMPLE_RATE:]) - target_loudness(prompt)) < abs(lufs(raw[SAMPLE_RATE:]) - target_loudness(prompt))


def test_a_reference_clip_asks_for_its_own_loudness_within_the_corpus_range_and_words_blend_in():
    quiet, loud = music_like(4, 0.04), music_like(4, 0.1)
    assert source_loudness(quiet) == pytest.approx(lufs(quiet), abs=0.01) and -32 < lufs(quiet) < lufs(loud) < -12
    assert source_loudness(music_like(4, 1.0)) == -12.0  # louder than any piece the models heard: the loudest they did
    assert source_loudness(np.zeros(SAMPLE_RATE, np.float32)) is None
    assert blend_loudness([("whisper-quiet ambient pads", 1.0), (loud, 1.0)]) == pytest.approx((-30.0 + lufs(loud)) / 2, abs=0.01)
    assert blend_loudness([("funk groove with slap bass", 1.0), (quiet, 3.0)]) == pytest.approx(lufs(quiet), abs=0.01)  # words that state none
    assert blend_loudness([("funk groove with slap bass", 1.0)]) is None
