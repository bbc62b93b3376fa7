"""The studio from the outside: its history on disk, every named endpoint through gradio_client,
and a real browser (Debian's chromium driven by Playwright) clicking through the page."""
import json
import os
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import soundfile as sf
import torch

from engine import MusicLM
from studio.app import LAUNCH_OPTIONS, Studio, build_app, preset_values
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
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **LAUNCH_OPTIONS)
    yield f"http://127.0.0.1:{port}/"
    app.close()


def test_every_endpoint_answers_through_gradio_client(studio_url):
    from gradio_client import Client

    client = Client(studio_url, verbose=False)
    assert {"/text", "/history", "/model_status"} <= set(client.view_api(return_format="dict")["named_endpoints"])
    from gradio_client import handle_file

    job = client.submit("calm violin melody over a distorted guitar riff, 90 bpm", "", 2, 7, True, *SAMPLING, api_name="/text")
    updates = list(job)
    assert len(updates) >= 4  # streamed: one update per half-second chunk, then the finished piece
    _, progress, _, _, settings, download, seed_shown, live = updates[-1]
    assert progress.startswith("**done** · 2.0 s") and updates[0][-2] == 7  # a locked seed is kept and shown
    streamed = [u[-1] for u in updates[:-1] if "stream" in u[-1]]  # the others redraw the previews, after their chunk
    assert len({u["stream"] for u in streamed} | {live["stream"]}) == 1 and live["ended"]  # one stream, chunk by chunk to the live player
    sequences = sorted({seq for u in streamed for seq, _ in u["chunks"]})
    assert sequences == list(range(1, len(streamed) + 1))  # every chunk reaches the player (the last few resent with each update)
    assert json.loads(settings)["seed"] == 7 and Path(download).stat().st_size > 2 * 24_000 * 2
    rows = client.predict(api_name="/history")["data"]
    assert rows and rows[0][1:3] == ["text", "calm violin melody over a distorted guitar riff, 90 bpm"] and rows[0][5] == "complete"
    assert "All 7 parts are ready" in client.predict(api_name="/model_status")

    story = {"headers": ["prompt", "seconds"], "data": [["tender solo piano", 1.0], ["metal with distorted guitars", 1.5]]}
    *_, (_, progress, _, _, settings, download, _, _) = client.submit(story, 3, True, *SAMPLING, api_name="/story")
    assert progress.startswith("**done** · 2.5 s") and json.loads(settings)["mode"] == "story"

    clip = handle_file(download)
    *_, (_, progress, _, _, settings, _, _, _) = client.submit(clip, False, "", 1, 0, True, *SAMPLING, api_name="/continue")
    assert progress.startswith("**done** · 3.5 s") and json.loads(settings)["clip_seconds"] == 2.48  # the story snapped to the 25 Hz grid
    *_, (_, progress, _, _, _, _, _, _) = client.submit(None, True, "a flute lullaby", 1, 0, True, *SAMPLING, api_name="/continue")
    assert progress.startswith("**done** · 4.5 s")  # the last output (3.5 s) continued by 1 s
    *_, (_, progress, _, _, settings, _, _, _) = client.submit(None, True, "", 1.0, 2.0, 0, True, *SAMPLING, api_name="/inpaint")
    assert progress.startswith("**done** · 4.5 s") and json.loads(settings)["range_s"] == [1.0, 2.0]  # same length, range regenerated
    with pytest.raises(Exception, match="range to inpaint"):
        client.predict(None, True, "", 3.0, 9.0, 0, True, *SAMPLING, api_name="/inpaint")
    assert json.loads(settings)["device"] == "cpu"  # the same seed draws differently on a GPU: the record says where
    *_, (_, progress, _, _, settings, _, _, _) = client.submit("with a flute lead", 0.5, 5.0, False, clip, 1.0, None, 1.0, clip, 0.25, 1.5, 0,
                                                               True, *SAMPLING, api_name="/style")
    assert progress.startswith("**done** · 1.5 s") and json.loads(settings)["weights"] == [0.5, 1.0, 0.25]  # the words first, then each clip
    assert json.loads(settings)["style_guidance"] == 5.0 and json.loads(settings)["tone_match"] is False  # the tone box reaches the generator
    assert client.predict(api_name="/history")["data"][0][1:3] == ["style", "in the style of 2 clips + \"with a flute lead\""]
    with pytest.raises(Exception, match="at least one reference clip"):
        client.predict("jazz", 0.5, 3.0, True, None, 1.0, None, 1.0, None, 1.0, 1.5, 0, True, *SAMPLING, api_name="/style")


