"""Every generation kept on disk — audio, prompt, settings, seed — so it survives a restart.

The index is one JSON file rewritten through a temp file and a rename, and each WAV is written
the same way before its entry is added, so a kill at any moment leaves either the old index or
the new one, never a half-written entry or export. No gradio here: the studio only shows it.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from engine import SAMPLE_RATE, atomic_write, save_audio

DEFAULT_ROOT = Path(os.environ.get("HUMMINGBIRD_HISTORY", Path(__file__).resolve().parents[1] / "outputs" / "history"))


class History:
    def __init__(self, root: Path = DEFAULT_ROOT):
        self.root = Path(root)
        self.index = self.root / "index.json"
        for leftover in self.root.glob(".*.tmp"):  # a write that a kill interrupted: never part of the history
            leftover.unlink(missing_ok=True)

    def entries(self) -> list[dict]:
        """Newest first; entries whose audio has gone are left out."""
        try:
            rows = json.loads(self.index.read_text())
        except FileNotFoundError:
            return []
        except (json.JSONDecodeError, UnicodeDecodeError):  # only a hand edit can do this: keep it aside, start afresh
            self.index.rename(self.index.with_name(f"index.broken-{int(time.time())}.json"))
            return []
        return [r for r in rows if isinstance(r, dict) and (self.root / str(r.get("audio", ""))).is_file()]

    def add(self, audio: np.ndarray, settings: dict, planned_seconds: float | None = None) -> dict:
        """Save ``audio`` and its reproducing ``settings``; returns the new entry. A piece
        stopped before its end is marked with how long it was meant to be (``planned_seconds``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = f"{stamp}-{time.monotonic_ns() % 1_000_000:06d}.wav"  # unique even for two saves in one second
        save_audio(self.root / name, audio)
        entry = {"audio": name, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": round(len(audio) / SAMPLE_RATE, 2),
                 "settings": settings, **({"planned_seconds": planned_seconds} if planned_seconds else {})}
        self._write([entry] + self.entries())
        return entry

    def find(self, name: str) -> dict:
        """The entry whose audio file is ``name``; a KeyError when it has gone."""
        for entry in self.entries():
            if entry["audio"] == name:
                return entry
        raise KeyError(name)

    def remove(self, name: str) -> None:
        """Forget an entry and delete its audio (the index first: a kill between the two leaves
        an orphan file, never an entry without its audio)."""
        self._write([e for e in self.entries() if e["audio"] != name])
        (self.root / Path(name).name).unlink(missing_ok=True)

    def _write(self, rows: list[dict]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(self.index, lambda tmp: tmp.write_text(json.dumps(rows, indent=1, ensure_ascii=False)))

    def path(self, entry: dict) -> Path:
        return self.root / entry["audio"]


def summary(settings: dict) -> str:
    """One line that says what an entry is, for every mode."""
    mode, prompt = settings.get("mode", "text"), settings.get("prompt") or ""
    if mode == "story":
        return " → ".join(s["prompt"] for s in settings.get("segments", []))
    if mode == "hum":
        return f"a hum, as {prompt}" if prompt else "a hum"
    if mode == "continue":
        return f"a {settings.get('clip_seconds', 0):g} s clip continued" + (f" as {prompt}" if prompt else " in its own style")
    if mode == "live":
        return "live: " + " → ".join(s["prompt"] for s in settings.get("timeline", {}).get("segments", []) if s.get("handover") or s["frame"] == 0)
    if mode == "style":
        clips = len(settings.get("clip_seconds", []))
        return f"in the style of {clips} clip{'s' * (clips != 1)}" + (f" + \"{prompt}\"" if prompt else "")
    if mode == "inpaint":
        start, end = settings.get("range_s", (0, 0))
        return f"{start:g}–{end:g} s of a {settings.get('clip_seconds', 0):g} s clip regenerated" + (f" as {prompt}" if prompt else "")
    return prompt


def kept(entry: dict) -> str:
    """'complete', or how much of a stopped piece was kept."""
    planned = entry.get("planned_seconds")
    return f"stopped at {entry['seconds']:g} of {planned:g} s" if planned else "complete"
