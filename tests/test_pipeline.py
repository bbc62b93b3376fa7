from dataclasses import replace

import numpy as np
import pytest
import torch

from engine import GenerationSettings, MusicLM, resolve_device
from engine.nn.lm import windowed
from engine.nn.mulan import PriorConfig
from engine.prompts import DYNAMICS_RANGES, TEMPO_RANGES
from tests.tiny import tiny_stage

M = torch.arange(12)[None] * 7


def test_random_weight_pipeline_streams_valid_audio_of_the_exact_length(tiny_pipeline):
    settings = GenerationSettings(seconds=3.3, seed=1, chunk_seconds=0.4)
    chunks = list(tiny_pipeline.stream("", settings, prefix=M))
    assert len(chunks) >= 8
    audio = np.concatenate([c.audio for c in chunks])
    assert audio.dtype == np.float32 and len(audio) == int(3.3 * 24_000)
    assert np.isfinite(audio).all()
    assert chunks[-1].seconds_done == pytest.approx(3.3, abs=1e-3)
    assert set(chunks[-1].stages) >= {"stage1", "stage2", "stage3", "codec"}


def test_same_seed_same_audio_and_another_seed_differs(tiny_pipeline):
    a, info = tiny_pipeline.generate("", GenerationSettings(seconds=1.0, seed=5), prefix=M)
    b, _ = tiny_pipeline.generate("", GenerationSettings(seconds=1.0, seed=5), prefix=M)
    c, _ = tiny_pipeline.generate("", GenerationSettings(seconds=1.0, seed=6), prefix=M)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert {"seconds", "sample_rate", "wall_s", "rtf", "first_chunk_s", "stages", "seed"} <= set(info)


def test_generation_makes_every_tensor_on_the_models_device(tiny_pipeline):
    """With meta as the default device, any tensor the loop creates without naming the model's
    device is a meta tensor and the run fails: the check that the same code runs on a GPU."""
    settings = GenerationSettings(seconds=2.0, seed=3)
    melody = np.arange(30) % 13
    expected, _ = tiny_pipeline.generate("", settings, prefix=M, melody=melody)
    with torch.device("meta"):
        audio, _ = tiny_pipeline.generate("", settings, prefix=M, melody=melody)
    assert np.array_equal(audio, expected)


