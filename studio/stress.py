"""Load test of the running studio: ``python -m studio.stress --json``.

Starts ``launch.py`` in its own process (history in a temp folder), then
1. ``--users`` gradio_client users ask for ``--seconds`` clips at the same moment: each must get
   its audio or a clear "busy" answer from the bounded queue — never a crash or a hang;
2. ``--sequential`` generations one after another, reading the server's resident memory before
   and after: growth shows leaks (caches, history, plots kept alive).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .ports import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parents[1]
SAMPLING = (1.0, 0.95, 0.4, 0, 3.0, 1.0)  # temperatures, top-k, guidance on stages 1 and 2


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _start(port: int, history: str) -> subprocess.Popen:
    env = {**os.environ, "HUMMINGBIRD_HISTORY": history}
    proc = subprocess.Popen([sys.executable, "launch.py", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until_serving(port, proc)
    return proc


def run(users: int = 8, seconds: float = 5.0, sequential: int = 50) -> dict:
    from gradio_client import Client

    port = free_port()
    history = tempfile.TemporaryDirectory(prefix="hummingbird-stress-")  # the pieces it makes are not kept
    proc = _start(port, history.name)
    url = f"http://127.0.0.1:{port}/"
    try:
        def one(i: int) -> str:
            try:
                out = Client(url, verbose=False).predict(f"stress test {i}: calm piano", "", seconds, i, True, *SAMPLING, api_name="/text")
                return "ok" if out[1].startswith("**done**") else "wrong"
            except Exception as exc:  # the answer a user would see
                return "busy" if "queue is full" in str(exc).lower() or "busy" in str(exc).lower() else f"error: {exc}"

        t0 = time.perf_counter()
        with ThreadPoolExecutor(users) as pool:
            answers = list(pool.map(one, range(users)))
        concurrent_s = time.perf_counter() - t0
        client = Client(url, verbose=False)
        client.predict("warm", "", seconds, 0, True, *SAMPLING, api_name="/text")
        before = _rss_mb(proc.pid)
        t0 = time.perf_counter()
        failures = 0
        for i in range(sequential):
            try:
                client.predict(f"sequential {i}", "", seconds, i, True, *SAMPLING, api_name="/text")
            except Exception:
                failures += 1
        after = _rss_mb(proc.pid)
        still_serving = "parts are" in client.predict(api_name="/model_status")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        history.cleanup()
    return {
        "concurrent": {"users": users, "seconds_each": seconds, "ok": answers.count("ok"), "busy": answers.count("busy"),
                       "failures": [a for a in answers if a not in ("ok", "busy")], "wall_s": round(concurrent_s, 1)},
        "sequential": {"requests": sequential, "failures": failures, "rss_before_mb": round(before, 1),
                       "rss_after_mb": round(after, 1), "rss_growth_mb": round(after - before, 1), "wall_s": round(time.perf_counter() - t0, 1)},
        "still_serving": still_serving,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--sequential", type=int, default=50)
    p.add_argument("--json", action="store_true", help="print the result as JSON (the default)")
    args = p.parse_args()
    print(json.dumps(run(args.users, args.seconds, args.sequential)))


if __name__ == "__main__":
    main()
