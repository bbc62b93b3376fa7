"""Tempo drafts (engine.generate.drafts): reading a tempo off stage-1 tokens, and the pipeline keeping the
draft that plays the stated one."""
import numpy as np
import pytest
import torch

from engine import GenerationSettings, MusicLM
from engine.generate.musiclm import collect
from engine.generate.drafts import envelope_bpm, pick_draft, tempo_miss
from engine.nn.mulan import PriorConfig

RATE = 25  # semantic frames per second


def clicks(period: int, frames: int = 250, phase: int = 0) -> np.ndarray:
    """An onset envelope with an attack every ``period`` frames: 1500 / period bpm at 25 Hz."""
    envelope = np.zeros(frames)
    envelope[phase::period] = 1.0
    return envelope


@pytest.mark.parametrize("period", [10, 12, 15, 20])
def test_the_tempo_of_a_click_track_is_read_within_the_tolerance(period):
    bpm = 60 * RATE / period
    assert tempo_miss(envelope_bpm(clicks(period), RATE), (bpm * 0.98, bpm * 1.02)) == 0.0


def test_the_numpy_tempo_estimate_is_librosas_own():
    """envelope_bpm keeps librosa out of generation (its import and first call cost seconds) but
    must estimate exactly as librosa.feature.tempo does on the same envelope."""
    from librosa.feature import tempo

    rng = np.random.default_rng(0)
    for _ in range(40):
        frames, bpm = int(rng.integers(60, 400)), rng.uniform(50, 200)
        envelope = np.maximum(0, np.cos(2 * np.pi * bpm / 60 * np.arange(frames) / RATE)) ** 8 + rng.uniform(0, 1) * rng.random(frames)
        fine = np.interp(np.arange((frames - 1) * 4 + 1) / 4, np.arange(frames), envelope)
        assert envelope_bpm(envelope, RATE) == pytest.approx(float(tempo(onset_envelope=fine - fine.min(), sr=RATE * 4, hop_length=1)[0]))


def test_a_tempo_miss_is_zero_inside_the_range_and_forgives_half_and_double():
    assert tempo_miss(100.0, (96.0, 104.0)) == 0.0
    assert tempo_miss(50.0, (96.0, 104.0)) == 0.0 and tempo_miss(200.0, (96.0, 104.0)) == 0.0
    assert tempo_miss(110.0, (96.0, 104.0)) == pytest.approx(6 / 104)
    assert tempo_miss(80.0, (96.0, 104.0)) == pytest.approx(16 / 96)  # 160 is further: the nearer octave counts


def test_the_first_draft_that_keeps_the_tempo_wins_else_the_nearest():
    drafts = np.stack([clicks(12), clicks(15), clicks(10), clicks(10, phase=3)])  # 125, 100, 150, 150 bpm
    keep, estimates = pick_draft(drafts, RATE, (144.0, 156.0), slack=0.01)
    assert keep == 2 and len(estimates) == 4
    keep, _ = pick_draft(drafts[:2], RATE, (144.0, 156.0), slack=0.01)
    assert keep == 0  # neither keeps it: 125 bpm is nearer to 144 than 100 (or 200) is


# ----------------------------------------------------------------------------- in the pipeline
class TextSide:
    """MuLan as far as the drafts use it: reading k of the prompt becomes M = k·5 + 0…11."""
    rvq = None

    def embed_text(self, prompts):
        return torch.zeros(len(prompts), 4)

    def tokens(self, embedding):
        return (embedding[:, :1].long() * 5 + torch.arange(12)) % 1024


class Readings:
    """A prior whose k-th alternative reading of any prompt is the embedding (k, k, k, k)."""
    cfg = PriorConfig()

    def __call__(self, embedding, rvq, tempo=None, loudness=None):
        return embedding

    def alternatives(self, text, rvq, tempo, count, loudness=None):
        self.asked = (tempo, count)
        return torch.arange(count, dtype=torch.float32)[:, None].expand(count, 4)


class TokensAsOnsets:
    reads_rhythm = True

    def onset_table(self):
        return torch.arange(1025).float()


@pytest.fixture
def drafting(tiny_pipeline, monkeypatch):
    """The tiny pipeline with the stubs above and a pick_draft that keeps the third draft (or the last) and records what it was shown."""
    shown = []

    def keep_the_third(envelopes, rate, wanted, slack):
        shown.append(envelopes)
        return min(2, len(envelopes) - 1), [0.0] * len(envelopes)

    monkeypatch.setattr("engine.generate.drafts.pick_draft", keep_the_third)
    model = MusicLM(TextSide(), tiny_pipeline.codec, *tiny_pipeline.stages.values(), semantic=TokensAsOnsets(), prior=Readings())
    return model, shown


