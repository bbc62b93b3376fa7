"""``eval all``: the report's bookkeeping (targets, provenance, history) and its plots, on
made-up figures shaped like the real evaluations' output."""
import json

import pytest

from engine.evaluate import report


def _results() -> dict:
    probe = {"semantic_tokens": 0.3, "semantic_features": 0.8, "baseline_tokens": 0.7, "handcrafted_features": 0.8, "majority_class": 0.1}
    return {
        "codec": {"codec": {"1": {"log_mel_l1": 0.9}, "12": {"log_mel_l1": 0.4}}, "opus": {"6kbps": {"log_mel_l1": 0.5}}},
        "mulan": {"text_to_audio": {"recall@1": 0.2, "recall@10": 0.75, "chance@10": 0.05},
                  "zero_shot_genre": {"accuracy": 0.95, "chance": 0.05}, "zero_shot_mood": {"accuracy": 0.3, "chance": 0.1},
                  "zero_shot_lead_instrument": {"accuracy": 0.5, "chance": 0.03}, "rvq_cosine": {"audio_clip": 0.96}},
        "semantic": {"probes": {"chord_root": probe, "beat_phase": {**probe, "semantic_tokens": 0.9}},
                     "semantic_codes": {"perplexity_fraction": 0.6}, "tokenize_10s_s": 0.9},
        "stages": {"uniform": 6.9, "stage1": {"own": 1.5, "null": 1.6}, "stage3": {"own": 6.8}},
        "generation": {"mcc": {"generated": -0.1, "unconditional": -0.1, "reference": 0.4, "reference_through_codec": 0.25,
                               "generated_over_reference": -0.25, "codec_ceiling_over_reference": 0.62},
                       "tempo": {f"{k}_within_8pct": 0.3 for k in ("generated", "unconditional", "reference", "reference_through_codec")},
                       "contrast": {"pairs_moved": 2, "of": 5}},
        "story": {"margin_positive_fraction": 0.35, "independent_clips_margin_positive_fraction": 0.15,
                  "seam_jump_story_median": 0.9, "seam_jump_hard_cut_median": 4.0},
        "continuation": {"closer_to_own_clip_fraction": 0.8, "similarity_own_mean": 0.3, "similarity_unrelated_mean": 0.0},
        "melody": {kind: {"chroma_cosine": 0.09, "shuffled": 0.1, "text_only": 0.08, "reference_render": 0.5, "reference_through_codec": 0.1, "ratio_to_shuffled": 0.9}
                   for kind in ("rendition", "synthetic")},
        "memorization": {"exact_match_rate": 0.05, "threshold": 0.07, "unrelated_distance_median": 0.58,
                         "own_distances": [0.05, 0.2, 0.3, 0.17]},
    }


def test_targets_read_their_figure_and_judge_it():
    recall = report.Target("recall", "mulan.text_to_audio.recall@10", at_least=0.6)
    memorized = report.Target("exact", "memorization.exact_match_rate", below=0.01)
    results = _results()
    assert recall.value(results) == 0.75 and recall.met(0.75) and not recall.met(0.59)
    assert memorized.met(0.0) and not memorized.met(0.01) and memorized.bar == "< 0.01"
    at_opus = report.Target("comb over Opus", "codec.comb_over_opus.mean", at_most=0.0)
    assert at_opus.met(0.0) and at_opus.met(-0.001) and not at_opus.met(0.0019) and at_opus.bar == "≤ 0"
    assert recall.value({"mulan": {}}) is None and recall.met(None) is None  # not measured is neither met nor missed


def test_a_failing_evaluation_is_recorded_and_the_others_still_run(monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("no token cache")

    monkeypatch.setattr(report, "EVALUATORS", {**report.EVALUATORS, "stages": broken,
                                               "mulan": lambda *a, **k: _results()["mulan"]})
    candidate = tmp_path / "set" / "stage3"  # a model set: one run folder beside the shipped rest
    candidate.mkdir(parents=True)
    (candidate / "state.json").write_text("{}")
    (candidate / "model.safetensors").write_bytes(b"weights")
    results = report.run_all(tmp_path, tmp_path / "set", "quick", only=("stages", "mulan"), progress=lambda line: None)
    assert results["stages"]["error"] == "RuntimeError: no token cache"
    assert results["mulan"]["text_to_audio"]["recall@10"] == 0.75
    met = {t["label"]: t["met"] for t in results["targets"]}
    assert met["MuLan text→audio recall@10"] is True and met["exact-match memorization"] is None
    assert results["commit"] and {"stage3/model.safetensors", "stage1.safetensors", "codec-1.safetensors"} <= set(results["checkpoints"])
    assert "stage3.safetensors" not in results["checkpoints"]  # the candidate's, not the shipped one


def test_the_report_has_every_plot_a_target_table_and_a_growing_history(tmp_path):
    results = {**_results(), **report.provenance(None), "plan": "quick", "sizes": {}, "wall_s": 60.0}
    results["semantic"]["probes_won"] = 1
    results["targets"] = [{"label": t.label, "bar": t.bar, "value": t.value(results), "met": t.met(t.value(results))} for t in report.TARGETS]
    results["story"] = {"error": "ValueError: boom"}
    results["codec"].update(comb_over_opus={"mean": 0.002, "interval_95": [-0.02, 0.026]}, code_usage=[0.9, 0.8, 0.7])
    for _ in range(2):
        page = report.write_report(results, tmp_path / "docs")
    text = page.read_text()
    assert "| MuLan text→audio recall@10 | ≥ 0.6 | 0.75 | ✅ |" in text
    assert "| exact-match memorization | < 0.01 | 0.05 | ❌ |" in text
    assert "**failed:** ValueError: boom" in text
    assert "| comb_over_opus.interval_95 | -0.02 to 0.026 |" in text and "code_usage" not in text
    for name in set(report.PLOTS) - {"story"}:
        png = tmp_path / "docs" / "results" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"![{name}](results/{name}.png)" in text
    assert json.loads((tmp_path / "docs" / "results.json").read_text())["mulan"]["text_to_audio"]["recall@10"] == 0.75
    history = (tmp_path / "docs" / "results-history.jsonl").read_text().splitlines()
    assert len(history) == 2 and json.loads(history[0])["exact-match memorization"] == 0.05
    assert not list((tmp_path / "docs").glob(".*.tmp"))


@pytest.mark.parametrize("plan", list(report.PLANS))
def test_every_plan_sizes_every_evaluation(plan):
    assert set(report.PLANS[plan].sizes) == set(report.EVALUATORS)


@pytest.mark.slow
def test_bench_smoke_times_the_shipped_generator_and_codec():
    """``bench`` as the README runs it, at the smallest sizes: every figure it reports is there and sane."""
    from engine.evaluate.bench import bench_codec, bench_generate

    result = bench_generate((1.0,), parallel=False)
    run = result["runs"]["1s"]
    assert run["seconds"] == 1.0 and 0 < run["rtf"] < 20 and 0 < run["first_chunk_s"] <= run["wall_s"]
    assert set(run["tokens_per_s"]) == {"stage1", "stage2"} and result["peak_rss_mb"] > 0  # stage 3 is off by default
    codec = bench_codec(seconds=1.0, repeats=1)
    assert codec["ours"]["decode_only_s"] > 0 and codec["soundstream_decoder_C16"]["realtime_x"] > 0
