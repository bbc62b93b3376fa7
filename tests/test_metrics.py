import numpy as np
import pytest

from engine.audio import SAMPLE_RATE
from engine.evaluate.metrics import descriptors, estimated_bpm, frechet_distance, tempo_error
from engine.prompts import DYNAMICS_RANGES, TEMPO_RANGES, StatedTempo, stated_bpm, stated_loudness, stated_tempo


@pytest.mark.parametrize("prompt, bpm", [
    ("The pulse sits at 76 bpm; tonal center C# minor.", 76), ("calm violin melody, 90 BPM", 90), ("techno 128bpm", 128),
    ("tempo 150, aggressive", 150), ("tempo: 150", 150), ("a tempo of about 72", 72), ("bpm = 128", 128), ("BPM: 174 drum and bass", 174),
    ("at 100 beats per minute", 100), ("at around 160 beats per minute", 160), ("lo-fi at 70 beats a minute", 70), ("84 beats/min", 84),
    ("a 90-bpm groove", 90), ("~128 bpm", 128), ("120ish bpm house", 120), ("trap at 140 b.p.m.", 140),
    ("ninety bpm", 90), ("eighty-five bpm", 85), ("one hundred and twenty bpm", 120), ("a hundred twenty beats per minute", 120),
    ("one-thirty bpm two-step", 130), ("one twenty-five bpm", 125), ("Seventy Two BPM", 72),
    ("dnb, rolling breakbeats, 174", 174), ("dubstep, wobble bass, 140, dark", 140), ("90-100 bpm", 95), ("90–100 bpm", 95), ("between 90 and 100 bpm", 95), ("90 to 110 beats per minute", 100),
])
def test_a_stated_tempo_is_read_however_it_is_written(prompt, bpm):
    assert stated_bpm(prompt) == bpm


@pytest.mark.parametrize("prompt", ["a slow ballad", "808 drum machine techno", "tempo 150% faster", "1970s disco", "music for 2 minutes",
                                    "one bpm", "999 bpm", "a 10 bpm drone", "trap with 808s, 1999 vibes", "techno, 2", "songs from 1985", "tempo rubato", "breakfast jazz", "3 beats per bar"])
def test_numbers_that_are_not_a_tempo_are_not_read_as_one(prompt):
    assert stated_bpm(prompt) is None


def test_a_range_is_answered_by_its_span_and_tempo_words_by_their_bucket():
    assert stated_tempo("between 90 and 100 bpm", 0.04).range == pytest.approx((86.4, 104.0))
    assert stated_tempo("ninety bpm", 0.04) == StatedTempo.at(90.0, 0.04)
    for prompt, bucket in (("an allegro string quartet", "fast"), ("downtempo chill", "slow"), ("andante piano", "medium"),
                           ("up-tempo funk", "fast"), ("a leisurely waltz", "slow"), ("brisk reel", "fast")):
        assert stated_tempo(prompt, 0.04) == StatedTempo(None, TEMPO_RANGES[bucket]), prompt
    assert stated_tempo("breakfast music", 0.04) is None


@pytest.mark.parametrize("prompt, key", [
    ("soft piano", "soft"), ("A hushed, intimate jazz trio", "soft"), ("quietly drifting ambient", "soft"), ("subdued strings", "soft"),
    ("whisper-quiet pad", "whisper"), ("barely audible music box", "whisper"), ("pianissimo string quartet", "whisper"),
    ("a LOUD punk song", "loud"), ("powerful epic orchestra", "loud"), ("booming brass, forte", "loud"),
    ("very loud drums", "very loud"), ("full-power metal", "very loud"), ("fortissimo timpani", "very loud"), ("techno at full volume", "very loud"),
    ("from soft to loud", "soft"),  # the first one said
    ("ultra-quiet drone", "soft"), ("a super-loud riff", "loud"),  # compounds end in the word
])
def test_loud_and_quiet_are_read_however_they_are_written(prompt, key):
    assert stated_loudness(prompt) == DYNAMICS_RANGES[key]


