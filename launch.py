"""Start the hummingbird studio: ``python launch.py [--host 127.0.0.1] [--port 7860] [--device auto|cpu|cuda] [--share] [--desktop]``."""
from __future__ import annotations

import argparse
import os
import sys

# Offline by design: no telemetry, no hub look-ups.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


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
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda: no CUDA GPU is visible; use --device cpu or auto")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1") or args.share:
        print(
            "warning: the studio will be reachable from other machines"
            + ("" if args.auth else "; consider --auth user:password"),
            file=sys.stderr,
        )
    from studio.app import build_app

    desktop = args.desktop
    if desktop:
        from studio.desktop import available

        reason = available()
        if reason:
            print(f"--desktop: {reason}; recording and playing here are off, the browser still plays everything", file=sys.stderr)
            desktop = False
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    app = build_app(warm_up=True, desktop=desktop)
    try:
        app.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth)
    except Exception as exc:  # share links need the internet; say so and keep serving locally
        if not args.share:
            raise
        print(f"could not create a share link ({exc}); serving locally only", file=sys.stderr)
        app.launch(server_name=args.host, server_port=args.port, share=False, auth=auth)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