def test_devices_are_checked_before_anything_moves(tiny_pipeline, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    for name, message in [("cuda", "no CUDA GPU is visible"), ("tpu", "unknown device")]:
        with pytest.raises(ValueError, match=message):
            tiny_pipeline.to(name)
    assert tiny_pipeline.to("cpu").device == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan"), 301.0])
def test_bad_lengths_are_refused(tiny_pipeline, seconds):
    with pytest.raises(ValueError, match="seconds"):
        next(tiny_pipeline.stream("", GenerationSettings(seconds=seconds), prefix=M))


def test_coarse_guidance_steers_stage_2_only_and_bad_scales_are_refused(tiny_pipeline):
    """Stage 2's guidance changes the coarse tokens for the same seed while stage 1's S stays
    the same draw; an unconditional piece ignores both scales (nothing to contrast)."""
    runs = {}
    for scale in (1.0, 4.0):
        tokens = {}
        tiny_pipeline.generate("", GenerationSettings(seconds=1.0, seed=3, coarse_guidance=scale), prefix=M, tokens_out=tokens)
        runs[scale] = tokens
    assert torch.equal(runs[1.0]["S"], runs[4.0]["S"])
    assert not torch.equal(runs[1.0]["A"][:, :4], runs[4.0]["A"][:, :4])
    blank = [tiny_pipeline.generate("", GenerationSettings(seconds=1.0, seed=3, coarse_guidance=g), unconditional=True)[0] for g in (1.0, 4.0)]
    assert np.array_equal(*blank)
    for bad in (-1.0, 21.0, float("nan")):
        with pytest.raises(ValueError, match="coarse guidance must be in"):
            next(tiny_pipeline.stream("", GenerationSettings(coarse_guidance=bad), prefix=M))


def test_running_the_upstream_stages_on_processes_changes_nothing_but_speed(tiny_pipeline):
    settings = GenerationSettings(seconds=2.0, seed=3)
    inline, _ = tiny_pipeline.generate("", settings, prefix=M)
    story_inline = np.concatenate([c.audio for c in tiny_pipeline.stream("", settings, schedule=[(0.0, M), (1.0, (M + 9) % 1024)])])
    before = torch.get_num_threads()
    callers = before + 1  # differs from the caller's one operator thread while it decodes, so a leak would show
    torch.set_num_threads(callers)
    tiny_pipeline.parallel = True
    try:
        parallel, _ = tiny_pipeline.generate("", settings, prefix=M)
        story = np.concatenate([c.audio for c in tiny_pipeline.stream("", settings, schedule=[(0.0, M), (1.0, (M + 9) % 1024)])])
        stream = tiny_pipeline.stream("", replace(settings, seconds=20.0, chunk_seconds=0.5), prefix=M)
        next(stream)
        assert torch.get_num_threads() == callers  # the caller gets its own operator threads back at every chunk
        next(stream)
        stream.close()  # a listener pressing Stop: the workers put the piece down and are free for the next
        assert torch.get_num_threads() == callers
        workers = tiny_pipeline.upstream_workers()
        assert not any(w.busy for w in workers) and all(w.alive for w in workers)
        again, _ = tiny_pipeline.generate("", settings, prefix=M)
    finally:
        tiny_pipeline.parallel = False
        torch.set_num_threads(before)
    assert np.array_equal(inline, parallel) and np.array_equal(inline, again)
    assert np.array_equal(story_inline, story)


def test_a_stage_failing_on_its_process_reaches_the_caller_as_one_message(tiny_pipeline):
    import copy

    from engine.nn.lm import GenerationError

    broken = copy.deepcopy(tiny_pipeline.stages["stage1"])
    with torch.no_grad():
        broken.bos.fill_(float("nan"))
    good = tiny_pipeline.stages["stage1"]
    tiny_pipeline.parallel = True
    tiny_pipeline.stages["stage1"] = broken  # a changed model is sent to its worker with the next piece
    try:
        with pytest.raises(GenerationError, match="stage1 produced invalid"):
            tiny_pipeline.generate("", GenerationSettings(seconds=1.0), prefix=M)
        tiny_pipeline.stages["stage1"] = good
        audio, _ = tiny_pipeline.generate("", GenerationSettings(seconds=1.0), prefix=M)  # the workers still serve
    finally:
        tiny_pipeline.stages["stage1"] = good
        tiny_pipeline.parallel = False
    assert np.isfinite(audio).all()


def test_a_worker_process_that_dies_is_one_message_and_is_restarted(tiny_pipeline):
    from engine.nn.lm import GenerationError

    tiny_pipeline.parallel = True
    try:
        stream = tiny_pipeline.stream("", GenerationSettings(seconds=300.0, chunk_seconds=0.5), prefix=M)
        next(stream)
        killed = tiny_pipeline.upstream_workers()[1]
        killed.process.kill()  # stage 2, which is never far ahead of the caller
        with pytest.raises(GenerationError, match="stopped unexpectedly"):
            for _ in stream:
                pass
        audio, _ = tiny_pipeline.generate("", GenerationSettings(seconds=1.0), prefix=M)  # a fresh worker serves
    finally:
        tiny_pipeline.parallel = False
    assert np.isfinite(audio).all()
    assert tiny_pipeline._upstream_workers[1] is not killed and tiny_pipeline._upstream_workers[1].alive  # restarted by that piece


def test_an_idle_worker_asked_to_leave_takes_the_model_on_its_way_first(tiny_pipeline, capfd):
    """A server that stops right after it started its workers: each child still fetches the model's
    tensors from this process, and one killed in that exchange left a traceback in the server's log."""
    from engine.generate.upstream import StageWorker

    worker = StageWorker("stage1")
    worker.load(tiny_pipeline.stages["stage1"])
    worker.close()  # at once: the child is still starting, the model still on its way
    assert worker.process.exitcode == 0  # it left by itself, not killed
    assert "Traceback" not in capfd.readouterr().err


def test_given_semantic_tokens_replace_stage_1(tiny_pipeline, monkeypatch):
    """The evaluation's check of stages 2–3 on a render's own S: the piece carries exactly the
    given S, stage 1 never runs, and a wrongly shaped S is refused."""
    settings = GenerationSettings(seconds=1.0, seed=4)
    given = torch.arange(30).reshape(1, 1, 30) * 11 % 1024  # a second and a bit at 25 Hz
    tokens = {}
    calls = []
    stage1 = tiny_pipeline.stages["stage1"]
    original = stage1.stream
    monkeypatch.setattr(stage1, "stream", lambda *a, **k: calls.append(1) or original(*a, **k))
    audio, _ = tiny_pipeline.generate("", settings, prefix=M, semantic=given, tokens_out=tokens)
    assert not calls
    assert torch.equal(tokens["S"], given[..., :25]) and len(audio) == 24_000
    drawn, _ = tiny_pipeline.generate("", settings, prefix=M)
    assert not np.array_equal(audio, drawn)
    with pytest.raises(ValueError, match="semantic tokens must have shape"):
        tiny_pipeline.generate("", settings, prefix=M, semantic=given[..., :10])


def test_a_conditioning_schedule_changes_m_without_disturbing_what_came_before(tiny_pipeline):
    """Story mode's mechanism: up to the first change the piece equals the plain one; the total
    length is exact."""
    settings = GenerationSettings(seconds=2.0, seed=2)
    plain_tokens, story_tokens = {}, {}
    plain, _ = tiny_pipeline.generate("", settings, prefix=M, tokens_out=plain_tokens)
    other = (M + 5) % 1024
    story, _ = tiny_pipeline.generate("", settings, schedule=[(0.0, M), (1.2, other), (1.6, M)], tokens_out=story_tokens)
    assert len(story) == len(plain) == 48_000
    # well before the first change (1.2 s; the later stages read ahead, and the finest levels of a
    # frame are drawn a few positions late) every token is the same; the audio too, up to the float
    # rounding of the codec decoding a block that also holds later, changed frames
    assert torch.equal(story_tokens["S"][..., :25], plain_tokens["S"][..., :25])
    assert torch.equal(story_tokens["A"][..., :40], plain_tokens["A"][..., :40])
    assert np.allclose(story[:19_200], plain[:19_200], atol=1e-5)
    assert not np.array_equal(story, plain)


def test_a_new_story_segment_starts_from_only_the_last_second_of_the_old_one(monkeypatch):
    stage = tiny_stage("stage1", 4.0)  # 100 positions: windows keep 50 frames of context
    contexts = []
    stream = stage.stream

    def spy(length, prefix, aligned, sampling, generator, negative, prompt, anchor=None):
        contexts.append((0 if prompt is None else prompt.shape[2], int(prefix[0, 0])))
        return stream(length, prefix, aligned, sampling, generator, negative, prompt, anchor)

    monkeypatch.setattr(stage, "stream", spy)
    other = (M + 5) % 1024
    frames = list(windowed(stage, 200, [(0, M), (80, other)], {}, stage.cfg.layout.sampling, torch.Generator().manual_seed(0),
                           handover=25))
    assert len(frames) == 200
    assert contexts == [(0, 0), (25, 5), (50, 5)]  # a window up to the change, the new M from 1 s of context, then as usual


@pytest.mark.parametrize("segments, message", [
    ([], "no segments"),
    ([("calm piano", 0)], "segment 1 lasts 0"),
    ([("calm piano", float("nan"))], "segment 1 lasts nan"),
    ([("calm piano", -3)], "segment 1 lasts -3"),
    ([("   ", 4)], "segment 1: the prompt is empty"),
    ([("calm piano", "soon")], "segment 1 must be a prompt and a number"),
    ([("calm piano", 200), ("metal", 200)], "the story lasts 400"),
    ([("calm piano", 1)] * 51, "limit is 50"),
])
def test_bad_stories_get_one_clear_message(segments, message):
    from engine import check_story

    with pytest.raises(ValueError, match=message):
        check_story(segments)


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ('["calm", 3]', "segments"),
    ('{"segments": ["calm"]}', "each segment is"),
    ('{"segments": []}', "no segments"),
])
def test_malformed_story_json_is_refused(text, message):
    from engine import parse_story

    with pytest.raises(ValueError, match=message):
        parse_story(text)
    assert parse_story('{"segments": [{"prompt": " calm  piano ", "seconds": 4}]}') == [("calm piano", 4.0)]


