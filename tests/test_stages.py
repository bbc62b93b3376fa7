"""End to end on the smoke corpus: tiny tokenizers → tokenize → the three stage LMs → text to
audio through the CLI's model loader. Every model is trained for two steps: this checks the
plumbing (shapes, caches, checkpoints, loaders), not the music."""
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import ContinueRequest, GenerationSettings, MusicLM, StyleRequest, TextRequest
from engine.checkpoints import MODEL_NAMES
from engine.generate.level import blend_loudness, measured_loudness as lufs
from engine.generate.tone import ToneStage, spectral_balance

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # every test here trains the whole chain on the smoke corpus first


def _engine(*args):
    proc = subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def tiny_runs(smoke_corpus, tmp_path_factory):
    corpus, _ = smoke_corpus
    runs = tmp_path_factory.mktemp("runs")
    for model, extra in (("codec", ()), ("mulan", ("--batch-size", 4)), ("semantic", ("--batch-size", 2))):
        _engine("train", model, "--corpus", corpus, "--run-dir", runs / model, "--steps", 2, "--quiet", *extra)
    caches = _engine("tokenize", "--corpus", corpus, "--quiet", *[a for m in ("codec", "mulan", "semantic") for a in (f"--{m}", runs / m)])
    _engine("train", "prior", "--corpus", corpus, "--run-dir", runs / "prior", "--quiet")
    for stage in ("stage1", "stage2", "stage3"):
        result = _engine("train", stage, "--corpus", corpus, "--run-dir", runs / stage, "--steps", 2, "--batch-size", 2, "--quiet")
        assert np.isfinite(result["held_out_loss"])
    return corpus, runs, caches


def test_token_cache_holds_m_s_and_a_for_every_clip(tiny_runs):
    corpus, _, caches = tiny_runs
    data = np.load(caches["train"])
    meta = json.loads(str(data["meta"]))
    assert data["M"].shape[1:] == (1, 12) and data["A"].shape[1] == 12
    assert data["S"].shape[0] == data["A"].shape[0] == len(meta["ids"]) == 9
    assert abs(data["A"].shape[2] - 2 * data["S"].shape[1]) <= 1  # 50 Hz vs 25 Hz


def test_melody_cache_tracks_every_clip_rendition(tiny_runs):
    corpus, _, caches = tiny_runs
    data = np.load(caches["melody-train"])
    assert data["melody"].shape == (9, 100)  # 9 train clips × 4 s at 25 Hz
    records = [json.loads(line) for line in (corpus / "train.jsonl").read_text().splitlines()]
    with_lead = [r["rendition"] is not None for r in records]
    assert (data["melody"][with_lead] < 12).mean() > 0.2  # renditions are mostly voiced
    assert (data["melody"][~np.array(with_lead)] == 13).all()  # no lead line: the melody is absent (pad)


def test_stage1_follows_a_hum_through_the_api_and_the_eval(tiny_runs, exported):
    from engine.melody import melody_tokens, synthetic_hum

    _, runs, _ = tiny_runs
    model = _tiny_model(runs)
    hum = melody_tokens(synthetic_hum([(0.1, 0.5, 60), (0.7, 0.5, 64)], 1.3))
    other = melody_tokens(synthetic_hum([(0.1, 0.5, 67), (0.7, 0.5, 62)], 1.3))
    settings = GenerationSettings(seconds=2.0, seed=0)
    heard = {}
    for name, melody in (("hum", hum), ("other", other), ("none", None)):
        tokens = {}
        audio, _ = model.generate("a calm piano ballad", settings, melody=melody, tokens_out=tokens)  # a hum is tiled over 2 s
        assert len(audio) == 48_000 and np.isfinite(audio).all()
        heard[name] = tokens["S"]
    # same seed, same text: only the tune differs, and stage 1's tokens follow it
    assert not torch.equal(heard["hum"], heard["none"]) and not torch.equal(heard["hum"], heard["other"])
    with pytest.raises(ValueError, match="melody tokens"):
        model.generate("a calm piano ballad", GenerationSettings(seconds=1.0), melody=np.array([40]))
    result = _engine("eval", "melody", "--corpus", tiny_runs[0], "--checkpoint", exported, "--seconds", 2, "--temperatures", 1, 0.7, 0.4)
    assert result["settings"] == {"temperatures": [1.0, 0.7, 0.4]} and result["tuning"] is False
    for kind in ("rendition", "synthetic"):
        assert set(result[kind]) >= {"chroma_cosine", "shuffled", "text_only", "reference_render", "reference_through_codec", "ratio_to_shuffled"}
        assert all(0 <= result[kind][k] <= 1 for k in ("chroma_cosine", "shuffled", "text_only", "reference_render", "reference_through_codec"))


