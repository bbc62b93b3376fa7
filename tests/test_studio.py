"""The studio from the outside: its history on disk, every named endpoint through gradio_client,
and a real browser (Debian's chromium driven by Playwright) clicking through the page."""
import json
import os
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch

from engine import MusicLM
from studio.app import Studio, build_app, preset_values
from studio.history import History
from studio.ports import free_port

from .audio_cases import BAD, make
from .conftest import ROOT

SAMPLING = preset_values("quality")  # what the studio's sliders send by default

ARTIFACTS = Path(os.environ.get("HUMMINGBIRD_TEST_ARTIFACTS", ROOT / "test-artifacts"))


def test_history_survives_a_restart_and_never_lists_a_lost_file(tmp_path):
    history = History(tmp_path)
    first = history.add(np.zeros(2400, np.float32), {"prompt": "a", "seed": 1})
    second = history.add(np.full(4800, 0.1, np.float32), {"prompt": "b", "seed": 2})
    again = History(tmp_path)  # a restart: only what is on disk
    assert [e["settings"]["prompt"] for e in again.entries()] == ["b", "a"]
    assert again.entries()[0]["seconds"] == 0.2
    again.path(first).unlink()
    assert [e["audio"] for e in again.entries()] == [second["audio"]]
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_corrupt_history_index_is_set_aside_not_fatal(tmp_path):
    (tmp_path / "index.json").write_text("{not json")
    history = History(tmp_path)
    assert history.entries() == []
    assert list(tmp_path.glob("index.broken-*.json"))
    history.add(np.zeros(240, np.float32), {"prompt": "after"})
    assert len(history.entries()) == 1


@pytest.fixture(scope="module")
def shipped():
    return MusicLM.load().warm_up()


@pytest.fixture(scope="module")
def studio_url(shipped, tmp_path_factory):
    """The studio on the shipped checkpoints, with its history in a temp folder."""
    app = build_app(shipped, History(tmp_path_factory.mktemp("history")))
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()


def test_every_endpoint_answers_through_gradio_client(studio_url):
    from gradio_client import Client

    client = Client(studio_url, verbose=False)
    assert {"/text", "/history", "/model_status"} <= set(client.view_api(return_format="dict")["named_endpoints"])
    from gradio_client import handle_file

    job = client.submit("calm violin melody over a distorted guitar riff, 90 bpm", "", 2, 7, *SAMPLING, api_name="/text")
    updates = list(job)
    assert len(updates) >= 4  # streamed: one update per half-second chunk, then the finished piece
    _, progress, _, _, settings, download = updates[-1]
    assert progress.startswith("**done** · 2.0 s")
    assert json.loads(settings)["seed"] == 7 and Path(download).stat().st_size > 2 * 24_000 * 2
    rows = client.predict(api_name="/history")["data"]
    assert rows and rows[0][1] == "calm violin melody over a distorted guitar riff, 90 bpm"
    assert "All models are ready" in client.predict(api_name="/model_status")

    story = {"headers": ["prompt", "seconds"], "data": [["tender solo piano", 1.0], ["metal with distorted guitars", 1.5]]}
    *_, (_, progress, _, _, settings, download) = client.submit(story, 3, *SAMPLING, api_name="/story")
    assert progress.startswith("**done** · 2.5 s") and json.loads(settings)["mode"] == "story"

    clip = handle_file(download)
    *_, (_, progress, _, _, settings, _) = client.submit(clip, False, "", 1, 0, *SAMPLING, api_name="/continue")
    assert progress.startswith("**done** · 3.5 s") and json.loads(settings)["clip_seconds"] == 2.48  # the story snapped to the 25 Hz grid
    *_, (_, progress, _, _, _, _) = client.submit(None, True, "a flute lullaby", 1, 0, *SAMPLING, api_name="/continue")
    assert progress.startswith("**done** · 4.5 s")  # the last output (3.5 s) continued by 1 s
    *_, (_, progress, _, _, settings, _) = client.submit(None, True, "", 1.0, 2.0, 0, *SAMPLING, api_name="/inpaint")
    assert progress.startswith("**done** · 4.5 s") and json.loads(settings)["range_s"] == [1.0, 2.0]  # same length, range regenerated
    with pytest.raises(Exception, match="range to inpaint"):
        client.predict(None, True, "", 3.0, 9.0, 0, *SAMPLING, api_name="/inpaint")
    assert json.loads(settings)["device"] == "cpu"  # the same seed draws differently on a GPU: the record says where