@pytest.mark.parametrize("prompt", ["soft rock anthem", "a quiet storm slow jam", "not too loud, please", "never loud", "jazz trio",
                                    "loudspeaker test", "piano ballad", "powerfully", "a non-loud pop song",
                                    "not-too-loud lounge jazz"])
def test_genres_negations_and_other_words_are_not_read_as_loudness(prompt):
    assert stated_loudness(prompt) is None


def test_tempo_error_forgives_half_and_double_time():
    assert tempo_error(120, 120) == 0
    assert tempo_error(60, 120) == 0 and tempo_error(240, 120) == 0
    assert tempo_error(100, 120) == pytest.approx(20 / 120)


def _clicks(bpm: float, seconds: float = 8.0) -> np.ndarray:
    audio = np.zeros(int(seconds * SAMPLE_RATE), np.float32)
    rng = np.random.default_rng(0)
    for t in np.arange(0, seconds, 60 / bpm):
        start = int(t * SAMPLE_RATE)
        audio[start:start + 600] += rng.normal(0, 0.5, len(audio[start:start + 600])) * np.exp(-np.arange(len(audio[start:start + 600])) / 100)
    return audio


def test_beat_tracker_finds_a_click_track():
    assert tempo_error(estimated_bpm(_clicks(100)), 100) <= 0.08


def test_descriptors_tell_drums_from_a_sustained_tone():
    t = np.arange(8 * SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    drums = descriptors(_clicks(140))
    pad = descriptors(tone)
    assert drums["percussive_ratio"] > pad["percussive_ratio"]
    assert drums["onset_rate"] > pad["onset_rate"]
    assert drums["spectral_centroid"] > pad["spectral_centroid"]


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 3))
    y = rng.normal(size=(4000, 3)) * 2 + 1  # N(1, 4I): |Δμ|² = 3, tr(Σx + Σy − 2√(ΣxΣy)) = 3·(1 + 4 − 4) = 3
    assert frechet_distance(x, x) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(x, y) == pytest.approx(6, rel=0.05)
    assert np.isfinite(frechet_distance(x[:3], y))  # fewer samples than dimensions: still defined
    with pytest.raises(ValueError, match="at least two"):
        frechet_distance(x[:1], y)


def test_pitch_class_agreement_tells_kept_notes_from_moved_ones():
    from engine.evaluate.metrics import pitch_class_agreement

    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    a4 = 0.3 * np.sin(2 * np.pi * 440.0 * t)
    quieter_a4_with_hiss = 0.1 * a4 + 0.001 * np.random.default_rng(0).standard_normal(t.size)
    b_flat4 = 0.3 * np.sin(2 * np.pi * 466.16 * t)
    assert pitch_class_agreement(a4, quieter_a4_with_hiss) == 1.0
    assert pitch_class_agreement(a4, b_flat4) == 0.0
    a4_then_silence = np.where(t < 1.0, a4, 0.0)
    assert pitch_class_agreement(a4_then_silence, np.where(t < 1.0, a4, b_flat4)) > 0.9  # silent frames are not judged (the edge blurs)


def test_a_sine_is_heard_at_its_frequency_and_a_frame_rate_comb_is_measured():
    from engine.evaluate.metrics import cents, comb_share, dominant_frequency
    from engine.evaluate.tones import tone

    sine = tone(233.1)
    assert abs(cents(dominant_frequency(sine), 233.1)) < 1
    assert comb_share(tone(233.1, partials=8)) < 0.15  # harmonics of 233 Hz stay off the 50 Hz grid
    t = np.arange(2 * 24_000) / 24_000
    comb = sum(np.sin(2 * np.pi * 50 * k * t) for k in range(2, 40)).astype(np.float32)  # what a frame-rate buzz looks like
    assert comb_share(comb) > 0.9
    noise = np.random.default_rng(0).standard_normal(2 * 24_000)
    assert 0.1 < comb_share(noise) < 0.2  # chance: 7 of every 50 one-hertz bins


