"""``python -m engine serve``: commands answered by models that stay loaded, and every way back
to running in the command's own process."""
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import soundfile as sf

from engine import CHECKPOINT_DIR
from engine.client import SERVER_SWITCH, lock_address, open_own, start_server_behind, stop_server, through_server

from .conftest import ROOT


def test_the_front_door_imports_no_torch_until_a_name_is_used():
    """``python -m engine generate`` asks a running server (engine/client.py) before anything imports torch."""
    probe = "import sys, engine, engine.client; before = 'torch' in sys.modules; engine.MusicLM; print(before, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.split() == ["False", "True"], out.stderr
    import engine
    assert set(engine.__all__) <= set(dir(engine))
    with pytest.raises(AttributeError):
        engine.no_such_name


def test_without_a_live_server_the_command_runs_in_its_own_process(tmp_path, monkeypatch):
    monkeypatch.setenv("HUMMINGBIRD_SOCKET", str(tmp_path / "engine.sock"))
    argv = ["generate", "calm piano", "--seconds", "1"]
    assert through_server(argv) is None  # no socket at all
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(tmp_path / "engine.sock"))
    dead.close()  # a socket file whose server is gone
    assert through_server(argv) is None
    for other in (["train", "codec"], [*argv, "--in-process"], [*argv, "--help"]):
        assert through_server(other) is None
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    (tmp_path / "engine.sock").unlink()
    live.bind(str(tmp_path / "engine.sock"))
    live.listen(1)
    monkeypatch.setattr(os, "getuid", lambda: os.stat(tmp_path / "engine.sock").st_uid + 1)  # a socket another user owns
    try:
        assert through_server(argv) is None  # returned without connecting: nothing waits to be accepted
        live.settimeout(0.1)
        with pytest.raises(socket.timeout):
            live.accept()
    finally:
        live.close()


def test_a_command_starts_a_server_behind_it_only_when_none_loads_and_the_user_lets_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HUMMINGBIRD_SOCKET", str(tmp_path / "engine.sock"))
    monkeypatch.setenv(SERVER_SWITCH, "on")
    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append((a, k)))
    argv = ["generate", "calm piano", "--seconds", "1", "--device", "cpu"]
    for declined in (["train", "codec"], [*argv, "--in-process"], [*argv, "--help"]):
        assert start_server_behind(declined) is None
    with open(lock_address(tmp_path / "engine.sock"), "w") as lock:  # a server is loading: no second one beside it
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert start_server_behind(argv) is None
    monkeypatch.setenv(SERVER_SWITCH, "off")
    assert start_server_behind(argv) is None and not started
    monkeypatch.setenv(SERVER_SWITCH, "on")
    assert "serve --stop" in start_server_behind(argv)
    (command,), options = started[0]
    assert command[-5:] == ["serve", "--device", "cpu", "--idle-minutes", "30"] and options["start_new_session"]
    assert options["pass_fds"] == (int(options["env"]["HUMMINGBIRD_SERVER_LOCK"]),)  # the lock goes with it, taken before it starts
    assert stop_server() == {"stopped": False, "why": f"no server listens at {tmp_path / 'engine.sock'}"}


def test_each_checkout_and_checkpoint_folder_has_its_own_server_and_new_code_is_never_answered_by_old(tmp_path, monkeypatch):
    from engine import client, serve
    monkeypatch.delenv("HUMMINGBIRD_SOCKET")
    shipped = client.server_address()
    monkeypatch.setattr(client, "CHECKPOINT_DIR", tmp_path)  # HUMMINGBIRD_CHECKPOINTS, or another clone's assets
    assert client.server_address() != shipped and client.server_address().parent == shipped.parent
    here, there = socket.socketpair()
    with here, there:
        client.send_line(there, {"argv": ["calm piano"], "cwd": str(tmp_path)})
        made, line = serve._reply(here, None, "cpu", lambda *a: pytest.fail("answered with old code"), client.code_stamp() - 1)
        assert made is serve.STOP and "code changed" in line
        assert json.loads(client.read_line(there)) == {"declined": "code"}  # the command runs it itself


