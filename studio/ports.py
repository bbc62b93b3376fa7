"""Local ports for the studio's scripts and tests: a free one to serve on, and a wait until a
server answers there (a plain TCP connect to this machine; nothing leaves it)."""
from __future__ import annotations

import socket
import subprocess
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Return once something accepts connections on ``port``; stop ``proc`` and raise if it exits
    or ``timeout`` passes first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the studio exited with code {proc.returncode} before serving")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"the studio did not start within {timeout:.0f} s")