def test_a_buzz_repeating_every_fourth_token_is_on_the_quarter_grid_and_mostly_off_the_token_rate():
    from engine.evaluate.metrics import comb_share, quarter_comb_share

    t = np.arange(2 * 24_000) / 24_000
    quarter = sum(np.sin(2 * np.pi * 12.5 * k * t + k) for k in range(8, 240)).astype(np.float32)  # period 1,920 samples
    assert quarter_comb_share(quarter) > 0.9
    assert comb_share(quarter) < 0.4  # a quarter of its lines are the token rate's
    noise = np.random.default_rng(0).standard_normal(2 * 24_000)
    assert 0.17 < quarter_comb_share(noise) < 0.3  # chance: 3 of every 12.5 one-hertz bins


def test_a_paired_gap_tells_a_codecs_difference_from_the_luck_of_the_clips():
    from engine.evaluate.common import paired_gap

    rng = np.random.default_rng(0)
    opus = rng.uniform(0.03, 0.28, 20)  # clips' comb shares swing with where their notes fall
    alike = paired_gap(list(opus + rng.normal(0, 0.01, 20)), list(opus))
    above = paired_gap(list(opus + 0.02 + rng.normal(0, 0.005, 20)), list(opus))
    assert alike["interval_95"][0] < 0 < alike["interval_95"][1] and alike["clips"] == 20
    assert 0.015 < above["mean"] < 0.025 and above["interval_95"][0] > 0.01 and above["clips_not_higher"] == 0
    assert above["interval_95"][0] < above["mean"] < above["interval_95"][1] and 0 < above["standard_error"] < 0.003
    assert paired_gap([0.1, 0.2, 0.3], [0.1, 0.25, 0.2]) == paired_gap([0.1, 0.2, 0.3], [0.1, 0.25, 0.2])  # seeded: the same report twice
    assert paired_gap([0.1, 0.2], [0.1, 0.25])["clips_not_higher"] == 2
    one = paired_gap([0.2], [0.15])  # one clip: a gap, but no spread to judge it by
    assert one["mean"] == 0.05 and one["standard_error"] is None and one["interval_95"] is None and one["clips_not_higher"] == 0
    with pytest.raises(ValueError, match="two equally long lists"):
        paired_gap([0.1, 0.2], [0.1])


def test_tone_frequencies_span_80_to_1000_hz_and_stay_off_the_50_hz_grid():
    from engine.evaluate.tones import tone_frequencies

    freqs = tone_frequencies()
    assert len(freqs) == 24 and freqs.min() >= 80 and freqs.max() <= 1000
    assert (np.abs(freqs - 50 * np.round(freqs / 50)) >= 5).all()


def test_the_outside_transcriber_hears_the_notes_of_a_tune_and_scores_them_against_a_score():
    """basic-pitch (an ear nobody here trained) finds a plain tune's notes; note F1 is 1 against
    itself, falls when the pitches are wrong, and is 0 for nothing heard."""
    from engine.evaluate.transcribe import note_f1, transcribe
    from engine.evaluate.tones import tone

    pitches = [60, 64, 67, 72, 67, 64]
    audio = np.concatenate([np.concatenate([tone(440 * 2 ** ((p - 69) / 12), partials=6, seconds=0.45), np.zeros(1200)]) for p in pitches])
    score = np.array([(i * 0.5, i * 0.5 + 0.45, p) for i, p in enumerate(pitches)], dtype=np.float64)
    heard = transcribe(audio.astype(np.float32))
    assert note_f1(score, heard) >= 0.7  # every note, and a few ghosts on the upper partials
    assert note_f1(score, heard[np.isin(heard[:, 2], pitches)]) == 1.0
    assert note_f1(score, score) == 1.0 and note_f1(score, score + [0, 0, 1]) == 0.0 and note_f1(score, np.zeros((0, 3))) == 0.0