def test_each_click_draws_a_new_seed_unless_it_is_locked_and_the_seed_shown_reproduces_the_piece(studio_url):
    from gradio_client import Client

    client = Client(studio_url, verbose=False)
    takes = [list(client.submit("calm piano", "", 1, 5, False, *SAMPLING, api_name="/text")) for _ in range(2)]
    seeds = [take[0][-2] for take in takes]
    assert seeds[0] != seeds[1] and 5 not in seeds  # unlocked: a new take per click, whatever the box said
    assert [json.loads(take[-1][4])["seed"] for take in takes] == seeds  # the seed shown is the seed used
    again = list(client.submit("calm piano", "", 1, seeds[0], True, *SAMPLING, api_name="/text"))
    assert Path(again[-1][5]).read_bytes() == Path(takes[0][-1][5]).read_bytes()  # locked to the shown seed: the same piece
    loud = [list(client.submit("a thunderous march", "", 2, 3, True, *SAMPLING[:-1], level, api_name="/text"))[-1] for level in (True, False)]
    assert [json.loads(take[4])["level_stage"] for take in loud] == [True, False]  # the loudness box reaches the generator
    levels = [float(np.sqrt(np.mean(sf.read(take[5])[0][24_000:] ** 2))) for take in loud]
    assert levels[0] > 1.5 * levels[1]


def test_stop_keeps_a_playable_partial_with_its_settings_marked_in_the_history(studio_url):
    from gradio_client import Client

    client = Client(studio_url, verbose=False)
    job = client.submit("energetic rock with crunchy guitar and drums", "", 60, 3, True, *SAMPLING, api_name="/text")
    while len(job.outputs()) < 3:
        time.sleep(0.05)
    client.predict(api_name="/stop")
    *_, (_, progress, _, _, settings, download, _, _) = list(job)
    kept = float(progress.split("kept ")[1].split(" of")[0])
    assert progress.startswith("**stopped** · kept") and 0 < kept < 60 and json.loads(settings)["seed"] == 3
    assert abs(sf.info(download).duration - kept) < 0.05  # the partial is there to play and download
    row = client.predict(api_name="/history")["data"][0]
    assert row[5] == f"stopped at {row[3]:g} of 60 s"
    *_, (_, progress, _, _, _, _, _, _) = client.submit("calm piano", "", 1, 0, True, *SAMPLING, api_name="/text")
    assert progress.startswith("**done** · 1.0 s")  # the next piece is not stopped by the last Stop


def test_live_plays_until_stopped_takes_a_change_and_keeps_its_last_minutes(studio_url):
    from gradio_client import Client

    client = Client(studio_url, verbose=False)
    assert "press **Start live** first" in client.predict("calm piano", "", 0.5, None, api_name="/live_steer")
    job = client.submit("tender solo piano, slow tempo", "", 0.5, None, 4, True, *SAMPLING, api_name="/live")
    while len(job.outputs()) < 8:
        time.sleep(0.05)
    with pytest.raises(Exception, match="between 40 and 240 bpm"):
        client.predict("metal", "", 0.5, 999, api_name="/live_steer")
    assert "energetic rock" in client.predict("energetic rock with crunchy guitar and drums", "", 0.5, None, api_name="/live_steer")
    seen = len(job.outputs())
    while len(job.outputs()) < seen + 15:  # about 3 s more: past the buffer ahead of the player
        time.sleep(0.05)
    client.predict(api_name="/live_stop")
    updates = list(job)
    status = updates[-1][0]
    assert status.startswith("**stopped** after") and updates[0][2] == 4
    streamed = [u[-1] for u in updates if isinstance(u[-1], dict) and u[-1].get("chunks")]
    assert len({u["stream"] for u in streamed}) == 1 and updates[-1][-1]["ended"]
    timeline = json.loads(Path(client.predict(api_name="/live_timeline")).read_text())
    assert [r["prompt"] for r in timeline["segments"] if r["handover"] or r["frame"] == 0] == [
        "tender solo piano, slow tempo", "energetic rock with crunchy guitar and drums"]
    path, rows = client.predict(0.5, api_name="/live_keep")
    assert rows["data"][0][1] == "live" and "tender solo piano, slow tempo → energetic rock" in rows["data"][0][2]
    assert sf.info(path).duration == pytest.approx(min(30.0, timeline["live"]["seconds"]), abs=0.05)


