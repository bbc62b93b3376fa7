"""``python -m engine …``: the command-line face of the engine (DESIGN §4).

Bad input exits with code 2 and one clear line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


class UsageError(Exception):
    """A problem with what the user asked for; reported as one line, exit code 2."""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _data(args: argparse.Namespace) -> dict:
    if args.data_command == "build":
        from .data.build import BuildConfig, build
        from .data.render import SynthUnavailable

        try:
            return build(BuildConfig(Path(args.out), args.hours, args.seed, args.clip_seconds, args.workers), progress=not args.quiet)
        except SynthUnavailable as exc:
            raise UsageError(str(exc)) from None
    if args.data_command == "melodies":
        from .data.melodies import build_index

        return build_index(workers=args.workers)
    raise UsageError(f"unknown data command {args.data_command!r}")


def _models(args: argparse.Namespace) -> dict:
    from .models import model_status

    return {"models": model_status()}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description="hummingbird: MusicLM, offline.")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="build the synthetic training corpus")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    b = data_sub.add_parser("build", help="render a captioned corpus with ground truth")
    b.add_argument("--out", required=True, help="output folder (kept out of git)")
    b.add_argument("--hours", type=_positive_float, default=1.0)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--clip-seconds", type=_positive_float, default=20.0)
    b.add_argument("--workers", type=int, default=2)
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    m = data_sub.add_parser("melodies", help="re-extract the music21 melody index into assets/")
    m.add_argument("--workers", type=int, default=2)
    data.set_defaults(run=_data)

    models = sub.add_parser("models", help="which checkpoints are present and how to train the rest")
    models.set_defaults(run=_models)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result = args.run(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, ensure_ascii=False))
    return 0