def test_a_server_goes_parallel_only_when_idle(monkeypatch):
    """It loads in line (workers importing torch would hold up the first requests) and starts the
    upstream stages' processes as the first thing it does while nobody asks."""
    import torch
    from types import SimpleNamespace
    from engine import serve
    from engine.generate.musiclm import MusicLM
    stage = SimpleNamespace(device=torch.device("cpu"))
    model = MusicLM(None, None, stage, stage, stage)
    started = []
    monkeypatch.setattr(MusicLM, "upstream_workers", lambda self: started.append(self))
    monkeypatch.setattr(MusicLM, "load", classmethod(lambda cls, root, device, parallel: (started.append(parallel), model)[1]))
    loaded, warming = serve._loaded(None, "cpu")
    assert loaded is model and started == [False] and not model.parallel
    assert warming[0] == model.start_upstream and len(warming) == 1 + len(model.warm_up_steps())
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    warming[0]()
    assert model.parallel and started == [False, model]
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # one core: the stages stay in line
    model.start_upstream()
    assert not model.parallel and len(started) == 2


def test_the_servers_lock_and_log_are_never_another_users_file_or_a_link(tmp_path, monkeypatch):
    (tmp_path / "elsewhere").write_text("someone's file")
    (tmp_path / "engine.sock.log").symlink_to(tmp_path / "elsewhere")
    assert open_own(tmp_path / "engine.sock.log") is None  # a link put there first is not followed
    descriptor = open_own(tmp_path / "engine.sock.lock")
    assert descriptor is not None and oct((tmp_path / "engine.sock.lock").stat().st_mode & 0o777) == "0o600"
    os.close(descriptor)
    monkeypatch.setattr(os, "getuid", lambda: (tmp_path / "engine.sock.lock").stat().st_uid + 1)
    assert open_own(tmp_path / "engine.sock.lock") is None  # another user's lock file
    monkeypatch.setenv("HUMMINGBIRD_SOCKET", str(tmp_path / "engine.sock"))
    monkeypatch.setenv(SERVER_SWITCH, "on")
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("started a server on another user's files"))
    assert start_server_behind(["generate", "calm piano"]) is None
    assert (tmp_path / "elsewhere").read_text() == "someone's file"


