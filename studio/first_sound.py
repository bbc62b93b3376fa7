"""Click to first sound, measured in a real browser: ``python -m studio.first_sound --json``.

Starts the studio on the shipped checkpoints (warmed up, as ``launch.py`` does), opens it in
Debian's chromium through Playwright and, in every tab that makes music (Text with and without a
bpm, filled in or typed key by key, Hum, Story, Continue), clicks Generate ``--repeats`` times. For
each click it reads the live player's own clock (``window.__hbPlayer``, studio/player/behaviour.js):
from the click to the moment the first chunk starts to sound on the Web Audio clock, and every stall
(a chunk that arrived after the previous one had finished playing) until the piece has played out.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from engine import MusicLM, save_audio, story_json

from .app import LAUNCH_OPTIONS, build_app
from .history import History
from .ports import free_port

CASES = {  # tab, what to fill, and the button
    "text": ("Text", "tender solo piano, calm and slow", "#generate"),
    "text with a bpm": ("Text", "calm violin melody over a distorted guitar riff, 90 bpm", "#generate"),
    # typed key by key, the first click the moment the last key is up: the page prepares each prompt as it is typed
    "text with a bpm, typed": ("Text", "slow blues shuffle with harmonica, 75 bpm", "#generate"),
    "hum": ("Hum", None, "#generate-hum"),
    "story": ("Story", None, "#generate-story"),
    "continue": ("Continue", None, "#generate-continue"),
}


def _inputs(folder: Path, seconds: float) -> dict[str, Path]:
    """A hum, a story of three segments and a clip to continue, written to ``folder``."""
    hum, story, clip = folder / "hum.wav", folder / "story.json", folder / "clip.wav"
    t = np.arange(int(0.45 * 24_000)) / 24_000
    notes = [0.3 * np.sin(2 * np.pi * 440 * 2 ** ((p - 69) / 12) * t) * np.minimum(1, np.minimum(t, t[-1] - t) / 0.03)
             for p in (57, 60, 64, 62, 60, 59, 57, 57)]
    save_audio(hum, np.concatenate([np.concatenate([n, np.zeros(int(0.05 * 24_000))]) for n in notes]).astype(np.float32))
    story.write_text(story_json([("tender solo piano", seconds / 3), ("energetic rock with drums", seconds / 3),
                                 ("calm ambient pad", seconds / 3)]))
    t = np.arange(3 * 24_000) / 24_000
    save_audio(clip, (0.2 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t)) / 2).astype(np.float32))
    return {"hum": hum, "story": story, "clip": clip}


TYPING_DELAY_MS = 60  # between keys: a fast typist


def _prepare(page, case: str, files: dict[str, Path], seconds: float) -> None:
    tab, prompt, _ = CASES[case]
    typed = case.endswith(", typed")
    page.get_by_role("tab", name=tab, exact=True).click()
    if prompt and not typed:
        page.locator("#prompt textarea").fill(prompt)
    if tab == "Hum" and not page.locator("#hum audio").count():
        page.locator("#hum input[type=file]").set_input_files(str(files["hum"]))
        page.wait_for_timeout(1500)  # the contour is drawn
    if tab == "Story":
        page.locator("input[type=file][accept*='.json']").set_input_files(str(files["story"]))
        page.wait_for_function("() => document.querySelector('#story-table').innerText.includes('ambient')", timeout=20_000)
    if tab == "Continue" and not page.locator("#clip audio").count():
        page.locator("#clip input[type=file]").set_input_files(str(files["clip"]))
        page.wait_for_timeout(1500)
    if tab != "Story":
        duration = page.locator("#duration input[type=number]")
        duration.fill(f"{seconds:g}")
        duration.press("Enter")
    if prompt and typed:
        page.locator("#prompt textarea").fill("")
        page.wait_for_timeout(500)
        page.locator("#prompt textarea").press_sequentially(prompt, delay=TYPING_DELAY_MS)


class ServerSide(logging.Handler):
    """The studio's own account of each click: when its first chunk was yielded (epoch seconds)
    and how long the handler had taken to build the request and to make that chunk."""
    def __init__(self):
        super().__init__(logging.INFO)
        self.firsts: list[tuple[float, float, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("first chunk"):
            self.firsts.append((record.created, record.args[1], record.args[2]))


def measure(repeats: int = 5, seconds: float = 6.0, cases: tuple[str, ...] = tuple(CASES), screenshot: Path | None = None) -> dict:
    from playwright.sync_api import sync_playwright

    server = ServerSide()
    studio_log = logging.getLogger("hummingbird.studio")
    studio_log.addHandler(server)
    studio_log.setLevel(logging.INFO)

    port = free_port()
    t0 = time.perf_counter()
    app = build_app(MusicLM.load().warm_up(), History(Path(tempfile.mkdtemp(prefix="hummingbird-bench-"))))
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **LAUNCH_OPTIONS)
    ready_s = time.perf_counter() - t0
    files = _inputs(Path(tempfile.mkdtemp(prefix="hummingbird-inputs-")), seconds)
    results = {}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--autoplay-policy=no-user-gesture-required"])
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(f"http://127.0.0.1:{port}/")
            for case in cases:
                _prepare(page, case, files, seconds)
                firsts, stalls, arrivals, splits = [], [], [], []
                server.firsts.clear()
                for _ in range(repeats):
                    page.evaluate("() => Object.assign(window.__hbPlayer, {firstSoundAt: null, clickedAt: null, stalls: []})")
                    page.locator(CASES[case][2]).click()
                    page.wait_for_function("() => window.__hbPlayer.firstSoundAt !== null && window.__hbPlayer.clickedAt !== null",
                                           timeout=120_000, polling=10)
                    page.get_by_text("done ·").wait_for(timeout=600_000)
                    page.wait_for_function("() => window.__hbPlayer.remaining() === 0", timeout=600_000, polling=50)
                    player = page.evaluate("() => ({first: window.__hbPlayer.firstSoundAt - window.__hbPlayer.clickedAt,"
                                           " stalls: window.__hbPlayer.stalls, arrivals: window.__hbPlayer.arrivals,"
                                           " clicked: performance.timeOrigin + window.__hbPlayer.clickedAt})")
                    if server.firsts and player["arrivals"]:  # click → handler, the handler's own time, its first chunk → the page
                        yielded, request, generation = server.firsts[-1]
                        clicked, arrived = player["clicked"] / 1000, (player["clicked"] + player["arrivals"][0]) / 1000
                        splits.append([round(yielded - request - generation - clicked, 3), round(request + generation, 3), round(arrived - yielded, 3)])
                    arrivals.append([round(a / 1000, 2) for a in player["arrivals"]])
                    firsts.append(round(player["first"] / 1000, 3))
                    stalls.extend(player["stalls"])
                results[case] = {"click_to_first_sound_s": firsts, "median_s": round(float(np.median(firsts)), 3),
                                 "worst_s": max(firsts), "stalls": len(stalls), "longest_stall_s": round(max(stalls, default=0.0), 3),
                                 "chunk_arrivals_s": arrivals, "click_to_handler_handler_to_chunk_chunk_to_page_s": splits}
            if screenshot:
                page.screenshot(path=str(screenshot), full_page=True)
            browser.close()
    finally:
        with contextlib.redirect_stdout(sys.stderr):  # gradio says it closes on stdout, where the JSON goes
            app.close()
    return {"cases": results, "seconds": seconds, "repeats": repeats, "studio_ready_s": round(ready_s, 2),
            "measure": "click (pointerdown) to the first chunk starting on the page's Web Audio clock; stalls: chunks that "
                       "arrived after the previous one had played out; split: from the click to the studio's handler, the "
                       "handler to its first chunk, and that chunk's way to the page", "screenshot": str(screenshot) if screenshot else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seconds", type=float, default=6.0, help="length of each piece (a story: in all)")
    p.add_argument("--cases", nargs="+", choices=tuple(CASES), default=tuple(CASES))
    p.add_argument("--screenshot", type=Path, default=Path("test-artifacts/first-sound.png"))
    p.add_argument("--json", action="store_true", help="print the result as JSON (the default)")
    args = p.parse_args()
    args.screenshot.parent.mkdir(parents=True, exist_ok=True)
    print(json.dumps(measure(args.repeats, args.seconds, tuple(args.cases), args.screenshot)))


if __name__ == "__main__":
    main()