def test_the_device_control_moves_generation_or_says_why_not(studio_url, shipped):
    from gradio_client import Client

    client = Client(studio_url, verbose=False)
    assert client.predict("cpu", api_name="/device") == "generating on **cpu**"
    if not torch.cuda.is_available():
        with pytest.raises(Exception, match="not in the list of choices: \\['cpu'\\]"):  # only what this machine has is offered
            client.predict("cuda", api_name="/device")
        with pytest.raises(gr.Error, match="no CUDA GPU is visible"):
            Studio(shipped).use_device("cuda")
    assert shipped.device == torch.device("cpu")
    *_, (_, progress, _, _, _, _) = client.submit("calm piano", "", 1, 0, *SAMPLING, api_name="/text")
    assert progress.startswith("**done** · 1.0 s")


@pytest.mark.parametrize("prompt, seconds, message", [
    ("   ", 2, "prompt is empty"),
    ("\u200b\x00\u202e", 2, "prompt is empty"),  # only invisible and control characters
    ("x" * 501, 2, "limit is 500"),
    ("calm piano", 0, "less than minimum value 1"),  # the slider's own bound check
    ("calm piano", 301, "greater than maximum value 300"),
])
def test_bad_input_gets_one_clear_message_and_the_server_keeps_serving(studio_url, prompt, seconds, message):
    from gradio_client import Client

    client = Client(studio_url, verbose=False)
    with pytest.raises(Exception, match=message):
        client.predict(prompt, "", seconds, 0, *SAMPLING, api_name="/text")
    assert "models" in client.predict(api_name="/model_status")


@pytest.mark.parametrize("endpoint, args, message", [
    ("/story", ({"headers": ["prompt", "seconds"], "data": []}, 0, *SAMPLING), "no segments"),
    ("/story", ({"headers": ["prompt", "seconds"], "data": [["calm", -2]]}, 0, *SAMPLING), "segment 1 lasts -2"),
    ("/story", ({"headers": ["prompt", "seconds"], "data": [["", 4]]}, 0, *SAMPLING), "segment 1: the prompt is empty"),
    ("/continue", (None, False, "", 2, 0, *SAMPLING), "upload or record a clip"),
])
def test_story_and_continue_refuse_bad_input_clearly(studio_url, endpoint, args, message):
    from gradio_client import Client

    with pytest.raises(Exception, match=message):
        Client(studio_url, verbose=False).predict(*args, api_name=endpoint)


def test_continue_refuses_a_file_that_is_not_audio(studio_url, tmp_path):
    from gradio_client import Client, handle_file

    fake = tmp_path / "notes.wav"
    fake.write_text("this is not audio")
    with pytest.raises(Exception, match="cannot read notes.wav as audio"):
        Client(studio_url, verbose=False).predict(handle_file(fake), False, "", 2, 0, *SAMPLING, api_name="/continue")


@pytest.mark.parametrize("name", BAD)
def test_continue_tab_refuses_every_bad_audio_file_clearly(studio_url, tmp_path, name):
    from gradio_client import Client, handle_file

    path, message = make(name, tmp_path)
    client = Client(studio_url, verbose=False)
    with pytest.raises(Exception, match=message):
        client.predict(handle_file(path), False, "", 2, 0, *SAMPLING, api_name="/continue")
    assert "models" in client.predict(api_name="/model_status")


def _hum_file(folder: Path) -> Path:
    from engine.audio import save_audio
    from engine.melody import synthetic_hum

    path = folder / "hum.wav"
    save_audio(path, synthetic_hum([(0.2 + 0.5 * i, 0.45, p) for i, p in enumerate([57, 60, 64, 62, 60, 59, 57, 57])], 4.5))
    return path