def test_trained_checkpoints_generate_from_text(tiny_runs):
    _, runs, _ = tiny_runs
    model = _tiny_model(runs)
    audio, info = model.generate("a calm piano ballad", GenerationSettings(seconds=1.5, seed=0))
    assert len(audio) == 36_000 and np.isfinite(audio).all()
    assert info["first_chunk_s"] <= info["wall_s"]


@pytest.fixture(scope="module")
def exported(tiny_runs, tmp_path_factory):
    """The tiny runs exported the way assets/checkpoints/ holds them."""
    from engine.checkpoints import export_checkpoint

    folder = tmp_path_factory.mktemp("checkpoints")
    for name in MODEL_NAMES:
        export_checkpoint(tiny_runs[1] / name, folder / f"{name}.safetensors", half=name.startswith("stage"))
    return folder


def test_generation_eval_runs_through_the_cli(tiny_runs, exported):
    """The adherence metrics (MCC, tempo, contrast pairs, Fréchet) on exported tiny checkpoints,
    each caption drawn with two seeds: the pooled MCC is the mean of the two rounds'."""
    corpus = tiny_runs[0]
    result = _engine("eval", "generation", "--corpus", corpus, "--checkpoint", exported, "--clips", 2, "--seconds", 1, "--seeds", 2)  # the smoke corpus has one test clip
    assert result["captions"] == 1 and set(result["mcc"]) >= {"generated", "unconditional", "reference", "reference_through_codec"}
    assert -1 <= result["mcc"]["generated"] <= 1
    rounds = result["mcc"]["per_seed"]["generated"]
    assert len(rounds) == 2 and rounds[0] != rounds[1]  # different seeds, different music
    assert result["mcc"]["generated"] == pytest.approx(sum(rounds) / 2, abs=1e-4)
    assert result["contrast"]["of"] == 5 and 0 <= result["contrast"]["pairs_moved"] <= 5
    assert set(result["frechet"]) == {"mulan", "handcrafted"}  # None here: the smoke corpus has one test render


def test_the_free_form_eval_judges_each_pair_on_the_feature_it_names(tiny_runs, exported):
    result = _engine("eval", "generation", "--free-form", "--corpus", tiny_runs[0], "--checkpoint", exported, "--clips", 2, "--seconds", 1,
                     "--seeds", 1)
    assert result["prompts"] == 2 and result["prompts_with_bpm"] == 2 and len(result["tempo"]["draws"]) == 2  # "72 bpm"; "dnb, …, 174"
    pairs = result["contrast"]["pairs"]
    assert result["contrast"]["of"] == 5 and [list(p["mean_b_minus_a"]) for p in pairs] == [[p["feature"]] for p in pairs]
    assert {p["feature"] for p in pairs} == {"percussive_ratio", "onset_rate", "spectral_centroid", "rms"}
    # another MuLan as judge: the same music (same seeds, same tempo heard), graded by another ear
    judged = _engine("eval", "generation", "--free-form", "--corpus", tiny_runs[0], "--checkpoint", exported, "--clips", 2, "--seconds", 1,
                     "--seeds", 1, "--judge", ROOT / "assets" / "checkpoints" / "mulan.safetensors")
    assert result["judge"] == "own MuLan" and judged["judge"].endswith("mulan.safetensors")
    assert judged["tempo"]["draws"] == result["tempo"]["draws"] and judged["mcc"]["generated"] != result["mcc"]["generated"]


