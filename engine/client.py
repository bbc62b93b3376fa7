"""The command line's way to a running ``python -m engine serve``: standard library only, so a
``generate`` answered by the server never imports torch (1.1–1.6 s on a 2-core CPU, most of a
one-shot command's wait for its first sound).

One request per connection, one JSON line each way: the client sends its arguments, working
folder and age; the server answers with the result ``generate`` prints, or an error and its exit
code. Anything else (no server, a stale socket or one another user owns, another device,
``--help``, ``--in-process``) and the command runs in this process as before.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
from pathlib import Path

IN_PROCESS_FLAG = "--in-process"


def server_address() -> Path:
    """Where this user's server listens: ``$HUMMINGBIRD_SOCKET``, else a socket in the user's
    runtime folder (or the temporary folder) named for the user."""
    if os.environ.get("HUMMINGBIRD_SOCKET"):
        return Path(os.environ["HUMMINGBIRD_SOCKET"])
    folder = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(folder) / f"hummingbird-{os.getuid()}.sock"


def process_age_s() -> float | None:
    """Seconds since this process started, as a user waiting at the prompt counts them (None
    where /proc does not say)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        return float(Path("/proc/uptime").read_text().split()[0]) - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def read_line(conn: socket.socket) -> bytes:
    chunks = []
    while not chunks or not chunks[-1].endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def send_line(conn: socket.socket, message: dict) -> None:
    conn.sendall(json.dumps(message, ensure_ascii=False).encode() + b"\n")


def through_server(argv: list[str]) -> int | None:
    """Run ``python -m engine generate …`` on the running server: the exit code, or None to run
    it here."""
    if not argv or argv[0] != "generate" or IN_PROCESS_FLAG in argv or {"-h", "--help"} & set(argv):
        return None
    address = server_address()
    try:
        if address.stat().st_uid != os.getuid():  # someone else's socket at our address: never hand them a request
            return None
    except OSError:  # no server
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(str(address))
            send_line(conn, {"argv": argv[1:], "cwd": os.getcwd(), "age_s": process_age_s()})
            reply = json.loads(read_line(conn) or b"null")
    except (OSError, ValueError):  # a stale socket, or the server went away mid-request: this process does it
        return None
    if not isinstance(reply, dict) or "declined" in reply:
        return None
    if "error" in reply:
        print(reply["error"], file=sys.stderr)
        return int(reply.get("code", 1))
    print(json.dumps(reply["result"], ensure_ascii=False))
    return 0
