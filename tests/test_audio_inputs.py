"""Every kind of audio a user may hand us, through the Python API and the CLI: usable audio loads
as 24 kHz mono, anything else gets one clear message (exit code 2 on the command line)."""
import subprocess
import sys

import numpy as np
import pytest

from engine.audio import AudioError, load_audio
from engine.melody import melody_tokens

from .audio_cases import BAD, CASES, make
from .conftest import ROOT


@pytest.mark.parametrize("name", sorted(CASES))
def test_load_audio_reads_what_it_can_and_names_what_it_cannot(name, tmp_path):
    path, expect = make(name, tmp_path)
    if isinstance(expect, str):
        with pytest.raises(AudioError, match=expect):
            load_audio(path)
    else:
        audio = load_audio(path)
        assert audio.ndim == 1 and audio.dtype == np.float32 and np.isfinite(audio).all()
        assert abs(len(audio) / 24_000 - expect) < 0.01


def test_silent_and_too_short_clips_are_refused_before_any_model_runs(tmp_path):
    """A hum, a clip to continue and a clip to inpaint share one floor: 1 s of sound."""
    from engine import ContinueRequest, InpaintRequest

    silent = load_audio(make("silent", tmp_path)[0])
    with pytest.raises(AudioError, match="the hum is silent"):
        melody_tokens(silent)
    with pytest.raises(ValueError, match="the clip is silent"):
        ContinueRequest(silent)
    short = np.sin(np.arange(int(0.8 * 24_000)) * 0.05).astype(np.float32) * 0.3
    for make_request in (lambda: ContinueRequest(short), lambda: InpaintRequest(short, 0.1, 0.5)):
        with pytest.raises(ValueError, match="the clip is 0.80 s long; give at least 1 s"):
            make_request()
    with pytest.raises(AudioError, match="the hum is 0.80 s long"):
        melody_tokens(short)


def _generate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "generate", "calm piano", "--seconds", "1", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name", BAD)
def test_cli_refuses_bad_audio_with_one_line_and_exit_2(name, tmp_path):
    path, message = make(name, tmp_path)
    flag = "--continue" if name != "not audio" else "--melody"  # both flags go through the same loader
    proc = _generate(flag, str(path), "--out", str(tmp_path / "out.wav"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out.wav").exists()  # nothing half-written


@pytest.mark.slow
def test_cli_refuses_a_silent_hum_and_a_silent_clip(tmp_path):
    path, _ = make("silent", tmp_path)
    for flag, message in (("--melody", "the hum is silent"), ("--continue", "the clip is silent")):
        proc = _generate(flag, str(path), "--out", str(tmp_path / "out.wav"))
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--inpaint", "x.wav"], "--between START END"),
    (["--between", "1", "2"], "goes with --inpaint"),
    (["--story", "s.json", "--continue", "c.wav"], "do not combine"),
])
def test_cli_refuses_mode_flags_that_do_not_fit_together(args, message):
    proc = _generate(*args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_cli_follows_a_hum_with_the_shipped_models(tmp_path):
    import json

    from engine.audio import save_audio
    from engine.melody import synthetic_hum

    hum = tmp_path / "hum.wav"
    save_audio(hum, synthetic_hum([(0.2 + 0.5 * i, 0.45, p) for i, p in enumerate([57, 60, 64, 62])], 2.5))
    proc = _generate("--melody", str(hum), "--out", str(tmp_path / "tune.wav"), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout.splitlines()[-1])
    assert info["melody_frames"] == 62 and info["seconds"] == 1.0