def test_the_free_form_prompts_are_unlike_every_caption_and_state_tempi_in_many_ways():
    from engine.data.captions import TEMPLATES
    from engine.evaluate.generation import FREE_FORM_PROMPTS
    from engine.prompts import stated_bpm

    held_out = json.loads(FREE_FORM_PROMPTS.read_text())
    prompts = held_out["prompts"]
    assert len(prompts) >= 60 and len(set(prompts)) == len(prompts)
    stated = [p for p in prompts if stated_bpm(p)]
    assert len(stated) >= 40 and all(60 <= stated_bpm(p) <= 200 for p in stated)
    assert sum("bpm" not in p.lower() for p in stated) >= 8  # "tempo 150", "beats per minute", a bare number …
    templates = [t for group in TEMPLATES.values() for pair in group for t in pair]
    assert not any(t.split("{")[0].strip() and p.startswith(t.split("{")[0].strip()) for p in prompts for t in templates)


def test_the_tuning_captions_never_overlap_the_evaluations():
    from engine.evaluate.generation import EVALUATION_CAPTIONS, _generation_set
    from engine.prompts import stated_bpm

    records = [{"id": f"c{i}", "caption": f"a piece at {60 + i} bpm" if i % 3 else "a piece"} for i in range(150)]
    evaluation, tuning = _generation_set(records, EVALUATION_CAPTIONS), _generation_set(records, 60, tuning=True)
    assert len(evaluation) == EVALUATION_CAPTIONS and len(tuning) == 60
    assert not {r["id"] for r in evaluation} & {r["id"] for r in tuning}
    assert sum(bool(stated_bpm(r["caption"])) for r in tuning) == 40  # two thirds state a bpm, as in the evaluation's