def test_a_stated_tempo_continues_the_kept_draft_under_its_own_reading(drafting):
    model, shown = drafting
    settings = GenerationSettings(seconds=3.0, seed=4, tempo_drafts=3)
    tokens = {}
    audio, _ = model.generate("funk with slap bass, 120 bpm", settings, tokens_out=tokens)
    assert model.prior.asked[1] == 3 and model.prior.asked[0] == pytest.approx((115.2, 124.8))
    (envelopes,) = shown
    window = model.stages["stage1"].cfg.layout.positions  # the tiny stage 1's window (2 s) is shorter than the piece
    assert envelopes.shape == (3, window) and not np.array_equal(envelopes[0], envelopes[2])
    s = tokens["S"][0, 0]
    assert torch.equal(s[:window].float(), torch.from_numpy(envelopes[2]))  # the kept draft is the piece's start
    assert int(s.max()) < 1024 and len(s) == 75  # and stage 1 went on from it to the end
    assert np.isfinite(audio).all() and len(audio) == 3 * 24_000
    again, _ = model.generate("funk with slap bass, 120 bpm", settings)
    assert np.array_equal(audio, again)


def test_a_draft_covers_as_much_of_stage_1_as_the_settings_say(drafting):
    model, shown = drafting
    model.generate("funk with slap bass, 120 bpm", GenerationSettings(seconds=3.0, seed=4, tempo_drafts=3, tempo_draft_seconds=1.0))
    assert shown[0].shape == (3, 25)  # 1 s at 25 Hz (the default 5 s fills the tiny stage 1's 2 s window)
    for seconds in (0.5, 12.0, float("nan")):
        with pytest.raises(ValueError, match="a tempo draft must cover 1–10 seconds"):
            GenerationSettings(tempo_draft_seconds=seconds).check()


def test_the_kept_reading_conditions_what_follows_the_draft(drafting):
    model, _ = drafting
    settings = GenerationSettings(seconds=3.0, seed=4, tempo_drafts=3)
    drafted = {}
    model.generate("funk, 120 bpm", settings, tokens_out=drafted)
    kept_reading = TextSide().tokens(torch.full((1, 4), 2.0))
    given = {}  # the same S handed over with reading 2 as M: stage 2 must make the same coarse tokens
    model.generate("funk, 120 bpm", settings, prefix=kept_reading, semantic=drafted["S"], tokens_out=given)
    assert torch.equal(drafted["A"], given["A"])


def test_no_stated_bpm_one_draft_or_a_hum_generates_as_before(drafting):
    model, shown = drafting
    for prompt, drafts, hum in (("funk with slap bass", 4, None), ("slow funk with slap bass", 4, None),  # a word: a range, not a bpm
                                ("funk with slap bass, 120 bpm", 1, None),
                                ("funk with slap bass, 120 bpm", 4, np.arange(30) % 13)):  # a hum brings its own rhythm
        audio, _ = model.generate(prompt, GenerationSettings(seconds=1.0, seed=4, tempo_drafts=drafts), melody=hum)
        assert np.isfinite(audio).all()
    assert shown == []


def test_the_workers_continue_a_draft_as_the_caller_does(drafting):
    model, _ = drafting
    settings = GenerationSettings(seconds=3.0, seed=2, tempo_drafts=2)
    inline, _ = model.generate("funk, 120 bpm", settings)
    model.parallel = True
    try:
        parallel, _ = model.generate("funk, 120 bpm", settings)
    finally:
        model.parallel = False
        for worker in model._upstream_workers or ():
            worker.close()
    assert np.array_equal(inline, parallel)


STORY = [("calm piano", 1.5), ("funk with slap bass, 120 bpm", 1.5)]


def test_a_story_segment_that_states_a_bpm_is_drafted_where_it_begins(drafting):
    model, shown = drafting
    settings = GenerationSettings(seconds=3.0, seed=4, tempo_drafts=3)
    tokens = {}
    audio, _ = collect(model.story(STORY, settings, tokens_out=tokens), settings)
    (envelopes,) = shown  # the first segment states none: only the second is drafted, from the first's handover
    boundary = 38  # 1.5 s on the 25 Hz grid (37.5 rounds to even)
    assert envelopes.shape == (3, 75 - boundary)  # the tiny window (2 s) less the handover holds the whole segment
    s = tokens["S"][0, 0]
    assert torch.equal(s[boundary:].float(), torch.from_numpy(envelopes[2]))
    assert np.isfinite(audio).all() and len(audio) == 3 * 24_000
    given = {}  # stage 2 under the kept reading, handed the same S, makes the same coarse tokens: it read the reading kept
    schedule = [(0.0, model.conditioning("calm piano")), (1.52, TextSide().tokens(torch.full((1, 4), 2.0)))]
    model.generate("", settings, schedule=schedule, semantic=tokens["S"], tokens_out=given)
    assert torch.equal(tokens["A"], given["A"])


