"""The tone stage: a style piece's spectral balance shaped toward its clips', chunk by chunk."""
import numpy as np
import pytest

from engine.generate.tone import MAX_TONE_DB, ToneStage, blend_balance, minimum_phase_filter, spectral_balance

RATE = 24_000


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(np.float32)


def _dark(audio: np.ndarray) -> np.ndarray:
    """``audio`` through a one-pole low-pass near 300 Hz: its balance leans to the low bands."""
    out, state, a = np.empty_like(audio), 0.0, np.exp(-2 * np.pi * 300 / RATE)
    for i, x in enumerate(audio):
        state = a * state + (1 - a) * x
        out[i] = state
    return out


def _streamed(stage: ToneStage, audio: np.ndarray, chunk: int = 12_000) -> np.ndarray:
    return np.concatenate([stage(audio[s:s + chunk]) for s in range(0, len(audio), chunk)])


def _distance_db(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute gap between two balances, in dB per band."""
    return float(np.mean(np.abs(10 * np.log10(a / b))))


def test_music_that_already_has_the_balance_passes_almost_unchanged():
    noise = _noise(4.0)
    out = _streamed(ToneStage(spectral_balance(noise)), noise)
    assert len(out) == len(noise) and out.dtype == np.float32
    assert _distance_db(spectral_balance(out), spectral_balance(noise)) < 0.5
    assert np.corrcoef(out, noise)[0, 1] > 0.97


def test_white_noise_is_shaped_toward_a_dark_clip_at_its_own_loudness():
    noise, target = _noise(6.0), spectral_balance(_dark(_noise(6.0, seed=1)))
    out = _streamed(ToneStage(target), noise)
    before, after = _distance_db(spectral_balance(noise), target), _distance_db(spectral_balance(out[RATE:]), target)
    assert after < 0.4 * before, (before, after)
    assert abs(20 * np.log10(np.sqrt(np.mean(out[RATE:] ** 2)) / np.sqrt(np.mean(noise[RATE:] ** 2)))) < 2.0
    half = ToneStage(target, strength=0.5)
    assert _distance_db(spectral_balance(_streamed(half, noise)[RATE:]), target) > after  # weaker: words took part of the blend


def test_each_band_moves_at_most_the_limit():
    stage = ToneStage(spectral_balance(_dark(_noise(2.0, seed=1))))
    stage(_noise(2.0))
    gains = stage.gains_db()
    assert np.ptp(gains) <= 2 * MAX_TONE_DB + 1e-6


def test_the_filter_has_its_gain_curve_and_no_delay():
    taps = minimum_phase_filter(np.full(23, -6.0))
    assert np.allclose(np.abs(np.fft.rfft(taps, 8192))[400:2000], 10 ** (-6 / 20), rtol=0.05)  # 1.2–5.9 kHz
    assert np.argmax(np.abs(taps)) < 8  # minimum phase: the energy comes first, the music is not held back


def test_chunks_join_without_a_click_when_the_gains_change():
    t = np.arange(3 * RATE) / RATE
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = _streamed(ToneStage(spectral_balance(_dark(_noise(3.0)))), tone, chunk=4_800)
    steps = np.abs(np.diff(out[RATE // 2:]))
    smooth = 2 * np.pi * 440 / RATE * np.abs(out[RATE // 2:]).max()  # the largest step a sine of that level takes
    assert steps.max() < 1.5 * smooth


def test_silence_and_openings_shorter_than_a_frame_pass():
    stage = ToneStage(spectral_balance(_noise(1.0)))
    assert np.array_equal(stage(np.zeros(1_000, np.float32)), np.zeros(1_000, np.float32))
    assert np.isfinite(stage(_noise(0.05))).all() and len(stage(np.zeros(0, np.float32))) == 0


@pytest.mark.parametrize("blend, strength", [
    ([("a flute lullaby", 1.0)], None),  # words name no spectrum
    ([(np.zeros(24_000, np.float32), 1.0)], None),  # nor does silence
    ([("a flute lullaby", 1.0), (_noise(1.0), 3.0)], 0.75),
    ([(_noise(1.0), 2.0), (_noise(1.0, seed=2), 2.0)], 1.0),
])
def test_a_blend_asks_for_its_clips_balance_at_their_share_of_the_weight(blend, strength):
    aim = blend_balance(blend)
    if strength is None:
        assert aim is None and ToneStage.of_blend(blend) is None
    else:
        assert aim[1] == pytest.approx(strength) and aim[0].sum() == pytest.approx(1.0)
