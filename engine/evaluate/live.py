"""Live mode measured: a scripted run of changes against a clock, and what a listener would get
— underruns, how soon each change is heard, RTF minute by minute, memory over the run."""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..audio import SAMPLE_RATE
from ..generate.live import DEFAULT_BUFFER, FRAME_RATE, Direction, LiveStream, SkipClock, WallClock, replay
from ..generate.musiclm import MusicLM
from ..generate.settings import GenerationSettings
from ..nn.mulan import blend_embeddings
from .bench import proportional_set_size_mb

MEMORY_EVERY_S = 30.0  # seconds of music between memory samples
JUDGE_WINDOW_S = 2.0  # MuLan hears a change in this much audio
JUDGE_HOP_S = 0.5
JUDGE_SPAN_S = 6.0  # how far past the switch the judge looks for the new direction


@dataclass(frozen=True)
class Change:
    """A scripted change: at ``at`` seconds of playback, the stream takes ``direction``."""
    at: float
    direction: Direction


def parse_script(text: str) -> list[Change]:
    """A live script, ``[{"at": 0, "prompt": …}, {"at": 20, "prompt": …, "bpm": 100}, …]`` (or
    ``{"changes": [...]}``), read as data only: changes in time order, the first at 0."""
    try:
        rows = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"the live script is not valid JSON ({exc})") from None
    rows = rows.get("changes") if isinstance(rows, dict) else rows
    if not isinstance(rows, list) or not rows:
        raise ValueError('a live script is a list of changes: [{"at": 0, "prompt": "…"}, {"at": 20, "prompt": "…"}, …]')
    changes = []
    for i, row in enumerate(rows, 1):
        at = row.get("at") if isinstance(row, dict) else None
        if not isinstance(at, (int, float)) or not np.isfinite(at) or at < 0:
            raise ValueError(f"change {i}: \"at\" must be a number of seconds ≥ 0, got {at!r}")
        try:
            changes.append(Change(float(at), Direction.from_record(row)))
        except ValueError as exc:
            raise ValueError(f"change {i}: {exc}") from None
    changes.sort(key=lambda c: c.at)
    if changes[0].at != 0:
        raise ValueError("the first change of a live script is at 0: what the stream starts with")
    return changes


def resident_mb(model: MusicLM) -> float:
    """What this process and its stage workers hold in memory (PSS, shared pages split)."""
    return round(sum(proportional_set_size_mb(pid) for pid in (None, *model.worker_pids())), 1)