def test_a_checkpoint_folder_loads_like_its_file(exported):
    """eval semantic --checkpoint DIR takes a folder of exports as the generation evals do."""
    from engine.nn.semantic import load_semantic

    from_folder, from_file = load_semantic(exported), load_semantic(exported / "semantic.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(from_folder.state_dict().values(), from_file.state_dict().values()))


def test_reranking_keeps_the_candidate_mulan_scores_best(tiny_runs):
    _, runs, _ = tiny_runs
    model = _tiny_model(runs)
    audio, info = model.render(TextRequest("a calm piano ballad", GenerationSettings(seconds=1.0, seed=4)), candidates=3)
    scores = {c["seed"]: c["mulan_score"] for c in info["candidates"]}
    assert sorted(scores) == [4, 5, 6] and info["seed"] == max(scores, key=scores.get)
    alone, _ = model.generate("a calm piano ballad", GenerationSettings(seconds=1.0, seed=info["seed"]))
    assert np.array_equal(audio, alone)


def _tiny_model(runs):
    return MusicLM.load(paths={name: runs / name for name in MODEL_NAMES})


def test_a_text_only_mulan_fine_tune_keeps_every_m_token_and_moves_the_words(tiny_runs, tmp_path):
    from engine.nn.mulan import load_mulan, rvq_fingerprint
    corpus, runs, _ = tiny_runs
    _engine("train", "mulan", "--corpus", corpus, "--init", runs / "mulan", "--text-only", "--run-dir", tmp_path / "mulan",
            "--steps", 2, "--batch-size", 4, "--lr", 0.01, "--warmup", 1, "--quiet")
    before, after = load_mulan(runs / "mulan"), load_mulan(tmp_path / "mulan")
    assert rvq_fingerprint(after.rvq) == rvq_fingerprint(before.rvq)  # the prior built on the old tokens still loads
    assert all(torch.equal(v, after.audio_tower.state_dict()[k]) for k, v in before.audio_tower.state_dict().items())
    assert not all(torch.equal(v, after.text_tower.state_dict()[k]) for k, v in before.text_tower.state_dict().items())
    refused = subprocess.run([sys.executable, "-m", "engine", "train", "mulan", "--corpus", str(corpus), "--text-only"],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--text-only fine-tunes a trained MuLan's text side" in refused.stderr


def test_the_prior_holds_every_training_window_as_rendered_and_levelled(tiny_runs):
    from engine.data.render import TARGET_LUFS
    from engine.nn.mulan import load_prior
    corpus, runs, caches = tiny_runs
    prior = load_prior(runs / "prior")
    windows = np.load(caches["train"])["M"].shape[:2]
    assert len(prior.tokens) == 2 * windows[0] * windows[1] and int(prior.levelled.sum()) == len(prior.tokens) // 2
    records = {json.loads(line)["id"]: json.loads(line) for line in (corpus / "train.jsonl").read_text().splitlines()}
    assert torch.allclose(prior.loudness[~prior.levelled].unique(), torch.tensor(sorted({r["loudness_lufs"] for r in records.values()})))
    assert (prior.loudness[prior.levelled] == TARGET_LUFS).all()
    assert torch.equal(prior.tokens[~prior.levelled].long(), torch.from_numpy(np.load(caches["train"])["M"]).reshape(-1, 12).long())


def test_a_prior_built_for_another_mulan_is_refused_clearly(tiny_runs):
    _, runs, _ = tiny_runs
    with pytest.raises(ValueError, match="built from another MuLan's tokens"):
        MusicLM.load(paths={name: runs / name for name in MODEL_NAMES if name != "prior"})  # the shipped prior, the tiny MuLan


def test_story_is_one_piece_of_exact_length(tiny_runs):
    from engine.generate.musiclm import collect

    _, runs, _ = tiny_runs
    model = _tiny_model(runs)
    segments = [("a calm piano ballad", 0.5), ("metal with distorted guitars", 0.73), ("a flute lullaby", 0.5)]
    tokens = {}
    audio, _ = collect(model.story(segments, GenerationSettings(seed=1), tokens_out=tokens), GenerationSettings(seconds=1.73))
    assert len(audio) == round(1.72 * 24_000)  # 0.73 s snaps to the 25 Hz grid: 1.72 s in all
    assert tokens["A"].shape[2] == 86 and tokens["S"].shape[2] == 43


def test_continuation_returns_the_clip_then_new_music(tiny_runs):
    _, runs, _ = tiny_runs
    model = _tiny_model(runs)
    clip = (0.3 * np.sin(2 * np.pi * 220 * np.arange(30_000) / 24_000)).astype(np.float32)
    for prompt in (None, "a flute lullaby"):
        chunks = list(model.continuation(clip, prompt, GenerationSettings(seconds=1.0, seed=0)))
        first = chunks[0].audio
        assert len(first) == 29_760 and np.array_equal(first, clip[:29_760])  # cut to whole 40 ms token frames
        assert sum(len(c.audio) for c in chunks) == 29_760 + 24_000
    with pytest.raises(ValueError, match="give at least 1 s of music to continue"):  # the request checks, before any model runs
        model.run(ContinueRequest(clip[:5000], None, GenerationSettings(seconds=1.0)))



def test_a_continuation_that_asks_for_loud_glides_there_from_the_clip_level(tiny_runs):
    _, runs, _ = tiny_runs
    model = _tiny_model(runs)
    clip = (0.3 * np.sin(2 * np.pi * 220 * np.arange(30_000) / 24_000)).astype(np.float32)
    settings = GenerationSettings(seconds=2.0, seed=1)
    steered, raw = (np.concatenate([c.audio for c in model.continuation(clip, "a thunderous flute", replace(settings, level_stage=on))])
                    for on in (True, False))
    new = slice(29_760, None)  # after the clip, cut to whole token frames
    assert np.allclose(steered[new][:48], raw[new][:48], rtol=0.02, atol=1e-6)  # no step at the seam: the gain starts at 0 dB
    assert np.sqrt(np.mean(steered[new][24_000:] ** 2)) > 2 * np.sqrt(np.mean(raw[new][24_000:] ** 2))

def test_style_takes_m_from_the_clips_blended_with_the_prompt(tiny_runs):
    _, runs, _ = tiny_runs
    model = _tiny_model(runs)
    t = np.arange(36_000) / 24_000
    low, high = ((0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32) for f in (110, 1760))
    alone = model.blend_conditioning(StyleRequest((low,)).blend())
    assert torch.equal(alone, model._clip_conditioning(low, None))  # one clip: its own style, as a continuation reads it
    text_only = StyleRequest((low,), "a flute lullaby", weights=(1.0, 0.0))
    assert torch.equal(model.blend_conditioning(text_only.blend()), model.conditioning("a flute lullaby"))  # weight 0 leaves a source out
    assert torch.equal(model.blend_conditioning(StyleRequest((low, high), weights=(0.0, 2.0)).blend()), model._clip_conditioning(high, None))
    audio, info = model.render(StyleRequest((low, high), "a flute lullaby", (1, 2, 0.5), GenerationSettings(seconds=1.0, seed=3)))
    assert len(audio) == 24_000 and np.isfinite(audio).all() and info["seconds"] == 1.0
    again, _ = model.render(StyleRequest((low, high), "a flute lullaby", (1, 2, 0.5), GenerationSettings(seconds=1.0, seed=3)))
    assert np.array_equal(audio, again)
    # clips alone are followed at style_guidance on stage 1 and style_coarse_guidance on stage 2 (words beside them: double guidance, tests/test_lm.py)
    clips_alone = StyleRequest((low,), settings=GenerationSettings(seconds=1.0, seed=3, style_guidance=8.0, style_coarse_guidance=4.0))
    as_text_guidance = model.stream("", GenerationSettings(seconds=1.0, seed=3, guidance=8.0, coarse_guidance=4.0),
                                    prefix=model.blend_conditioning(clips_alone.blend()), dynamics=[(0.0, blend_loudness(clips_alone.blend()))],
                                    tone=ToneStage.of_blend(clips_alone.blend()))
    assert np.array_equal(model.render(clips_alone)[0], np.concatenate([c.audio for c in as_text_guidance]))
    text_side = replace(clips_alone, settings=replace(clips_alone.settings, coarse_guidance=9.0))  # the text's stage-2 scale is not a style's
    assert np.array_equal(model.render(text_side)[0], model.render(clips_alone)[0])


def test_a_style_is_as_loud_as_its_reference_unless_the_words_say_otherwise(tiny_runs):
    """The level stage takes a style's loudness from its clips: the same clip, hushed or loud,
    gives a hushed or a loud piece; words that state a loudness are mixed in by their weight."""
    _, runs, _ = tiny_runs
    model = _tiny_model(runs)
    t = np.arange(72_000) / 24_000
    clip = (np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))).astype(np.float32)
    settings = GenerationSettings(seconds=4.0, seed=1)
    made = {gain: model.render(StyleRequest((gain * clip,), settings=settings))[0] for gain in (0.08, 0.4)}
    heard = {gain: lufs(audio[2 * 24_000:]) for gain, audio in made.items()}
    assert heard[0.4] - heard[0.08] > 8  # the clips differ by 14 LU
    assert abs(heard[0.08] - lufs(0.08 * clip)) < 3
    worded = model.render(StyleRequest((0.08 * clip,), "thunderous taiko drums", (3.0, 1.0), settings))[0]
    assert lufs(worded[2 * 24_000:]) > heard[0.08] + 5
    unlevelled = model.render(StyleRequest((0.4 * clip,), settings=replace(settings, level_stage=False)))[0]
    assert heard[0.4] - lufs(unlevelled[2 * 24_000:]) > 3  # without the stage: the models' own level, as before


