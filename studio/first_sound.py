"""Click to first sound, measured in a real browser: ``python -m studio.first_sound --json``.

Starts the studio on the shipped checkpoints (warmed up, as ``launch.py`` does), opens it in
Debian's chromium through Playwright, types a prompt, clicks Generate, and times until the page's
audio element starts playing; repeats and reports every figure with a screenshot of the result.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from engine import MusicLM

from .app import build_app
from .history import History
from .ports import free_port

ARM = """el => {  // flag the first 'playing' event of the output's audio element, even one created later
  window.__playing = false;
  const watch = a => a.addEventListener('playing', () => { window.__playing = true; }, {once: true});
  el.querySelectorAll('audio').forEach(watch);
  new MutationObserver(records => records.forEach(r => r.addedNodes.forEach(n => {
    if (n.tagName === 'AUDIO') watch(n); else if (n.querySelectorAll) n.querySelectorAll('audio').forEach(watch);
  }))).observe(el, {childList: true, subtree: true});
}"""


def measure(repeats: int = 3, seconds: float = 10.0, screenshot: Path | None = None) -> dict:
    from playwright.sync_api import sync_playwright

    port = free_port()
    t0 = time.perf_counter()
    app = build_app(MusicLM.load().warm_up(), History(Path(tempfile.mkdtemp(prefix="hummingbird-bench-"))))
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    ready_s = time.perf_counter() - t0
    firsts, totals = [], []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--autoplay-policy=no-user-gesture-required"])
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#prompt textarea").fill("calm violin melody over a distorted guitar riff, 90 bpm")
            duration = page.locator("#duration input[type=number]")
            duration.fill(f"{seconds:g}")
            duration.press("Enter")
            for _ in range(repeats):
                page.locator("#output-audio").evaluate(ARM)
                started = time.perf_counter()
                page.locator("#generate").click()
                page.wait_for_function("() => window.__playing", timeout=60_000, polling=20)
                firsts.append(round(time.perf_counter() - started, 3))
                page.get_by_text("done ·").wait_for(timeout=600_000)
                totals.append(round(time.perf_counter() - started, 3))
                page.wait_for_timeout(500)
            if screenshot:
                page.screenshot(path=str(screenshot), full_page=True)
            browser.close()
    finally:
        app.close()
    return {"click_to_first_sound_s": firsts, "click_to_done_s": totals, "seconds": seconds, "studio_ready_s": round(ready_s, 2),
            "screenshot": str(screenshot) if screenshot else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--screenshot", type=Path, default=Path("test-artifacts/first-sound.png"))
    p.add_argument("--json", action="store_true", help="print the result as JSON (the default)")
    args = p.parse_args()
    args.screenshot.parent.mkdir(parents=True, exist_ok=True)
    print(json.dumps(measure(args.repeats, args.seconds, args.screenshot)))


if __name__ == "__main__":
    main()