def test_history_rows_say_what_each_piece_is_and_its_buttons_reuse_send_and_delete(shipped, tmp_path):
    studio = Studio(shipped, History(tmp_path / "history"))
    audio = np.zeros(24_000, np.float32)
    story = studio.history.add(audio, {"mode": "story", "segments": [{"prompt": "piano", "seconds": 4}, {"prompt": "rock", "seconds": 6}],
                                       "seed": 9, "seconds": 10, "temperatures": [1.0, 0.9, 0.8], "top_k": 0, "guidance": 3.0, "coarse_guidance": 1.0})
    text = studio.history.add(audio, {"mode": "text", "prompt": "calm harp", "negative_prompt": "drums", "seed": 4, "seconds": 1.0,
                                      "temperatures": [1.0, 0.9, 0.8], "top_k": 5, "guidance": 2.0, "coarse_guidance": 1.0,
                                      "level_stage": False}, planned_seconds=8)
    rows = studio.history_rows()
    assert [r[1:3] for r in rows] == [["text", "calm harp"], ["story", "piano → rock"]]
    assert rows[0][5] == "stopped at 1 of 8 s" and rows[1][5] == "complete"
    reused = studio.reuse(text["audio"])
    assert reused["tab"] == "text" and reused["prompt"] == "calm harp" and reused["negative"] == "drums"
    assert reused["seed"] == 4 and reused["locked"] and reused["sampling"] == (1.0, 0.9, 0.8, 5, 2.0, 1.0, False)
    assert studio.reuse(story["audio"])["story"] == [["piano", 4], ["rock", 6]]
    assert studio.reuse(story["audio"])["sampling"][-1] is True  # saved before loudness could be switched off: it was on
    assert studio.entry_path(story["audio"]).endswith(story["audio"])
    assert [r[1] for r in studio.delete(text["audio"])] == ["story"] and not (tmp_path / "history" / text["audio"]).exists()
    with pytest.raises(gr.Error, match="gone"):
        studio.reuse(text["audio"])
    with pytest.raises(gr.Error, match="pick a row"):
        studio.delete(None)


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
    *_, (_, progress, _, _, _, _, _, _) = client.submit("calm piano", "", 1, 0, True, *SAMPLING, api_name="/text")
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
        client.predict(prompt, "", seconds, 0, True, *SAMPLING, api_name="/text")
    assert "parts are ready" in client.predict(api_name="/model_status")