def test_a_drafted_opening_leaves_the_later_segments_where_they_begin(drafting):
    model, shown = drafting
    settings = GenerationSettings(seconds=3.0, seed=4, tempo_drafts=3)
    tokens = {}
    collect(model.story([("funk, 120 bpm", 1.0), ("disco, 118 bpm", 2.0)], settings, tokens_out=tokens), settings)
    opening, second = shown
    assert opening.shape == (3, 25)  # the opening's draft stops at its segment's end (1 s), not at the 5 s a draft may cover
    assert second.shape == (3, 40)  # the tiny window (2 s) less the handover
    s = tokens["S"][0, 0]
    assert torch.equal(s[:25].float(), torch.from_numpy(opening[2])) and torch.equal(s[25:65].float(), torch.from_numpy(second[2]))


def test_the_workers_draft_a_story_segment_as_the_caller_does(tiny_pipeline):
    model = MusicLM(TextSide(), tiny_pipeline.codec, *tiny_pipeline.stages.values(), semantic=TokensAsOnsets(), prior=Readings())
    settings = GenerationSettings(seconds=3.0, seed=2, tempo_drafts=3)
    inline = {}
    audio, _ = collect(model.story(STORY, settings, tokens_out=inline), settings)
    model.parallel = True
    try:
        parallel = {}
        again, _ = collect(model.story(STORY, settings, tokens_out=parallel), settings)
    finally:
        model.parallel = False
        for worker in model._upstream_workers or ():
            worker.close()
    assert torch.equal(inline["S"], parallel["S"]) and np.array_equal(audio, again)


def test_tempo_drafts_out_of_range_are_refused():
    with pytest.raises(ValueError, match="tempo drafts"):
        GenerationSettings(tempo_drafts=0).check()


def test_a_prepared_draft_makes_the_same_piece_without_drawing_it_again(drafting):
    """``prepare`` draws a text prompt's tempo draft ahead; the run then starts from it, sample for
    sample the piece an unprepared run makes, and shows no stage-1 drafting before its first chunk."""
    from engine import TextRequest

    model, shown = drafting
    request = TextRequest("funk with slap bass, 120 bpm", GenerationSettings(seconds=3.0, seed=4, tempo_drafts=3))
    unprepared, _ = collect(model.run(request), request.settings)
    assert len(shown) == 1
    assert model.prepare(request) and len(shown) == 2
    assert model.prepare(request) and len(shown) == 2  # already drawn: nothing drawn again
    prepared, _ = collect(model.run(request), request.settings)
    assert len(shown) == 2 and np.array_equal(prepared, unprepared)
    other = TextRequest("funk with slap bass, 120 bpm", GenerationSettings(seconds=3.0, seed=5, tempo_drafts=3))
    collect(model.run(other), other.settings)  # another take: its own draft
    assert len(shown) == 3
    assert not model.prepare(TextRequest("funk with slap bass", request.settings))  # no bpm: nothing to draw ahead


@pytest.mark.parametrize("taker", ["a newer prompt", "a prompt without a bpm", "a run of another piece"])
def test_a_draft_still_being_drawn_is_abandoned_when_something_else_takes_over(drafting, monkeypatch, taker):
    """A prompt typed key by key prepares each version of itself: a draft for the words before the
    last key must stop at once (its frame) rather than share the cores with the one that counts."""
    import threading

    from engine import TextRequest

    model, shown = drafting
    stage1 = model.stages["stage1"]
    original, held, go = stage1.stream, threading.Event(), threading.Event()

    def hold_the_first(*args, **kwargs):  # the first draft waits after its first frame until the test lets it go on
        frames = original(*args, **kwargs)
        yield next(frames)
        if not held.is_set():
            held.set()
            go.wait(30)
        yield from frames

    monkeypatch.setattr(stage1, "stream", hold_the_first)
    settings = GenerationSettings(seconds=3.0, seed=4, tempo_drafts=3)
    outcome = []
    first = threading.Thread(target=lambda: outcome.append(model.prepare(TextRequest("funk with slap bass, 120", settings))))
    first.start()
    assert held.wait(30)
    if taker == "a newer prompt":
        assert model.prepare(TextRequest("funk with slap bass, 120 bpm", settings))
    elif taker == "a prompt without a bpm":
        assert not model.prepare(TextRequest("funk with slap bass, 1", settings))
    else:
        collect(model.run(TextRequest("reggae, 80 bpm", settings)), settings)
    go.set()
    first.join(30)
    assert outcome == [False]  # abandoned: never picked, nothing kept
    assert len(shown) == (0 if taker == "a prompt without a bpm" else 1)


def test_a_draft_already_drawn_waits_for_its_click_through_a_piece_of_another_kind(drafting):
    """Only a draft still being drawn is abandoned: one that is ready stays for its click, even if
    another piece (a hum, a story) is made in between."""
    from engine import TextRequest

    model, shown = drafting
    settings = GenerationSettings(seconds=3.0, seed=4, tempo_drafts=3)
    request = TextRequest("funk with slap bass, 120 bpm", settings)
    assert model.prepare(request) and len(shown) == 1
    collect(model.run(TextRequest("reggae, 80 bpm", settings)), settings)
    assert len(shown) == 2
    collect(model.run(request), settings)
    assert len(shown) == 2  # its draft was kept: nothing drawn again