@pytest.mark.parametrize("raw, clean", [
    ("  calm \t piano\n trio ", "calm piano trio"),
    ("\x00calm\u200b piano\u202e", "calm piano"),  # NUL, zero-width space, bidi override
    ("ｃａｌｍ ｐｉａｎｏ", "calm piano"),  # full-width letters
    ("ﬁddle reel", "fiddle reel"),  # ligature
    ("🎻 calm violin", "🎻 calm violin"),
    ("平静的钢琴", "平静的钢琴"),
])
def test_prompts_with_odd_unicode_are_made_plain(raw, clean):
    from engine import clean_prompt

    assert clean_prompt(raw) == clean


@pytest.mark.parametrize("raw, message", [
    ("", "empty"), ("   \n\t", "empty"), ("\u200b\u200b", "empty"), ("\ud800", "empty"), ("\x00\x01", "empty"),
    ("x" * 501, "the limit is 500"), (None, "empty"),
])
def test_prompts_that_say_nothing_or_too_much_are_refused(raw, message):
    from engine import clean_prompt

    with pytest.raises(ValueError, match=message):
        clean_prompt(raw)


def test_conditioning_hands_the_prompts_stated_tempo_and_loudness_to_the_prior(tiny_pipeline):
    class TextSide:  # MuLan as far as conditioning uses it
        rvq = None

        def embed_text(self, prompts):
            return torch.ones(len(prompts), 4)

        def tokens(self, embedding):
            return torch.zeros(len(embedding), 12, dtype=torch.long)

    asked = []

    class RecordingPrior:
        cfg = PriorConfig()

        def __call__(self, embedding, rvq, tempo=None, loudness=None):
            asked.append((tempo, loudness))
            return embedding

    model = MusicLM(TextSide(), tiny_pipeline.codec, *tiny_pipeline.stages.values(), prior=RecordingPrior())
    for prompt in ("funk with slap bass, 120 bpm", "fast techno, very loud", "hushed funk with slap bass"):
        assert model.conditioning(prompt).shape == (1, 12)
    assert asked[0][0] == pytest.approx((120 * (1 - PriorConfig().tempo_tolerance), 120 * (1 + PriorConfig().tempo_tolerance)))
    assert asked[1:] == [(TEMPO_RANGES["fast"], DYNAMICS_RANGES["very loud"]), (None, DYNAMICS_RANGES["soft"])]
    assert asked[0][1] is None