@pytest.mark.parametrize("endpoint, args, message", [
    ("/story", ({"headers": ["prompt", "seconds"], "data": []}, 0, True, *SAMPLING), "no segments"),
    ("/story", ({"headers": ["prompt", "seconds"], "data": [["calm", -2]]}, 0, True, *SAMPLING), "segment 1 lasts -2"),
    ("/story", ({"headers": ["prompt", "seconds"], "data": [["", 4]]}, 0, True, *SAMPLING), "segment 1: the prompt is empty"),
    ("/continue", (None, False, "", 2, 0, True, *SAMPLING), "upload or record a clip"),
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
        Client(studio_url, verbose=False).predict(handle_file(fake), False, "", 2, 0, True, *SAMPLING, api_name="/continue")


@pytest.mark.parametrize("name", BAD)
def test_continue_tab_refuses_every_bad_audio_file_clearly(studio_url, tmp_path, name):
    from gradio_client import Client, handle_file

    path, message = make(name, tmp_path)
    client = Client(studio_url, verbose=False)
    with pytest.raises(Exception, match=message):
        client.predict(handle_file(path), False, "", 2, 0, True, *SAMPLING, api_name="/continue")
    assert "parts are ready" in client.predict(api_name="/model_status")


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
    assert notes.startswith("**8 notes:** A3 C4 E4 D4 C4 B3 A3 A3")  # the repeated A3: a breath between, so two notes
    assert len(figure.data[0].x) == 112
    client = Client(studio_url, verbose=False)
    *_, (_, progress, _, _, settings, _, _, _) = client.submit(handle_file(_hum_file(tmp_path)), "jazz piano trio", 2, 0, True, *SAMPLING,
                                                         api_name="/hum")
    assert progress.startswith("**done** · 2.0 s") and json.loads(settings)["mode"] == "hum"


@pytest.mark.parametrize("name, message", [("silent", "the hum is silent"), ("not audio", "cannot read notes.wav"),
                                           ("over 10 minutes", "the limit is 600 s")])
def test_hum_tab_refuses_bad_recordings_clearly(studio_url, tmp_path, name, message):
    from gradio_client import Client, handle_file

    path, _ = make(name, tmp_path)
    with pytest.raises(Exception, match=message):
        Client(studio_url, verbose=False).predict(handle_file(path), "jazz", 2, 0, True, *SAMPLING, api_name="/hum")


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
            client.predict("calm piano", "", 1, 0, True, *SAMPLING, api_name="/text")
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    *_, (_, progress, _, _, _, _, _, _) = client.submit("calm piano", "", 1, 0, True, *SAMPLING, api_name="/text")
    assert progress.startswith("**done** · 1.0 s")


def test_out_of_memory_mid_generation_is_one_clear_message(shipped, studio_url, monkeypatch):
    from gradio_client import Client

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(shipped.codec.decoder, "forward", exhausted)  # the codec runs out of memory mid-stream
    client = Client(studio_url, verbose=False)
    with pytest.raises(Exception, match="out of memory while generating 1 s; try a shorter piece"):
        client.predict("calm piano", "", 1, 0, True, *SAMPLING, api_name="/text")
    monkeypatch.undo()
    *_, (_, progress, _, _, _, _, _, _) = client.submit("calm piano", "", 1, 0, True, *SAMPLING, api_name="/text")
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
        for tab in ("Hum", "Story", "Continue", "Live", "History", "Models"):  # every tab renders
            page.get_by_role("tab", name=tab, exact=True).click()
            page.wait_for_timeout(700)  # let plots draw
            page.screenshot(path=str(ARTIFACTS / f"studio-{tab.lower()}.png"))
            assert page.locator("#stop").is_visible() == (tab not in ("History", "Models"))  # no piece is made there: they get the width
        assert "All 7 parts are ready" in page.content()
        _edit_the_story_timeline(page)
        page.get_by_role("tab", name="Text", exact=True).click()
        page.locator("#stop").wait_for(state="visible", timeout=5_000)
        assert page.locator("#device input").input_value() == "cpu"  # where the served model runs
        page.locator("#prompt textarea").fill("tender solo piano, slow tempo, calm")
        duration = page.locator("#duration input[type=number]")
        duration.fill("400")  # past the longest piece: the page says what it does with it
        assert page.locator("#duration-note").inner_text() == "400 s is longer than the longest piece: it is set to 300 s"
        duration.fill("2")
        duration.press("Enter")
        assert page.locator("#duration-note").inner_text() == ""
        started = time.perf_counter()
        page.locator("#generate").click()
        page.get_by_text("done ·").wait_for(timeout=60_000)
        wall = time.perf_counter() - started
        assert page.evaluate("() => window.__hbPlayer.chunks") >= 4  # the live player played the piece chunk by chunk
        assert page.evaluate("() => window.__hbPlayer.firstSoundAt - window.__hbPlayer.clickedAt") < 5_000
        page.locator("#live-player").get_by_text("finished").wait_for(timeout=10_000)
        audio = page.locator("#output-audio audio[src]").first  # the whole piece, to replay and download
        audio.wait_for(state="attached", timeout=10_000)
        page.screenshot(path=str(ARTIFACTS / "studio-text-generated.png"), full_page=True)
        _stop_keeps_the_partial_without_an_error(page)
        _live_takes_a_change_while_it_plays_without_a_stall(page)
        browser.close()
    assert wall < 60


def _edit_the_story_timeline(page):
    """The timeline fills the width in proportion to each block's seconds; resize by the handle,
    move a block (with a landing mark while it moves), delete by the corner ×: the table follows."""
    page.get_by_role("tab", name="Story", exact=True).click()
    page.locator("#stop").wait_for(state="visible", timeout=5_000)  # coming from Models, the settings column comes back and the tab narrows:
    page.wait_for_timeout(500)  # measure the timeline once the layout has settled
    table = page.locator("#story-table")
    seconds = lambda: [t.replace("\xa0", " ") for t in page.locator("#timeline .segment .seconds").all_inner_texts()]
    track = page.locator("#timeline .track").bounding_box()
    assert track["width"] > 0.9 * page.locator("#timeline").bounding_box()["width"]
    assert page.locator("#timeline .segment .name").first.inner_text() == "tender solo piano, slow tempo"  # the prompt, not "1."
    px_per_second = track["width"] / 30  # three 10 s blocks share the width
    edge = page.locator("#timeline .edge").first.bounding_box()
    assert edge["width"] >= 16  # a handle a finger can find
    page.mouse.move(edge["x"] + edge["width"] / 2, edge["y"] + 30)
    page.mouse.down()
    page.mouse.move(edge["x"] + edge["width"] / 2 + 5.2 * px_per_second, edge["y"] + 30, steps=12)  # 5.2 s → snaps to 5.0
    page.mouse.up()
    page.wait_for_function("() => document.querySelector('#story-table').innerText.includes('15')", timeout=10_000)
    assert seconds() == ["15.0 s", "10.0 s", "10.0 s"]
    widths = [page.locator("#timeline .segment").nth(i).bounding_box()["width"] for i in range(3)]
    assert abs(widths[0] / widths[1] - 1.5) < 0.1  # widths scale with the seconds
    first, second = (page.locator("#timeline .segment").nth(i).bounding_box() for i in (0, 1))
    page.mouse.move(first["x"] + first["width"] / 2, first["y"] + 8)  # grabbed near the top, away from the × corner
    page.mouse.down()
    page.mouse.move(second["x"] + second["width"] - 5, second["y"] + 8, steps=10)
    assert page.locator("#timeline .segment.dragging").count() == 1
    assert page.locator("#timeline .segment.drop-before, #timeline .segment.drop-after").count() == 1  # where it will land
    page.screenshot(path=str(ARTIFACTS / "studio-story-dragging.png"))
    page.mouse.up()
    page.wait_for_timeout(1000)
    names = page.locator("#timeline .segment .name").all_inner_texts()
    assert names[0].startswith("energetic rock") and names[1].startswith("tender solo piano")
    rows = table.inner_text()
    assert rows.index("energetic rock") < rows.index("tender solo piano")
    page.locator("#timeline .segment .remove").nth(2).click()
    page.wait_for_function("() => document.querySelectorAll('#timeline .segment').length === 2", timeout=10_000)
    page.wait_for_function("() => !document.querySelector('#story-table').innerText.includes('calm ambient')", timeout=10_000)
    assert seconds() == ["10.0 s", "15.0 s"]
    page.screenshot(path=str(ARTIFACTS / "studio-story-edited.png"))


def _stop_keeps_the_partial_without_an_error(page):
    page.get_by_role("tab", name="Text", exact=True).click()
    duration = page.locator("#duration input[type=number]")
    duration.fill("30")
    duration.press("Enter")
    page.locator("#generate").click()
    page.get_by_text("/ 30 s").first.wait_for(timeout=60_000)
    page.locator("#stop").click()
    page.get_by_text("stopped · kept").wait_for(timeout=30_000)
    page.wait_for_timeout(500)
    assert page.locator(".error:visible").count() == 0 and page.get_by_text("Error", exact=True).count() == 0
    assert '"seed"' in page.locator("#output-audio ~ * , body").first.inner_text()
    page.screenshot(path=str(ARTIFACTS / "studio-stopped.png"), full_page=True)


def _live_takes_a_change_while_it_plays_without_a_stall(page):
    page.get_by_role("tab", name="Live", exact=True).click()
    page.locator("#live-prompt textarea").fill("tender solo piano, slow tempo")
    page.locator("#live-start").click()
    page.wait_for_function("() => window.__hbPlayer.firstSoundAt && window.__hbPlayer.chunks >= 15", timeout=60_000)
    prompt = page.locator("#live-prompt textarea")
    prompt.fill("energetic rock with crunchy guitar and drums")
    prompt.press("Enter")
    page.locator("#live-status").get_by_text("energetic rock").first.wait_for(timeout=20_000)
    chunks = page.evaluate("() => window.__hbPlayer.chunks")
    page.wait_for_function(f"() => window.__hbPlayer.chunks >= {chunks + 20}", timeout=60_000)  # 4 s more of playing
    page.screenshot(path=str(ARTIFACTS / "studio-live.png"), full_page=True)
    page.locator("#live-stop").click()
    page.get_by_text("stopped after").wait_for(timeout=30_000)
    stalls = page.evaluate("() => window.__hbPlayer.stalls")
    assert max(stalls, default=0) <= 0.3, stalls
    assert page.locator(".error:visible").count() == 0


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


def test_the_live_player_gets_every_chunk_once_even_when_updates_merge():
    """PlayerStream: each update repeats the last few chunks with their sequence numbers, so a page
    that renders two updates as one still plays every chunk, once, in order; a new piece is a new stream."""
    import base64

    from studio.player import RESENT_CHUNKS, PlayerStream

    stream = PlayerStream(24_000)
    pieces = [np.full(100, i, np.int16) for i in range(1, 8)]
    updates = [update for p in pieces for update in stream.chunks(p)]
    played, last = [], 0
    for update in updates[1::2] + [stream.end(0.03, stopped=False)]:  # every other update lost: merged with the next
        for sequence, data in update["chunks"]:
            if sequence > last:
                played.append(np.frombuffer(base64.b64decode(data), "<i2")[0])
                last = sequence
    assert played == list(range(1, 8)) and len(updates[-1]["chunks"]) == RESENT_CHUNKS
    assert next(PlayerStream(24_000).chunks(pieces[0]))["stream"] != stream.id
    clip = np.arange(int(1.2 * 24_000)).astype(np.int16)  # a long chunk (a clip to continue) goes in slices, the first at once
    sliced = list(PlayerStream(24_000).chunks(clip))
    sent = [np.frombuffer(base64.b64decode(u["chunks"][-1][1]), "<i2") for u in sliced]
    assert [len(s) for s in sent] == [12_000, 12_000, 4_800] and np.array_equal(np.concatenate(sent), clip)


def test_the_next_text_take_is_prepared_with_the_seed_its_click_will_use(tmp_path):
    """While the user types or listens, the studio draws the next take's opening ahead
    (``MusicLM.prepare``); the click must then ask for exactly that take, or the draft is wasted."""
    class Recorder:
        device = torch.device("cpu")

        def __init__(self):
            self.prepared, self.ran = [], []

        def prepare(self, request):
            self.prepared.append(request)

        def run(self, request):
            self.ran.append(request)
            yield from ()

    model, sampling = Recorder(), (1.0, 0.95, 0.4, 0, 3.0, 1.0, True)
    studio = Studio(model, History(tmp_path / "history"))
    studio.prepare_text("funk, 120 bpm", "", 10, 0, False, *sampling)
    list(studio.text_to_music("funk, 120 bpm", "", 10, 0, False, *sampling))
    assert model.ran[0] == model.prepared[0]  # the same prompt, settings and seed
    studio.prepare_text("funk, 120 bpm", "", 10, 0, False, *sampling)  # the take after it: a new seed
    assert model.prepared[1].settings.seed != model.ran[0].settings.seed
    studio.prepare_text("funk, 120 bpm", "", 10, 7, True, *sampling)
    assert model.prepared[2].settings.seed == 7  # a locked seed is the one prepared
    studio.prepare_text("", "", 10, 0, False, *sampling)  # no prompt yet: nothing to prepare
    studio._generating = 1
    studio.prepare_text("funk, 120 bpm", "", 10, 0, False, *sampling)  # a piece is being made: it keeps the cores
    assert len(model.prepared) == 3