def test_a_style_takes_its_clips_tone_unless_told_to_keep_the_models_own(tiny_runs):
    _, runs, _ = tiny_runs
    model = _tiny_model(runs)
    t = np.arange(72_000) / 24_000
    bright = sum(0.1 * np.sin(2 * np.pi * f * t) for f in (2_000, 3_100, 4_700, 6_300)).astype(np.float32)
    request = StyleRequest((bright,), settings=GenerationSettings(seconds=3.0, seed=1))
    matched = model.render(request)[0]
    own = model.render(replace(request, settings=replace(request.settings, tone_match=False)))[0]
    gap = {name: float(np.mean(np.abs(10 * np.log10(spectral_balance(audio[24_000:]) / spectral_balance(bright)))))
           for name, audio in (("matched", matched), ("own", own))}
    assert gap["matched"] < gap["own"] - 1.0, gap  # dB per band nearer the clip's balance


@pytest.mark.parametrize("clips, prompt, weights, message", [
    ((), None, None, "at least one reference clip"),
    ((np.zeros(36_000, np.float32),), None, None, "silent"),
    ((np.full(6_000, 0.1, np.float32),), None, None, "give at least 1 s of music to take a style from"),
    ((np.full(36_000, 0.1, np.float32),), "funk", (1.0,), "one weight per source"),
    ((np.full(36_000, 0.1, np.float32),), None, (-1.0,), "a blend weight must be a number ≥ 0"),
    ((np.full(36_000, 0.1, np.float32),), "funk", (0.0, 0.0), "every blend weight is 0"),
    ((np.full(36_000, 0.1, np.float32),) * 9, None, None, "at most 8"),
])
def test_bad_style_requests_get_one_clear_message(clips, prompt, weights, message):
    with pytest.raises(ValueError, match=message):
        StyleRequest(clips, prompt, weights)