class FloatWav:
    """Audio appended to a 32-bit float WAV as it comes (no clipping, an hour never in memory),
    renamed into place only when the run ends well: never a half-written file."""
    def __init__(self, path: Path):
        self.path = self.checked(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.digest = hashlib.sha256()

    @staticmethod
    def checked(path: Path) -> Path:
        """``path``, or a ValueError unless it names a WAV file."""
        if Path(path).suffix.lower() != ".wav":
            raise ValueError(f"live mode writes WAV; name the output *.wav, got {Path(path).name}")
        return Path(path)

    def __enter__(self):
        self.file = sf.SoundFile(str(self.tmp), "w", SAMPLE_RATE, 1, subtype="FLOAT", format="WAV")
        return self

    def write(self, audio: np.ndarray) -> None:
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        self.file.write(audio)
        self.digest.update(audio.tobytes())

    def __exit__(self, kind, value, traceback):
        self.file.close()
        if kind is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def run_script(model: MusicLM, changes: list[Change], minutes: float, out: Path, settings: GenerationSettings = GenerationSettings(),
               buffer: float = DEFAULT_BUFFER, skip_waits: bool = False) -> tuple[dict, dict]:
    """Play ``changes`` into a live stream for ``minutes`` of music against a clock (the wall
    clock, or one that skips the stream's waits), writing the audio to ``out``. Returns (report,
    the run's timeline)."""
    clock = SkipClock() if skip_waits else WallClock()
    live = LiveStream(model, changes[0].direction, settings, buffer, clock)
    todo = list(changes[1:])
    memory: list[tuple[float, float]] = []
    minute_compute: list[float] = []
    started = time.perf_counter()
    with FloatWav(out) as wav:
        for chunk in live:
            wav.write(chunk.audio)
            while todo and live.playback.position() >= todo[0].at:
                live.steer(todo.pop(0).direction)
            if live.seconds >= len(memory) * MEMORY_EVERY_S:
                memory.append((round(live.seconds, 1), resident_mb(model)))
            if live.seconds >= 60 * (len(minute_compute) + 1):
                minute_compute.append(live.compute_s - sum(minute_compute))
            if live.seconds >= minutes * 60:
                live.stop()
    wall = time.perf_counter() - started
    applied = [s for s in live.timeline if s.asked_at is not None]
    underruns = live.playback.underruns
    growth = memory[-1][1] - next((mb for s, mb in memory if s >= 60), memory[0][1]) if memory else 0.0
    report = {
        "out": str(out), "seconds": round(live.seconds, 2), "segments": len(live.timeline), "buffer_s": buffer,
        "clock": "skip waits" if skip_waits else "wall", "wall_s": round(wall, 1),
        "rtf": round(live.compute_s / max(live.seconds, 1e-9), 4),
        "rtf_worst_minute": round(max(minute_compute) / 60, 4) if minute_compute else None,
        "underruns": len(underruns), "underrun_total_s": round(sum(d for _, d in underruns), 3),
        "underrun_longest_s": max((d for _, d in underruns), default=0.0), "underrun_at_s": [s for s, _ in underruns[:20]],
        "changes": [{"asked_at": s.asked_at, "switched_at": round(s.frame / FRAME_RATE, 3), "switch_s": round(s.frame / FRAME_RATE - s.asked_at, 3),
                     "prompt": s.direction.prompt} for s in applied],
        "switch_s_median": round(float(np.median([s.frame / FRAME_RATE - s.asked_at for s in applied])), 3) if applied else None,
        "memory_mb": {"samples": memory, "growth_after_first_minute": round(growth, 1)},
        "sha256": wav.digest.hexdigest(),
    }
    return report, live.timeline_record()


def render_timeline(model: MusicLM, record: dict, out: Path) -> dict:
    """Render a saved live timeline again (no clock): the audio a run with it made, sample for sample."""
    started = time.perf_counter()
    samples = 0
    with FloatWav(out) as wav:
        for chunk in replay(model, record):
            wav.write(chunk.audio)
            samples += len(chunk.audio)
    return {"out": str(out), "seconds": round(samples / SAMPLE_RATE, 2), "wall_s": round(time.perf_counter() - started, 1),
            "segments": len(record["segments"]), "sha256": wav.digest.hexdigest()}


def judge_changes(model: MusicLM, audio_path: Path, timeline: dict) -> dict:
    """How soon MuLan hears each change: from the moment it was asked to the start of the first
    2 s window (0.5 s steps from the switch) whose audio embedding is closer to the new direction's
    text than to the old one's; also the margin of the 2 s just before the switch (the old music
    should still be the old)."""
    rows = timeline["segments"]
    heard = []
    with sf.SoundFile(str(audio_path)) as f:
        def window(start: float) -> np.ndarray:
            f.seek(max(0, int(start * SAMPLE_RATE)))
            return f.read(int(JUDGE_WINDOW_S * SAMPLE_RATE), dtype="float32")

        def text(row: dict) -> torch.Tensor:
            return blend_embeddings(model.mulan.embed_text([p for p, _ in row["blend"]]), [w for _, w in row["blend"]])[0]

        for old, new in zip(rows, rows[1:]):
            if new["asked_at"] is None or old["prompt"] == new["prompt"] and old["blend"] == new["blend"]:
                continue
            old_text, new_text = text(old), text(new)

            def margin(start: float) -> float:
                clip = window(start)
                if len(clip) < JUDGE_WINDOW_S * SAMPLE_RATE * 0.9:
                    return float("nan")
                e = model.mulan.embed_audio(clip)
                return float(e @ new_text - e @ old_text)

            switch = new["start_s"]
            found = next((t for t in np.arange(0.0, JUDGE_SPAN_S, JUDGE_HOP_S) if margin(switch + t) > 0), None)
            heard.append({"asked_at": new["asked_at"], "switch_s": round(switch - new["asked_at"], 3),
                          "heard_s": None if found is None else round(switch + found - new["asked_at"], 3),
                          "margin_before": round(margin(switch - JUDGE_WINDOW_S), 4), "margin_after": round(margin(switch), 4)})
    latencies = [h["heard_s"] for h in heard]
    known = [x for x in latencies if x is not None]
    return {"changes_judged": len(heard), "heard_s_median": round(float(np.median([x if x is not None else np.inf for x in latencies])), 3) if heard else None,
            "heard_within_2s": round(sum(x <= 2.0 for x in known) / len(heard), 3) if heard else None,
            "never_heard": len(heard) - len(known), "per_change": heard}