def test_a_command_waits_for_a_server_that_is_still_loading_rather_than_load_beside_it(tmp_path, monkeypatch, capsys):
    import threading
    from engine import client
    address = tmp_path / "engine.sock"
    monkeypatch.setenv("HUMMINGBIRD_SOCKET", str(address))
    monkeypatch.setattr(client, "START_WAIT_S", 0.3)
    argv = ["generate", "calm piano"]
    with open(lock_address(address), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # loading, and never listening
        t0 = time.perf_counter()
        assert through_server(argv) is None and time.perf_counter() - t0 >= 0.3  # waited, then gave up: the command runs itself

        def loaded_later():  # the server starts listening while the command waits
            time.sleep(0.2)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.bind(str(address))
                sock.listen(1)
                conn, _ = sock.accept()
                with conn:
                    asked = json.loads(client.read_line(conn))
                    client.send_line(conn, {"result": {"asked": asked["argv"], "waited_s": round(time.time() - asked["started_at"], 1)}})

        monkeypatch.setattr(client, "START_WAIT_S", 10.0)
        server = threading.Thread(target=loaded_later)
        server.start()
        assert through_server(argv) == 0
        server.join()
    answered = json.loads(capsys.readouterr().out)
    assert answered["asked"] == ["calm piano"] and answered["waited_s"] >= 0.2  # counted from the command's start


@pytest.mark.slow
def test_the_first_command_leaves_a_server_that_answers_the_next_and_stops_when_asked(tmp_path):
    if not (CHECKPOINT_DIR / "stage2.safetensors").exists():
        pytest.skip("no shipped checkpoints")
    env = {**os.environ, "HUMMINGBIRD_SOCKET": str(tmp_path / "engine.sock"), "PYTHONPATH": str(ROOT), SERVER_SWITCH: "on"}

    def command(*args):
        return subprocess.run([sys.executable, "-m", "engine", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    try:
        first = command("generate", "calm piano, soft", "--seconds", "1", "--out", "first.wav")
        assert first.returncode == 0 and "started a model server" in first.stderr, first.stderr
        assert json.loads(first.stdout.splitlines()[-1])["served"] is False
        nexts = [command("generate", "calm piano, soft", "--seconds", "1", "--out", f"next{i}.wav") for i in range(2)]  # at once: it waits for the loading server
        for made in nexts:
            assert made.returncode == 0 and json.loads(made.stdout.splitlines()[-1])["served"], made.stderr
            assert "started a model server" not in made.stderr
        assert sf.read(tmp_path / "next1.wav")[0].tolist() == sf.read(tmp_path / "first.wav")[0].tolist()  # the same piece, wherever it is made
    finally:
        stopped = command("serve", "--stop")
    assert stopped.returncode == 0 and json.loads(stopped.stdout)["stopped"] is True
    t0 = time.perf_counter()
    while (tmp_path / "engine.sock").exists() and time.perf_counter() - t0 < 30:
        time.sleep(0.1)
    assert not (tmp_path / "engine.sock").exists()
    log = (tmp_path / "engine.sock.log").read_text()
    assert log.count("loading the models") == 1 and "stopped on request" in log and "Traceback" not in log


@pytest.mark.slow
def test_a_server_answers_generate_as_the_command_would_and_steps_aside_when_it_should(tmp_path):
    if not (CHECKPOINT_DIR / "stage2.safetensors").exists():
        pytest.skip("no shipped checkpoints")
    env = {**os.environ, "HUMMINGBIRD_SOCKET": str(tmp_path / "engine.sock"), "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--idle-minutes", "5"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.perf_counter()
        while not (tmp_path / "engine.sock").exists():
            assert server.poll() is None and time.perf_counter() - t0 < 240, server.stderr.read() if server.poll() is not None else "no socket"
            time.sleep(0.2)
        assert oct((tmp_path / "engine.sock").stat().st_mode & 0o777) == "0o600"  # only this user can ask it for anything

        def command(*args, cwd=tmp_path):
            return subprocess.run([sys.executable, "-m", "engine", "generate", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)

        made = command("calm piano, soft", "--seconds", "1", "--out", "rel.wav", "--json")  # a path relative to the command's folder
        assert made.returncode == 0, made.stderr
        result = json.loads(made.stdout.splitlines()[-1])
        assert result["served"] and result["out"] == "rel.wav" and 0 < result["first_chunk_since_start_s"] < 30
        audio, rate = sf.read(tmp_path / "rel.wav")
        assert rate == 24_000 and len(audio) >= 24_000
        again = command("calm piano, soft", "--seconds", "1", "--out", "rel.wav", "--json")
        assert sf.read(tmp_path / "rel.wav")[0].tolist() == audio.tolist() and json.loads(again.stdout.splitlines()[-1])["seed"] == result["seed"]
        bad = command("calm piano", "--seconds", "ten")
        assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "not a number" in bad.stderr and "Traceback" not in bad.stderr
        missing = command("calm piano", "--continue", "nowhere.wav")
        assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
        here = command("calm piano, soft", "--seconds", "1", "--out", "own.wav", "--in-process", "--json")
        assert here.returncode == 0 and json.loads(here.stdout.splitlines()[-1])["served"] is False
        gpu = command("calm piano", "--seconds", "1", "--device", "cuda")  # declined by a CPU server: the command itself says why
        if "cuda" not in subprocess.run([sys.executable, "-c", "import torch; print('cuda' if torch.cuda.is_available() else '')"],
                                        capture_output=True, text=True).stdout:
            assert gpu.returncode == 2 and "CUDA" in gpu.stderr
        stopped = subprocess.Popen([sys.executable, "-m", "engine", "generate", "calm piano", "--seconds", "30", "--out", "stopped.wav"],
                                   cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(2.5)
        stopped.kill()  # Ctrl-C at the prompt while the server makes the piece: no file appears later
        stopped.wait()
        after = command("calm piano, soft", "--seconds", "1", "--out", "after.wav", "--json")  # waits for the abandoned piece, then is served
        assert after.returncode == 0 and json.loads(after.stdout.splitlines()[-1])["served"]
        assert not (tmp_path / "stopped.wav").exists()
        second = subprocess.run([sys.executable, "-m", "engine", "serve"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2 and "already listens" in second.stderr and "Traceback" not in second.stderr
        assert server.poll() is None  # nothing above stopped it
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["served"] == 3 and "refused: " in err and "hung up" in err
    assert not (tmp_path / "engine.sock").exists()
