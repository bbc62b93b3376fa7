"""Start the hummingbird studio: ``python launch.py [--host 127.0.0.1] [--port 7860] [--device auto|cpu|cuda] [--share] [--desktop]``."""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import sys
import tempfile

# Offline by design: no telemetry, no hub look-ups.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
MAX_UPLOAD = "50mb"  # the engine refuses larger audio anyway; gradio then never stores it


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="hummingbird studio")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--share", action="store_true", help="ask Gradio for a public link (needs the internet)")
    p.add_argument("--auth", metavar="USER:PASS", help="require a login (recommended with --host 0.0.0.0 or --share)")
    p.add_argument("--desktop", action="store_true", help="record and play on this computer's sound card (sounddevice)")
    args = p.parse_args(argv)
    if args.auth and ":" not in args.auth:
        p.error("--auth must look like user:password")
    from engine import resolve_device

    try:
        resolve_device(args.device)
    except ValueError as exc:
        p.error(f"--device {args.device}: {exc}")
    return args


def private_uploads() -> str:
    """Uploads and recordings go to a folder only this user can read (mkdtemp: mode 0700), removed
    when the studio stops — also on SIGTERM, which would otherwise skip the clean-up."""
    folder = tempfile.mkdtemp(prefix="hummingbird-uploads-")
    os.environ["GRADIO_TEMP_DIR"] = folder  # read by gradio at import, so before it is imported
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"uploads are kept in {folder} and removed on exit", file=sys.stderr)
    return folder


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1") or args.share:
        print(
            "warning: the studio will be reachable from other machines"
            + ("" if args.auth else "; consider --auth user:password"),
            file=sys.stderr,
        )
    private_uploads()
    from studio.app import LAUNCH_OPTIONS, build_app

    desktop = args.desktop
    if desktop:
        from studio.desktop import available

        reason = available()
        if reason:
            print(f"--desktop: {reason}; recording and playing here are off, the browser still plays everything", file=sys.stderr)
            desktop = False
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    app = build_app(warm_up=True, desktop=desktop, device=args.device)
    try:
        app.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth, max_file_size=MAX_UPLOAD, **LAUNCH_OPTIONS)
    except Exception as exc:  # share links need the internet; say so and keep serving locally
        if not args.share:
            raise
        print(f"could not create a share link ({exc}); serving locally only", file=sys.stderr)
        app.launch(server_name=args.host, server_port=args.port, share=False, auth=auth, max_file_size=MAX_UPLOAD, **LAUNCH_OPTIONS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