def test_a_script_without_a_main_guard_can_use_the_upstream_processes(tmp_path):
    """Spawned workers do not re-run the caller's script (which would load and spawn again)."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    script = tmp_path / "make.py"
    script.write_text("import numpy as np\nimport torch\nfrom tests.tiny import tiny_pipeline\nfrom engine import GenerationSettings\n"
                      "print('loaded', flush=True)\nmodel = tiny_pipeline()\nmodel.parallel = True\n"
                      "audio, _ = model.generate('', GenerationSettings(seconds=1.0), prefix=torch.zeros(1, 12, dtype=torch.long))\n"
                      "print('made', len(audio), np.isfinite(audio).all())\n")
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["loaded", "made", "24000", "True"]  # the script ran once: no worker printed "loaded"


def test_without_the_fine_stage_the_codec_decodes_the_coarse_levels_alone(tiny_pipeline):
    settings = GenerationSettings(seconds=1.0, seed=4)
    full_tokens, coarse_tokens = {}, {}
    full, _ = tiny_pipeline.generate("", replace(settings, fine_stage=True), prefix=M, tokens_out=full_tokens)
    coarse, info = tiny_pipeline.generate("", settings, prefix=M, tokens_out=coarse_tokens)  # the default
    assert torch.equal(full_tokens["A"][:, :4], coarse_tokens["A"][:, :4])  # stages 1 and 2 draw the same
    assert not coarse_tokens["A"][:, 4:].any() and info["stages"]["stage3"] == 0.0
    expected = tiny_pipeline.codec.decode_latents(tiny_pipeline.codec.quantizer.decode(coarse_tokens["A"][:, :4]), len(coarse))[0]
    assert len(coarse) == len(full) and np.allclose(coarse, expected.detach().numpy(), atol=1e-4)
