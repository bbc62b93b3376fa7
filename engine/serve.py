"""``python -m engine serve``: the models stay loaded between commands.

A one-shot ``generate`` spends most of its wait before the first note on starting Python, importing
torch and loading seven models; the generator's own part is a quarter of a second. While this
server runs, ``python -m engine generate …`` (engine/client.py) hands its arguments over a Unix
socket that only this user can open, and the server makes the piece with the models it holds, as
the studio does. It answers one request at a time, loads the checkpoints again when they change
on disk, and stops after ``idle_minutes`` without a request (or on Ctrl-C, SIGTERM,
``serve --stop``, or when the engine's code changes under it), removing its socket. From the
moment it starts loading it holds a lock beside the socket, so that commands never start a second
one while it loads.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import select
import signal
import socket
import time
from pathlib import Path
from typing import Callable, Iterator

from .checkpoints import CHECKPOINT_DIR
from .client import LOCK_HANDED, code_stamp, lock_address, open_own, read_line, send_line, server_address, take_lock
from .generate.musiclm import MusicLM
from .generate.settings import resolve_device


class ServerError(Exception):
    """The server cannot start (another one already loads or listens there)."""


class Declined(Exception):
    """A request this server leaves to the command itself (it asks for another device)."""


def _checkpoint_stamp(root: Path) -> tuple:
    """What changes when a checkpoint is exported again."""
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in root.glob("*") if p.is_file()))


def _refuse_if_served(address: Path) -> None:
    """A ServerError if a server listens at ``address``; a stale socket left by one that died is removed."""
    if address.exists():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(address))
            except OSError:
                address.unlink()
            else:
                raise ServerError(f"a server already listens at {address}")


@contextlib.contextmanager
def _only_server(address: Path) -> Iterator[None]:
    """This address's lock, held for the server's whole life (loading included); taken over from
    the command that started this server, where one did."""
    address.parent.mkdir(parents=True, exist_ok=True)
    handed = os.environ.pop(LOCK_HANDED, "")
    descriptor = int(handed) if handed.isdigit() else open_own(lock_address(address))
    if descriptor is None:
        raise ServerError(f"cannot take the lock beside {address} (another user's file is there)")
    with os.fdopen(descriptor, "w") as lock:
        if not take_lock(lock):
            raise ServerError(f"a server already loads or listens at {address}")
        yield


@contextlib.contextmanager
def _listening(address: Path) -> Iterator[socket.socket]:
    """A Unix socket at ``address`` that only this user can reach."""
    _refuse_if_served(address)  # again: another may have started while this one loaded
    address.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_mask = os.umask(0o177)  # the socket is created 0600: nobody else can ask this server for anything
    try:
        sock.bind(str(address))
    finally:
        os.umask(old_mask)
    sock.listen(8)
    try:
        yield sock
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            address.unlink()


def serve(answer: Callable, device: str = "auto", idle_minutes: float = 30.0, address: Path | None = None, root: Path = CHECKPOINT_DIR,
          log=print) -> dict:
    """Load, then answer ``generate`` requests until idle for ``idle_minutes``, warming up each
    generation path while none waits.
    ``answer(argv, model, device, waited_s, wanted) → result``: the command (cli's ``generate``,
    passed in so that this module does not import the command line)."""
    address = address or server_address()
    _refuse_if_served(address)  # before a minute of loading, not after
    with _only_server(address):
        return _serve_locked(answer, device, idle_minutes, address, root, log)


def _loaded(root: Path, device: str) -> tuple[MusicLM, list[Callable]]:
    """The models, in line at first, and what to do while nobody asks: start the upstream stages'
    processes, then warm up each generation path."""
    model = MusicLM.load(root, device=device, parallel=False)
    return model, [model.start_upstream, *model.warm_up_steps()]


def _serve_locked(answer: Callable, device: str, idle_minutes: float, address: Path, root: Path, log) -> dict:
    target = resolve_device(device).type
    log(f"loading the models on {target}…")
    (model, warming), stamp, code = _loaded(root, target), _checkpoint_stamp(root), code_stamp()
    served, stopped = 0, "idle"
    previous_handler = signal.signal(signal.SIGTERM, _stop)
    with _listening(address) as sock:  # listening before the warm-up: a command that waits for it is answered after one part of it
        sock.settimeout(idle_minutes * 60)
        log(f"serving {target} generation at {address}; stops after {idle_minutes:g} idle minutes")
        try:
            while True:
                while warming and not select.select([sock], [], [], WARM_UP_GRACE_S)[0]:  # warm up while nobody asks
                    warming.pop(0)()
                try:
                    conn, _ = sock.accept()
                except socket.timeout:
                    break
                with conn:
                    conn.settimeout(None)
                    if _checkpoint_stamp(root) != stamp:
                        model.close()
                        (model, warming), stamp = _loaded(root, target), _checkpoint_stamp(root)
                    try:
                        made, line = _reply(conn, model, target, answer, code)
                    except OSError as exc:  # the command hung up (Ctrl-C at the prompt): the next one is served all the same
                        made, line = 0, f"the command hung up: {exc}"
                    if made is STOP:
                        stopped = line
                        log(line)
                        break
                    served += made
                    if line:
                        log(line)
        except KeyboardInterrupt:
            stopped = "stopped"
        finally:
            signal.signal(signal.SIGTERM, previous_handler)
    model.close()
    return {"served": served, "stopped": stopped, "address": str(address)}


def _still_there(conn: socket.socket) -> bool:
    """Whether the command that sent this request still waits for its answer (its end of the
    socket is not closed)."""
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:  # nothing to read, and no end of stream: it waits
        return True
    except OSError:
        return False


def _stop(*_) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the server as Ctrl-C does: its socket removed


STOP = object()  # what _reply makes of a ``serve --stop``
WARM_UP_GRACE_S = 0.5  # a script's next command connects within this after the last one ends: it is not kept behind a warm-up


def _reply(conn: socket.socket, model: MusicLM, device: str, answer: Callable, code: int) -> tuple[int | object, str]:
    """One request: (1 when a piece was made, or STOP; one line for the server's log). ``code``:
    the engine's code stamp when this server started."""
    raw = read_line(conn)
    if not raw:  # a probe (another server checking that this one lives): nothing to answer
        return 0, ""
    try:
        message = json.loads(raw)
        if message.get("stop"):
            send_line(conn, {"stopped": True})
            return STOP, "stopped on request (serve --stop)"
        if code_stamp() != code:  # this server runs the code it started with: the command runs the new code itself
            send_line(conn, {"declined": "code"})
            return STOP, "stopped: the engine's code changed since it started"
        argv, cwd, started_at = list(message["argv"]), str(message["cwd"]), float(message.get("started_at") or time.time())
    except (ValueError, KeyError, TypeError, AttributeError):
        send_line(conn, {"error": "error: a request the server could not read", "code": 2})
        return 0, "refused: a request it could not read"
    waited_s = lambda: time.time() - started_at  # noqa: E731: as the client's user counts it, from the command's start
    errors, here = io.StringIO(), os.getcwd()
    try:
        os.chdir(cwd)  # the client's relative paths (--out, clips) mean what they mean there
        with contextlib.redirect_stderr(errors):
            result = answer(argv, model, device, waited_s, lambda: _still_there(conn))
    except SystemExit as exc:  # an argument the parser refused: its one line
        send_line(conn, {"error": errors.getvalue().strip(), "code": exc.code if isinstance(exc.code, int) else 2})
        return 0, f"refused: {errors.getvalue().strip()}"
    except ConnectionAbortedError as exc:  # the command was stopped at its prompt: no file it no longer waits for
        return 0, f"the command hung up: {exc}"
    except Declined:  # another device than this server's: the client runs it itself
        send_line(conn, {"declined": "device"})
        return 0, "declined: another device"
    except Exception as exc:  # noqa: BLE001: one bad request must not stop the server
        send_line(conn, {"error": f"error: {exc}", "code": getattr(exc, "exit_code", 1)})
        return 0, f"refused: {exc}"
    finally:
        os.chdir(here)
    send_line(conn, {"result": result})
    return 1, f"made {result['out']} ({result['mode']}, first chunk {result['first_chunk_since_start_s']} s after the command started)"