def test_hum_tab_shows_the_tracked_notes_and_music_follows_through_the_api(studio_url, tmp_path):
    from gradio_client import Client, handle_file

    from studio.app import Studio

    figure, notes = Studio().track_hum(str(_hum_file(tmp_path)))
    assert notes.startswith("**7 notes:** A3 C4 E4 D4 C4 B3 A3")  # the last two A3s are one held note once the breath is bridged
    assert len(figure.data[0].x) == 112
    client = Client(studio_url, verbose=False)
    *_, (_, progress, _, _, settings, _) = client.submit(handle_file(_hum_file(tmp_path)), "jazz piano trio", 2, 0, *SAMPLING,
                                                         api_name="/hum")
    assert progress.startswith("**done** · 2.0 s") and json.loads(settings)["mode"] == "hum"


@pytest.mark.parametrize("name, message", [("silent", "the hum is silent"), ("not audio", "cannot read notes.wav"),
                                           ("over 10 minutes", "the limit is 600 s")])
def test_hum_tab_refuses_bad_recordings_clearly(studio_url, tmp_path, name, message):
    from gradio_client import Client, handle_file

    path, _ = make(name, tmp_path)
    with pytest.raises(Exception, match=message):
        Client(studio_url, verbose=False).predict(handle_file(path), "jazz", 2, 0, *SAMPLING, api_name="/hum")


def test_a_fault_inside_generation_is_reported_and_the_next_request_works(shipped, studio_url):
    """NaN scores (a damaged checkpoint) mid-generation: one clear message, and the worker recovers."""
    import torch
    from gradio_client import Client

    client = Client(studio_url, verbose=False)
    weight = shipped.stages["stage2"].target_embed[0].weight
    saved = weight.detach().clone()
    with torch.no_grad():
        weight.fill_(float("nan"))
    try:
        with pytest.raises(Exception, match="stage2 produced invalid"):
            client.predict("calm piano", "", 1, 0, *SAMPLING, api_name="/text")
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    *_, (_, progress, _, _, _, _) = client.submit("calm piano", "", 1, 0, *SAMPLING, api_name="/text")
    assert progress.startswith("**done** · 1.0 s")


def test_out_of_memory_mid_generation_is_one_clear_message(shipped, studio_url, monkeypatch):
    from gradio_client import Client

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(shipped.codec.decoder, "frames", exhausted)  # the codec runs out of memory mid-stream
    client = Client(studio_url, verbose=False)
    with pytest.raises(Exception, match="out of memory while generating 1 s; try a shorter piece"):
        client.predict("calm piano", "", 1, 0, *SAMPLING, api_name="/text")
    monkeypatch.undo()
    *_, (_, progress, _, _, _, _) = client.submit("calm piano", "", 1, 0, *SAMPLING, api_name="/text")
    assert progress.startswith("**done** · 1.0 s")


def test_kill_9_while_saving_never_leaves_a_corrupt_history(tmp_path):
    """A writer saving entries in a loop is killed at random moments; what is on disk after each
    kill is a readable history whose every entry plays in full."""
    import signal
    import subprocess
    import sys

    import soundfile as sf

    writer = ("import numpy as np, sys; from studio.history import History\n"
              "h = History(sys.argv[1])\n"
              "h.add(np.zeros(48_000, np.float32), {}); print('saving', flush=True)\n"
              "while True: h.add(np.full(48_000, 0.1, np.float32), {'prompt': 'kill test'})")
    rng = np.random.default_rng(0)
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", writer, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "saving"
        time.sleep(rng.uniform(0.05, 0.5))  # somewhere in the middle of a save
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        entries = History(tmp_path).entries()
        for entry in entries:
            audio, rate = sf.read(tmp_path / entry["audio"])
            assert rate == 24_000 and len(audio) == 48_000
    assert len(entries) > 0 and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
