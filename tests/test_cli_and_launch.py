"""The two doors a user walks through first: the corpus CLI and the studio launcher."""
import json
import os
import subprocess
import sys
import time
import urllib.request
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from .conftest import ROOT


def run_engine(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_data_build_smoke_corpus(smoke_corpus):
    """The CI-sized corpus: 10 clips of 4 s, so both splits exist; every file is where the JSONL says."""
    out, proc = smoke_corpus
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["clips"] == 10 and manifest["splits"] == {"train": 9, "test": 1}
    assert json.loads(proc.stdout.strip().splitlines()[-1])["clips"] == 10
    records = [json.loads(line) for split in ("train", "test") for line in (out / f"{split}.jsonl").read_text().splitlines()]
    assert len(records) == 10
    for r in records:
        audio, sr = sf.read(out / r["audio"])
        assert sr == 24000 and audio.ndim == 1 and len(audio) == 4 * 24000
        assert np.max(np.abs(audio)) < 0.9
        assert (out / r["midi"]).exists()
        assert r["caption"] and r["aspects"] and r["beats"] and r["key"]["name"]
        assert (r["rendition"] is None) == (not r["melody"])
        if r["melody"]:
            assert {"onset", "pitch", "duration", "velocity"} == set(r["melody"][0])
            melody, _ = sf.read(out / r["rendition"]["audio"])
            assert np.max(np.abs(melody)) > 0.05
    assert sum(r["rendition"] is not None for r in records) >= 5
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["data", "build", "--out", "x", "--hours", "-1"], "positive"),
        (["data", "build", "--out", "x", "--hours", "nan"], "positive"),
        (["data", "build", "--out", "x", "--hours", "lots"], "not a number"),
        (["data"], "required"),
    ],
)
def test_cli_bad_input_gets_one_clear_line_and_exit_2(args, message):
    proc = run_engine(*args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["generation", "--words", "with a flute"], "--words applies to eval style only"),
    (["style", "--words", "   "], "empty"),
    (["tones", "--style-guidance", "5"], "apply to eval generation, story, continuation, style, dynamics, melody only"),
    (["story", "--tuning"], "--tuning applies to eval generation and eval melody only"),
    (["melody", "--tuning"], "no test clips with a melody rendition after the evaluation's 20"),
    (["codec", "--models-level"], "--models-level, --models-tone) apply to eval generation"),
    (["codec", "--models-tone"], "--models-level, --models-tone) apply to eval generation"),
    (["codec", "--style-coarse-guidance", "3"], "apply to eval generation"),
    (["story", "--judge", "assets/checkpoints/mulan.safetensors"], "--free-form and --judge apply to eval generation only"),
    (["generation", "--judge", "no-such-mulan"], "no MuLan at no-such-mulan"),
])
def test_eval_options_meant_for_another_evaluation_get_one_line(tmp_path, args, message):
    (tmp_path / "test.jsonl").write_text("")
    proc = run_engine("eval", args[0], "--corpus", str(tmp_path), *args[1:])
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_the_level_option_reaches_the_settings_only_when_given():
    from engine.cli import _sampling_settings, parser

    assert _sampling_settings(parser().parse_args(["generate", "a loud march", "--models-level"])) == {"level_stage": False}
    assert _sampling_settings(parser().parse_args(["generate", "a loud march"])) == {}
    assert _sampling_settings(parser().parse_args(["generate", "--style", "a.flac", "--models-tone"])) == {"tone_match": False}

def test_models_command_lists_every_stage_with_its_train_command():
    proc = run_engine("models")
    assert proc.returncode == 0
    rows = json.loads(proc.stdout)["models"]
    assert [r["name"] for r in rows] == ["codec", "mulan", "prior", "semantic", "stage1", "stage2", "stage3"]
    assert all(r["train_command"].startswith("python -m engine train ") for r in rows)


