"""The command line's way to a running ``python -m engine serve``: standard library only, so a
``generate`` answered by the server never imports torch (1.1–1.6 s on a 2-core CPU, most of a
one-shot command's wait for its first sound).

One request per connection, one JSON line each way: the client sends its arguments, working
folder and start time; the server answers with the result ``generate`` prints, or an error and its exit
code. Anything else (no server, a stale socket or one another user owns, another device,
``--help``, ``--in-process``) and the command runs in this process as before.

A command that ran in its own process then leaves a server behind it (as Gradle's and Bazel's
commands leave their daemons), so that the next command starts in a fraction of a second; it ends
after 30 idle minutes, ``python -m engine serve --stop`` ends it at once, and
``HUMMINGBIRD_SERVER=off`` keeps it from starting.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .paths import CHECKPOINT_DIR, ENGINE

IN_PROCESS_FLAG = "--in-process"
SERVER_SWITCH = "HUMMINGBIRD_SERVER"  # "off": no command starts a server behind it
IDLE_MINUTES = 30.0  # how long a server waits for the next command before it ends
LOCK_HANDED = "HUMMINGBIRD_SERVER_LOCK"  # the descriptor of the lock a command took for the server it starts
START_WAIT_S = 30.0  # how long a command waits for a server that is still loading, rather than load the models beside it


def server_address() -> Path:
    """Where this user's server for this checkout's models listens: ``$HUMMINGBIRD_SOCKET``, else
    a socket in the user's runtime folder (or the temporary folder) named for the user, the engine's
    folder and the checkpoint folder, so that another checkout or another set of checkpoints is
    never answered by this one's server."""
    if os.environ.get("HUMMINGBIRD_SOCKET"):
        return Path(os.environ["HUMMINGBIRD_SOCKET"])
    folder = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    models = hashlib.sha256(f"{ENGINE}\0{CHECKPOINT_DIR.resolve()}".encode()).hexdigest()[:12]
    return Path(folder) / f"hummingbird-{os.getuid()}-{models}.sock"


def code_stamp() -> int:
    """What changes when the engine's code does (a pull, an edit): a server started before it
    would answer with the old code."""
    return max((path.stat().st_mtime_ns for path in ENGINE.rglob("*.py")), default=0)


def lock_address(address: Path) -> Path:
    """The file a server holds locked from the moment it starts loading until it ends, so that a
    second one is never loaded beside it."""
    return address.with_name(address.name + ".lock")


def log_address(address: Path) -> Path:
    """Where a server started behind a command writes what it did."""
    return address.with_name(address.name + ".log")


def open_own(path: Path, flags: int = os.O_WRONLY) -> int | None:
    """A descriptor of ``path`` (created 0600) if this user owns it, else None: in a shared
    temporary folder another user could have put a file or a link there first."""
    try:
        descriptor = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError:
        return None
    if os.fstat(descriptor).st_uid != os.getuid():
        os.close(descriptor)
        return None
    return descriptor


def server_starting_or_running(address: Path) -> bool:
    """Whether a server holds this address's lock (loading, or listening)."""
    lock = open_own(lock_address(address))
    if lock is None:
        return False
    try:
        return not take_lock(lock)
    finally:
        os.close(lock)


def take_lock(descriptor) -> bool:
    """Take the server's lock on ``descriptor`` if nobody holds it (False: a server has it)."""
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _device_asked(argv: list[str]) -> str:
    """The ``--device`` a command asked for: the server it starts runs there."""
    for i, arg in enumerate(argv):
        if arg == "--device" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--device="):
            return arg.split("=", 1)[1]
    return "auto"


def start_server_behind(argv: list[str]) -> str | None:
    """After a ``generate`` that loaded the models in its own process: start a server in the
    background for the commands that follow, unless one is loading or listening already, the
    user switched it off, or the command asked to run in process. The line to tell the user, or
    None when nothing was started."""
    if not _servable(argv) or os.environ.get(SERVER_SWITCH, "").lower() in ("off", "0", "no", "false"):
        return None
    address = server_address()
    with contextlib.suppress(OSError):
        address.parent.mkdir(parents=True, exist_ok=True)
    lock = open_own(lock_address(address))
    if lock is None:  # nowhere to start it: the next command runs in its own process, as this one did
        return None
    try:
        if not take_lock(lock):  # taken here and handed to the server: the next command waits for it from now on
            return None  # one loads or listens already
        log = open_own(log_address(address), os.O_WRONLY | os.O_APPEND)
        if log is None:
            return None
        try:
            subprocess.Popen([sys.executable, "-m", "engine", "serve", "--device", _device_asked(argv), "--idle-minutes", f"{IDLE_MINUTES:g}"],
                             cwd=ENGINE.parent, stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(lock,),
                             env={**os.environ, LOCK_HANDED: str(lock)}, start_new_session=True)  # not ended by this shell's Ctrl-C
        finally:
            os.close(log)
    except OSError:  # the server could not be started: the next command runs in its own process, as this one did
        return None
    finally:
        os.close(lock)  # the server's copy keeps it locked
    return (f"started a model server so that the next command begins sooner (ends after {IDLE_MINUTES:g} idle minutes; "
            f"stop it: python -m engine serve --stop; never start one: {SERVER_SWITCH}=off)")


def stop_server() -> dict:
    """Ask this user's server to end (``python -m engine serve --stop``)."""
    address = server_address()
    reply = _ask(address, {"stop": True})
    if reply is None:
        with contextlib.suppress(OSError):
            if address.stat().st_uid != os.getuid():
                return {"stopped": False, "why": f"the socket at {address} belongs to another user"}
        return {"stopped": False, "why": f"no server listens at {address}"}
    log = log_address(address)  # what a server started behind a command wrote
    return {"stopped": bool(reply.get("stopped")), "address": str(address), **({"log": str(log)} if log.exists() else {})}


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


def _servable(argv: list[str]) -> bool:
    """Whether a command is one a server may answer: ``generate``, not ``--help`` or ``--in-process``."""
    return bool(argv) and argv[0] == "generate" and IN_PROCESS_FLAG not in argv and not {"-h", "--help"} & set(argv)


def _ask(address: Path, message: dict) -> dict | None:
    """One message to the server at ``address`` and its one-line answer; None where no server of
    this user's answers (no socket, a stale one, one another user owns: never hand them anything,
    or it went away mid-request)."""
    try:
        if address.stat().st_uid != os.getuid():
            return None
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(str(address))
            send_line(conn, message)
            reply = json.loads(read_line(conn) or b"null")
    except (OSError, ValueError):
        return None
    return reply if isinstance(reply, dict) else None


def _wait_while_loading(address: Path) -> None:
    """A server that is loading answers sooner than this process could load the models beside it
    on the same cores: wait until it listens (or gives up, or START_WAIT_S pass)."""
    deadline = time.monotonic() + START_WAIT_S
    while not address.exists() and server_starting_or_running(address) and time.monotonic() < deadline:
        time.sleep(0.05)


def through_server(argv: list[str]) -> int | None:
    """Run ``python -m engine generate …`` on the running server: the exit code, or None to run
    it here."""
    if not _servable(argv):
        return None
    address = server_address()
    _wait_while_loading(address)
    age = process_age_s()  # the server counts the user's wait from this process's start, time in its queue included
    reply = _ask(address, {"argv": argv[1:], "cwd": os.getcwd(), "started_at": time.time() - (age or 0.0)})
    if reply is None or "declined" in reply:
        return None
    if "error" in reply:
        print(reply["error"], file=sys.stderr)
        return int(reply.get("code", 1))
    print(json.dumps(reply["result"], ensure_ascii=False))
    return 0