def test_a_real_browser_generates_music_in_the_text_tab(studio_url):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("the browser test needs Debian's chromium: apt-get install chromium chromium-driver")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--autoplay-policy=no-user-gesture-required"])
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.goto(studio_url)
        for tab in ("Hum", "Story", "Continue", "History", "Models"):  # every tab renders
            page.get_by_role("tab", name=tab, exact=True).click()
            page.wait_for_timeout(700)  # let plots draw
            page.screenshot(path=str(ARTIFACTS / f"studio-{tab.lower()}.png"))
        assert "All models are ready" in page.content()
        _drag_the_story_timeline(page)
        page.get_by_role("tab", name="Text", exact=True).click()
        assert page.locator("#device input").input_value() == "cpu"  # where the served model runs
        page.locator("#prompt textarea").fill("tender solo piano, slow tempo, calm")
        duration = page.locator("#duration input[type=number]")
        duration.fill("2")
        duration.press("Enter")
        started = time.perf_counter()
        page.locator("#generate").click()
        page.get_by_text("done ·").wait_for(timeout=60_000)
        wall = time.perf_counter() - started
        audio = page.locator("#output-audio audio")
        audio.wait_for(state="attached", timeout=10_000)
        assert audio.evaluate("a => a.readyState") >= 1 or audio.get_attribute("src")
        page.screenshot(path=str(ARTIFACTS / "studio-text-generated.png"), full_page=True)
        browser.close()
    assert wall < 60


def _drag_the_story_timeline(page):
    """Drag the first block's right edge 5 s to the right (16 px a second), then drag that block
    behind the second: the table follows both, in 0.5 s steps."""
    page.get_by_role("tab", name="Story", exact=True).click()
    table = page.locator("#story-table")
    edge = page.locator("#timeline .edge").first.bounding_box()
    page.mouse.move(edge["x"] + 5, edge["y"] + 20)
    page.mouse.down()
    page.mouse.move(edge["x"] + 5 + 5 * 16 + 3, edge["y"] + 20, steps=12)  # 5.2 s → snaps to 5.0
    page.mouse.up()
    page.wait_for_function("() => document.querySelector('#story-table').innerText.includes('15')", timeout=10_000)
    assert page.locator("#timeline .segment .seconds").all_inner_texts() == ["15.0 s", "10.0 s", "10.0 s"]
    first, second = (page.locator("#timeline .segment").nth(i).bounding_box() for i in (0, 1))
    page.mouse.move(first["x"] + 30, first["y"] + 20)
    page.mouse.down()
    page.mouse.move(second["x"] + second["width"] - 5, second["y"] + 20, steps=10)
    page.mouse.up()
    page.wait_for_timeout(1000)
    names = page.locator("#timeline .segment .name").all_inner_texts()
    assert names[0].startswith("1. energetic rock") and names[1].startswith("2. tender solo piano")
    rows = table.inner_text()
    assert rows.index("energetic rock") < rows.index("tender solo piano")
    page.screenshot(path=str(ARTIFACTS / "studio-story-dragged.png"))


def test_desktop_audio_without_a_sound_card_says_so_in_one_sentence(monkeypatch):
    from studio import desktop

    sd = pytest.importorskip("sounddevice")

    def no_device(*args, **kwargs):
        raise sd.PortAudioError("Error querying device -1")

    monkeypatch.setattr(sd, "query_devices", no_device)
    assert desktop.available() == "no default audio input device on this computer"
    with pytest.raises(desktop.DesktopAudioError, match="no default audio input device"):
        desktop.record(1.0)
    with pytest.raises(desktop.DesktopAudioError, match="no default audio output device"):
        desktop.play(np.zeros(10, np.float32))
    with pytest.raises(desktop.DesktopAudioError, match="between 0 and 60"):
        desktop.record(120)


@pytest.mark.slow
def test_stress_script_small_run_all_answered_and_still_serving():
    from studio.stress import run

    result = run(users=3, seconds=1.0, sequential=2)
    assert result["concurrent"]["ok"] + result["concurrent"]["busy"] == 3 and not result["concurrent"]["failures"]
    assert result["sequential"]["failures"] == 0 and result["still_serving"]