def test_launch_serves_the_studio_and_names_missing_models():
    """Also with --desktop: without a sound card it says so and serves anyway."""
    from studio.desktop import available
    from studio.ports import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "launch.py", "--port", str(port), "--desktop"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.time() < deadline, "studio did not answer within 60 s"
                time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as r:
            config = r.read().decode()
        assert "parts are missing" in config or "parts are ready" in config
        assert "python -m engine train codec" in config
        # gradio's run history rewrote every run's outputs in the browser's storage on each streamed
        # update, slowing a page with every piece it played; the History tab keeps the pieces instead
        assert json.loads(config)["run_history"] is False
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    reason = available()
    assert reason is None or f"--desktop: {reason}" in proc.stdout.read()


def test_launch_rejects_bad_flags():
    proc = subprocess.run([sys.executable, "launch.py", "--auth", "nocolon"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "user:password" in proc.stderr


def test_model_table_rows_keep_their_cells_and_only_offer_real_trainers():
    import re

    from engine.train.trainers import TRAINERS
    from studio.app import status_markdown, training_markdown

    rows = [line for line in status_markdown().splitlines() if line.startswith("| **")]
    assert len(rows) == 7
    for row in rows:
        assert len(re.split(r"(?<!\\)\|", row)) == 5, row  # 3 cells between 4 unescaped bars
        assert "p(" not in row and "RVQ" not in row  # plain words for users
    lines = [line for line in training_markdown().splitlines() if line.startswith("- **")]
    assert len(lines) == 7
    for line in lines:
        assert ("python -m engine train" in line) == (line.split("**")[1] in TRAINERS), line


@pytest.mark.slow
def test_open_host_warns_requires_the_login_and_keeps_uploads_private_until_exit(tmp_path):
    """--host 0.0.0.0 --auth: a warning on start; no answer without the login; an upload lands in
    a folder only this user can read, which is gone once the studio stops (SIGTERM)."""
    import os
    import re
    import signal

    from gradio_client import Client, handle_file

    from studio.app import preset_values
    from studio.ports import free_port, wait_until_serving

    port = free_port()
    log = tmp_path / "launch.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "launch.py", "--host", "0.0.0.0", "--port", str(port), "--auth", "ada:lovelace"],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_serving(port, proc, timeout=180)
        text = log.read_text()
        assert "warning: the studio will be reachable from other machines" in text
        uploads = re.search(r"uploads are kept in (\S+) and removed on exit", text).group(1)
        assert os.stat(uploads).st_mode & 0o777 == 0o700
        url = f"http://127.0.0.1:{port}/"
        with pytest.raises(Exception):
            Client(url, verbose=False).predict(api_name="/model_status")
        client = Client(url, auth=("ada", "lovelace"), verbose=False)
        assert "parts are" in client.predict(api_name="/model_status")
        fake = tmp_path / "my notes.wav"
        fake.write_text("not audio")
        with pytest.raises(Exception, match="cannot read my notes.wav as audio"):
            client.predict(handle_file(fake), False, "", 2, 0, True, *preset_values("quality"), api_name="/continue")
        assert any(p.name == "my notes.wav" for p in Path(uploads).rglob("*"))  # gradio's own copy, in the private folder
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert not Path(uploads).exists()


@pytest.mark.parametrize("args, story, message", [
    (["   "], None, "the prompt is empty"),
    (["\u200b\x01"], None, "the prompt is empty"),
    (["x" * 501], None, "the limit is 500"),
    (["calm", "--seconds", "nan"], None, "must be a positive number"),
    (["calm", "--seconds", "0"], None, "must be a positive number"),
    (["calm", "--temperatures", "1", "-0.5", "0"], None, "must be 0 (greedy) or a positive number"),
    (["calm", "--seconds", "301"], None, "duration must be in (0, 300]"),
    (["--story"], '{"segments": []}', "no segments"),
    (["--story"], '{"segments": [{"prompt": "calm", "seconds": -3}]}', "segment 1 lasts -3"),
    (["--story"], '{"segments": [' + ", ".join(['{"prompt": "calm", "seconds": 1}'] * 51) + "]}", "the limit is 50"),
    (["--story"], "{not json", "not valid JSON"),
    *([(["calm", "--device", "cuda"], None, "no CUDA GPU is visible")] if not torch.cuda.is_available() else []),
])
def test_generate_refuses_bad_prompts_durations_and_stories_with_exit_2(tmp_path, args, story, message):
    if story is not None:
        (tmp_path / "story.json").write_text(story)
        args = [*args, str(tmp_path / "story.json")]
    proc = run_engine("generate", *args, "--out", str(tmp_path / "out.wav"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out.wav").exists()


def test_without_checkpoints_generate_names_the_training_command_and_models_says_what_is_missing(tmp_path):
    """A fresh machine before training: HUMMINGBIRD_CHECKPOINTS points at an empty folder."""
    env = {**os.environ, "HUMMINGBIRD_CHECKPOINTS": str(tmp_path)}
    run = partial(subprocess.run, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    proc = run([sys.executable, "-m", "engine", "generate", "calm piano", "--seconds", "1", "--out", str(tmp_path / "x.wav")])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no mulan checkpoint" in proc.stderr and "python -m engine train mulan" in proc.stderr
    assert not (tmp_path / "x.wav").exists()
    rows = json.loads(run([sys.executable, "-m", "engine", "models"]).stdout)["models"]
    assert len(rows) == 7 and not any(r["present"] for r in rows)


def test_the_studio_without_checkpoints_names_every_missing_model(tmp_path):
    script = "from studio.app import status_markdown, training_markdown; print(status_markdown()); print(training_markdown())"
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HUMMINGBIRD_CHECKPOINTS": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert "7 of 7 parts are missing" in proc.stdout and proc.stdout.count("❌ missing") == 7
    assert "python -m engine train stage3 --preset cpu-small" in proc.stdout


def test_a_retrain_chain_runs_its_steps_in_order_skips_finished_ones_and_stops_at_a_failure(tmp_path, monkeypatch):
    from engine.train import pipeline

    chain = (pipeline.Step("list", ("models",), "models.json"), pipeline.Step("broken", ("eval", "codec", "--corpus", "{corpus}")))
    monkeypatch.setitem(pipeline.CHAINS, "tiny", chain)
    with pytest.raises(RuntimeError, match="broken failed"):
        pipeline.run_chain("tiny", tmp_path / "no corpus", tmp_path / "runs", log=lambda line: None)
    assert json.loads((tmp_path / "runs" / "models.json").read_text())["models"]
    assert (tmp_path / "runs" / "list.done.json").exists() and not (tmp_path / "runs" / "broken.done.json").exists()
    seen = []
    monkeypatch.setitem(pipeline.CHAINS, "tiny", chain[:1])
    result = pipeline.run_chain("tiny", tmp_path, tmp_path / "runs", log=seen.append)
    assert seen == [f"list: done before ({result['wall_s']['list']:.0f} s)"] and result["total_s"] == result["wall_s"]["list"]


def test_a_step_resumed_after_a_killed_chain_counts_the_time_of_every_attempt(tmp_path, monkeypatch):
    """A session that ends mid-step must not lose that step's hours from the chain's total."""
    from engine.train import pipeline

    monkeypatch.setitem(pipeline.CHAINS, "tiny", (pipeline.Step("list", ("models",), "models.json"),))
    monkeypatch.setattr(pipeline, "PROGRESS_EVERY_S", 0.05)
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "list.partial.json").write_text(json.dumps({"wall_s": 1000.0}))  # what a killed attempt left
    seen = []
    result = pipeline.run_chain("tiny", tmp_path, runs, log=seen.append)
    assert "resumed after 1000 s in earlier attempts" in seen[0]
    assert 1000 < result["wall_s"]["list"] < 1000 + 120 and json.loads((runs / "list.done.json").read_text())["wall_s"] == result["wall_s"]["list"]
    assert not (runs / "list.partial.json").exists()
    monkeypatch.setitem(pipeline.CHAINS, "tiny", (pipeline.Step("broken", ("eval", "codec", "--corpus", "{corpus}")),))
    with pytest.raises(RuntimeError, match="broken failed"):  # a step that dies keeps the time it ran
        pipeline.run_chain("tiny", tmp_path / "no corpus", runs, log=seen.append)
    assert json.loads((runs / "broken.partial.json").read_text())["wall_s"] > 0


def test_a_chain_that_needs_recorded_music_says_so_before_its_first_step(tmp_path, monkeypatch):
    from engine.train import pipeline

    monkeypatch.setattr(pipeline, "TRAINING_MUSIC", (str(tmp_path / "no music here"),))
    with pytest.raises(FileNotFoundError, match="install.sh --training"):
        pipeline.run_chain("all", tmp_path / "corpus", tmp_path / "runs", log=lambda line: None)
    assert not (tmp_path / "runs").exists()  # nothing started, nothing half-built


def test_train_all_trains_every_model_of_the_set_from_its_own_inputs():
    """Every model's run folder comes from a step of the chain (so `--checkpoint runs/all` judges a
    set with nothing shipped in it), each after the models it reads, and the set is judged whole."""
    from engine.checkpoints import MODEL_NAMES
    from engine.train.pipeline import CHAINS

    steps = CHAINS["all"]
    made = {}
    for i, step in enumerate(steps):
        args = list(step.args)
        for flag in ("--run-dir", "--out"):  # a training run, or a codec put together from two (`codec combine`)
            if flag in args and args[args.index(flag) + 1].startswith("{runs}/"):
                made[args[args.index(flag) + 1].removeprefix("{runs}/")] = i
        for flag in ("--init", "--mulan", "--semantic", "--codec", "--checkpoint", "--partials"):
            if flag in args and args[args.index(flag) + 1].startswith("{runs}/"):
                assert made.get(args[args.index(flag) + 1].removeprefix("{runs}/"), len(steps)) < i, (step.name, flag)
        assert not any("assets/checkpoints" in a for a in args), step.name  # from nothing: no shipped model goes in
    assert set(MODEL_NAMES) <= set(made)
    tokens = next(i for i, s in enumerate(steps) if s.name == "tokens")
    assert max(made[n] for n in ("codec", "mulan", "semantic")) < tokens < min(made[n] for n in ("prior", "stage1", "stage2", "stage3"))
    assert steps[0].name == "corpus" and steps[-1].args[:2] == ("eval", "all") and "{runs}" in steps[-1].args


@pytest.mark.parametrize("chain", ["acoustic", "all"])
def test_every_step_of_a_chain_is_a_command_the_cli_accepts(chain, capsys):
    """A flag renamed in the CLI would otherwise surface hours into a chain, when its step starts."""
    from engine.cli import parser
    from engine.train.pipeline import CHAINS

    for step in CHAINS[chain]:
        try:
            parser().parse_args([a.format(corpus="corpus", runs="runs/x") for a in step.args])
        except SystemExit:
            pytest.fail(f"{step.name}: {capsys.readouterr().err.strip()}")


def test_a_chains_status_says_what_is_done_begun_and_waiting_and_runs_nothing(tmp_path, monkeypatch, capsys):
    from engine.cli import main
    from engine.train import pipeline

    chain = (pipeline.Step("corpus", ("models",)), pipeline.Step("codec", ("train", "codec", "--run-dir", "{runs}/codec", "--steps", "800")),
             pipeline.Step("report", ("models",)))
    monkeypatch.setitem(pipeline.CHAINS, "all", chain)
    runs = tmp_path / "runs"
    (runs / "codec").mkdir(parents=True)
    (runs / "corpus.done.json").write_text(json.dumps({"wall_s": 100.0}))
    (runs / "codec.partial.json").write_text(json.dumps({"wall_s": 7300.0}))
    (runs / "codec" / "state.json").write_text(json.dumps({"step": 250}))
    assert main(["train", "all", "--status", "--run-dir", str(runs)]) == 0
    out, err = capsys.readouterr()
    status = json.loads(out)
    assert [(r["step"], r["state"]) for r in status["steps"]] == [("corpus", "done"), ("codec", "begun"), ("report", "waiting")]
    assert status["steps"][1] == {"step": "codec", "state": "begun", "wall_s": 7300.0, "at_step": 250, "of_steps": 800}
    assert (status["done"], status["of"], status["spent_s"]) == (1, 3, 7400.0)
    assert "at step 250 of 800" in err and "1 of 3 steps done, 2.1 h spent" in err
    assert sorted(p.name for p in runs.iterdir()) == ["codec", "codec.partial.json", "corpus.done.json"]  # nothing run, nothing written