def test_longest_shared_run_finds_a_copied_stretch_at_any_offsets():
    from engine.evaluate.style import longest_shared_run

    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 1000, 200), rng.integers(0, 1000, 150)
    b[40:77] = a[120:157]  # a 37-token copy, placed elsewhere
    assert longest_shared_run(a, b) == 37 == longest_shared_run(b, a)
    assert longest_shared_run(np.arange(5), np.arange(5, 10)) == 0


def test_style_identification_counts_each_draw_against_its_own_reference():
    from engine.evaluate.style import _identified

    references = np.eye(3)
    outputs = np.array([[1.0, 0.1, 0.0], [0.0, 0.2, 1.0], [0.9, 0.0, 0.1], [0.0, 1.0, 0.0]])  # draws of clips 0, 1, 0, 1
    assert _identified(outputs, references, np.array([0, 1, 0, 1])).tolist() == [True, False, True, True]


def test_style_eval_runs_through_the_cli_on_recordings(tiny_runs, exported, tmp_path):
    import soundfile as sf

    t = np.arange(48_000) / 24_000
    for f in (110, 440, 1760):
        sf.write(tmp_path / f"tone{f}.wav", (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32), 24_000)
    result = _engine("eval", "style", "--corpus", tiny_runs[0], "--checkpoint", exported, "--clips", 3, "--seconds", 1, "--seeds", 2, "--audio", tmp_path)
    assert result["clips"] == 3 and result["seeds"] == 2 and result["source"] == "recordings"
    assert 0 <= result["closest_to_own_reference"]["mulan"] <= 1 and 0 <= result["exact_match_rate"] <= 1


def test_dynamics_eval_judges_pairs_and_stories_by_meters_nobody_here_trained(tiny_runs, exported):
    from engine.evaluate.dynamics import integrated_loudness
    from engine.evaluate.metrics import rms

    result = _engine("eval", "dynamics", "--corpus", tiny_runs[0], "--checkpoint", exported, "--clips", 1, "--seconds", 2, "--seeds", 2)
    assert result["pairs"] == 1 and len(result["draws"]) == 2 and result["stories"] == 1
    assert 0 <= result["loud_louder_fraction"] <= 1 and result["story_draws"][0]["middle_over_neighbours"] > 0
    t = np.arange(48_000) / 24_000
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    assert integrated_loudness(0.5 * tone) - integrated_loudness(0.05 * tone) == pytest.approx(20.0, abs=0.1)
    assert rms(0.5 * tone) == pytest.approx(0.5 / np.sqrt(2), rel=1e-3)


