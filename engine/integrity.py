"""Checking a checkpoint folder's files against its manifest of SHA-256 hashes, in the standard
library alone: a command starts hashing the shipped checkpoints on another core the moment it
starts (engine/__main__.py), while torch is still being imported, so that loading never waits for it."""
from __future__ import annotations

import hashlib
import json
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from .paths import CHECKPOINT_DIR

MANIFEST = "MANIFEST.json"  # SHA-256 of every file in a checkpoint folder, written by export_checkpoint


def file_sha256(path: Path) -> str:
    """The file's SHA-256, from the hash ``hash_ahead`` started for it when there is one."""
    ahead = _HASHES_AHEAD.pop(Path(path), None)
    return ahead.result() if ahead is not None else hashlib.sha256(Path(path).read_bytes()).hexdigest()


_HASHES_AHEAD: dict[Path, Future] = {}


def hash_ahead(paths: list[Path]) -> None:
    """Start hashing the files a load will verify on another thread (hashlib lets go of the
    interpreter lock): 0.05 s off every command-line start."""
    pool = ThreadPoolExecutor(max_workers=1)
    for path in paths:
        if Path(path).is_file() and Path(path) not in _HASHES_AHEAD:
            _HASHES_AHEAD[Path(path)] = pool.submit(lambda p=Path(path): hashlib.sha256(p.read_bytes()).hexdigest())
    pool.shutdown(wait=False)


def manifest_files(path: Path) -> list[Path]:
    """The files ``load_exported(path)`` verifies: the config and every shard."""
    meta = Path(path).with_suffix(".json")
    if not meta.exists() or not (Path(path).parent / MANIFEST).exists():
        return []
    return [meta, *(Path(path).with_name(name) for name in json.loads(meta.read_text()).get("shards", [Path(path).name]))]


def verify_hashes(folder: Path, names: list[str]) -> None:
    """Where a folder has a manifest, every file loaded from it must be listed with its hash: a
    swapped or corrupted checkpoint is refused before a byte of it is used."""
    manifest = folder / MANIFEST
    if not manifest.exists():
        return
    hashes = json.loads(manifest.read_text())
    for name in names:
        if name not in hashes:
            raise ValueError(f"{folder / name} is not listed in {manifest}; export checkpoints with `python -m engine train … --export`")
        if file_sha256(folder / name) != hashes[name]:
            raise ValueError(f"{folder / name} does not match its SHA-256 in {manifest}: the file was changed or damaged")


def hash_shipped_ahead() -> None:
    """``hash_ahead`` every file the checkpoint folder's manifest lists (those a ``generate`` loads)."""
    manifest = CHECKPOINT_DIR / MANIFEST
    if manifest.is_file():
        hash_ahead([CHECKPOINT_DIR / name for name in json.loads(manifest.read_text())])