def test_inpainting_regenerates_only_the_range_and_fades_back(tiny_runs):
    from engine.generate.musiclm import INPAINT_FADE

    _, runs, _ = tiny_runs
    model = _tiny_model(runs)
    t = np.arange(72_000) / 24_000
    clip = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    out = np.concatenate([c.audio for c in model.inpaint(clip, 1.0, 1.5, "a flute lullaby", GenerationSettings(seed=0))])
    assert len(out) == len(clip)
    changed = np.flatnonzero(np.abs(out - clip) > 1e-6)
    assert changed[0] >= 24_000 and changed[-1] < int((1.52 + INPAINT_FADE) * 24_000)  # 1.5 s snaps to the 40 ms grid: 1.52
    assert np.array_equal(out[:24_000], clip[:24_000]) and np.array_equal(out[-20_000:], clip[-20_000:])
    for start, end in ((1.5, 1.0), (-1, 1), (0, 4.0), (float("nan"), 1)):
        with pytest.raises(ValueError, match="range to inpaint"):
            next(model.inpaint(clip, start, end))


def test_story_and_continuation_evals_run_through_the_cli(tiny_runs, exported):
    corpus = tiny_runs[0]
    story = _engine("eval", "story", "--corpus", corpus, "--checkpoint", exported, "--clips", 1, "--seconds", 1, "--seeds", 1)
    assert story["segments"] == 4 and 0 <= story["margin_positive_fraction"] <= 1 and story["seam_jump_hard_cut_median"] > 0
    assert story["tempo"]["segments"] == 3 and [d["stated"] for d in story["tempo"]["draws"]] == [75, 105, 140]
    cont = _engine("eval", "continuation", "--corpus", corpus, "--checkpoint", exported, "--seconds", 1)
    assert cont["clips"] == 1 and 0 <= cont["closer_to_own_clip_fraction"] <= 1 and cont["seam_jump_median"] > 0
    greedy = _engine("eval", "continuation", "--corpus", corpus, "--checkpoint", exported, "--seconds", 1, "--temperatures", 0, 0, 0)
    measured = ("similarity_own_mean", "similarity_unrelated_mean", "seam_jump_median")
    assert [greedy[k] for k in measured] != [cont[k] for k in measured], (greedy, cont)  # the sampling options reach the generator


def test_stage_eval_reports_what_m_is_worth(tiny_runs, exported):
    result = _engine("eval", "stages", "--corpus", tiny_runs[0], "--checkpoint", exported, "--clips", 1)
    hum_aware = {"own", "null", "shuffled", "melody_none", "melody_shuffled"}
    assert set(result["stage1"]) == set(result["stage2"]) == hum_aware and set(result["stage3"]) == {"own"}
    assert all(0 < v < 20 for stage in ("stage1", "stage2", "stage3") for v in result[stage].values())


def test_memorization_eval_runs_and_calibrates_on_permuted_pairs(tiny_runs, exported):
    result = _engine("eval", "memorization", "--corpus", tiny_runs[0], "--checkpoint", exported, "--clips", 4)
    assert result["clips"] == 4 and result["permuted_pairs"] == 12  # every ordered pair of different clips
    assert 0 <= result["exact_match_rate"] <= result["approximate_match_rate"] <= 1


def test_sinkhorn_distance_is_zero_on_itself_and_grows_with_the_cost():
    from engine.evaluate.memorization import sinkhorn_distance

    cost = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert sinkhorn_distance(np.array([0.5, 0.5]), np.array([0.5, 0.5]), cost) < 0.01
    assert sinkhorn_distance(np.array([1.0, 0.0]), np.array([0.0, 1.0]), cost) > 0.99
