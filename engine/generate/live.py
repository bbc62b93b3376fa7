"""Live mode: an endless stream whose conditioning the listener changes while it plays.

Story mode changes M at a boundary while every stage keeps its context; live mode moves that
boundary to the moment the listener asks. The stream is a chain of segments, each a
continuation of the music so far: the last tokens are every stage's prompt and one codec stream
runs through them all, never closed, so there is no gap and no click. A change ends the current
segment at the next decoded chunk and the new M takes over from there, from a story's short
handover of context; a segment nobody changed ends after ``SEGMENT_SECONDS`` and the next
continues it under the same M, so memory holds one segment's buffers however long it plays.

A clock paces it against a model of the listener's player (``Playback``): the stream stays at
most ``buffer`` seconds ahead of what has been played, which bounds how much of the old music
plays after a change, and counts the player's underruns when the machine cannot keep up.
Every segment's start, direction and seed go into a timeline that ``replay`` renders again,
sample for sample, without a clock.
"""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Iterator

import numpy as np
import torch

from ..audio import SAMPLE_RATE
from ..nn.codec import HOP, CodecStreamer
from ..prompts import StatedTempo, clean_prompt
from .level import LevelStage, blend_loudness
from .musiclm import CONTEXT_SECONDS, Chunk, MusicLM
from .requests import MAX_BLEND, check_weight
from .settings import GenerationSettings

FRAME_RATE = SAMPLE_RATE / HOP  # acoustic frames per second (50)
SEGMENT_SECONDS = 20.0  # a segment nobody changes ends here; the next continues it (a window of stage 1 is 10 s)
CHUNK_SECONDS = 0.2  # how often the stream decodes, and so how soon a change can cut in (10 frames: whole 25 Hz pairs)
DEFAULT_BUFFER = 1.0  # seconds the stream runs ahead of playback
MAX_BUFFER = 10.0
WAIT_SLICE = 0.05  # a paced wait looks for a change or a stop this often


@dataclass(frozen=True)
class Direction:
    """What the stream should sound like from now on: one prompt or a weighted blend of several,
    optionally a tempo (otherwise the one a prompt states) and stage 1's guidance."""
    blend: tuple[tuple[str, float], ...]
    bpm: float | None = None
    guidance: float | None = None

    @classmethod
    def of(cls, prompt: str, bpm: float | None = None, guidance: float | None = None) -> "Direction":
        return cls(((prompt, 1.0),), bpm, guidance).checked()

    def checked(self) -> "Direction":
        """The direction with its prompts tidied, or a ValueError naming what is wrong."""
        if not self.blend:
            raise ValueError("a live direction needs at least one prompt")
        if len(self.blend) > MAX_BLEND:
            raise ValueError(f"a blend mixes at most {MAX_BLEND} prompts, got {len(self.blend)}")
        blend = []
        for prompt, weight in self.blend:
            if check_weight(weight) > 0:
                blend.append((clean_prompt(prompt), float(weight)))
        if not blend:
            raise ValueError("every blend weight is 0: give at least one prompt a weight above 0")
        if self.bpm is not None and not (isinstance(self.bpm, (int, float)) and 40 <= self.bpm <= 240):
            raise ValueError(f"the tempo must be between 40 and 240 bpm, got {self.bpm!r}")
        if self.guidance is not None and not (isinstance(self.guidance, (int, float)) and 0 <= self.guidance <= 20):
            raise ValueError(f"guidance must be in [0, 20], got {self.guidance!r}")
        return Direction(tuple(blend), None if self.bpm is None else float(self.bpm), None if self.guidance is None else float(self.guidance))

    @property
    def prompt(self) -> str:
        """The blend's heaviest prompt: its name in a story."""
        return max(self.blend, key=lambda pw: pw[1])[0]

    def record(self) -> dict:
        return {"prompt": self.prompt, "blend": [list(pw) for pw in self.blend], "bpm": self.bpm, "guidance": self.guidance}

    @classmethod
    def from_record(cls, row: dict) -> "Direction":
        """A direction from a script or timeline row: {"prompt": …} or {"blend": [[prompt, weight], …]}, with optional bpm, guidance."""
        if not isinstance(row, dict):
            raise ValueError('a change is {"at": seconds, "prompt": "…"} (or "blend": [["…", weight], …]), with optional "bpm", "guidance"')
        blend = row.get("blend") or ([(row.get("prompt"), 1.0)] if row.get("prompt") is not None else [])
        if not all(isinstance(pw, (list, tuple)) and len(pw) == 2 for pw in blend):
            raise ValueError('a blend is a list of ["prompt", weight] pairs')
        return cls(tuple((p, w) for p, w in blend), row.get("bpm"), row.get("guidance")).checked()


@dataclass
class Segment:
    """One stretch of the stream under one direction, as the timeline keeps it."""
    frame: int  # acoustic frame (50 Hz) where it starts, counted from the stream's start
    direction: Direction
    handover: bool  # it starts from a story's short context (a change) rather than the whole window (a continuation)
    asked_at: float | None = None  # playback second when the change was asked (None: a continuation, or a replay)

    def record(self) -> dict:
        return {"start_s": round(self.frame / FRAME_RATE, 3), "frame": self.frame, **self.direction.record(), "handover": self.handover,
                "asked_at": self.asked_at}


class WallClock:
    """Real time: a paced stream waits for its listener."""
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class SkipClock(WallClock):
    """Wall time with the stream's waits skipped: an hour of live music in the time its compute
    takes. Underruns come out no fewer than in real time (a wait only ever gives the upstream
    stages time to run ahead), so a run without them on this clock has none on the wall clock."""
    def __init__(self):
        self.skipped = 0.0

    def now(self) -> float:
        return time.monotonic() + self.skipped

    def sleep(self, seconds: float) -> None:
        self.skipped += max(0.0, seconds)


@dataclass
class Playback:
    """The listener's player, modelled on a clock: it starts once ``prebuffer`` seconds are made,
    then plays in time; reaching the end of what is made, it stalls until more arrives (an
    underrun, kept as (where, how long))."""
    clock: WallClock
    prebuffer: float
    made: float = 0.0
    started_at: float | None = None
    stalled: float = 0.0
    underruns: list[tuple[float, float]] = field(default_factory=list)

    def position(self) -> float:
        """Seconds played so far."""
        if self.started_at is None:
            return 0.0
        return min(self.made, self.clock.now() - self.started_at - self.stalled)

    def lead(self) -> float:
        return self.made - self.position()

    def add(self, seconds: float) -> None:
        now = self.clock.now()
        if self.started_at is not None:
            dry = now - self.started_at - self.stalled - self.made
            if dry > 0:
                self.underruns.append((round(self.made, 3), round(dry, 3)))
                self.stalled += dry
        self.made += seconds
        if self.started_at is None and self.made >= self.prebuffer:
            self.started_at = now


def check_buffer(buffer: float) -> None:
    """A ValueError unless ``buffer`` (seconds ahead of playback) is in (0, ``MAX_BUFFER``]."""
    if not 0 < buffer <= MAX_BUFFER:
        raise ValueError(f"the live buffer must be in (0, {MAX_BUFFER:.0f}] seconds, got {buffer}")


def segment_seed(seed: int, index: int) -> int:
    """Each segment draws from its own seed, fixed by the stream's seed and the segment's place."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] % (2**31 - 1))


class LiveStream:
    """An endless piece, steered while it plays. Iterate it for chunks; call ``steer`` (from any
    thread) to change the direction and ``stop`` to end it after the current chunk.

    ``buffer``: seconds the stream may run ahead of playback (None: not paced, as fast as the
    machine goes: how ``replay`` renders); ``prebuffer``: seconds the player waits for before it
    starts (default the whole buffer; a browser player starts with the first chunk: 0);
    ``plan``: segments to follow instead of listening for changes (a replay)."""
    def __init__(self, model: MusicLM, direction: Direction, settings: GenerationSettings = GenerationSettings(),
                 buffer: float | None = DEFAULT_BUFFER, clock: WallClock | None = None, plan: list[Segment] | None = None,
                 prebuffer: float | None = None, segment_seconds: float | None = None, chunk_seconds: float | None = None):
        if buffer is not None:
            check_buffer(buffer)
        settings.check()
        self.segment_seconds = segment_seconds or SEGMENT_SECONDS  # a replay takes both from its timeline
        self.model, self.buffer = model, buffer
        self.settings = replace(settings, chunk_seconds=chunk_seconds or CHUNK_SECONDS, tempo_drafts=1)
        self.clock = clock or WallClock()
        self.playback = Playback(self.clock, (buffer or 0.0) if prebuffer is None else prebuffer)
        self.plan = list(plan) if plan is not None else None
        self.timeline: list[Segment] = []
        self._index = -1  # the segment being made
        self.frames = 0  # acoustic frames decoded so far
        self.samples = 0  # audio samples handed out so far
        self.compute_s = 0.0  # wall time spent making music (waits excluded)
        self._lock = threading.Lock()
        self._pending: tuple[Direction, float | None] | None = (direction.checked(), None)
        self._stopped = threading.Event()
        self._conditioning: dict[Direction, torch.Tensor] = {}
        self.level = LevelStage() if settings.level_stage else None  # loud and quiet words, across segments

    # -- the listener's controls --------------------------------------------------------------
    def steer(self, direction: Direction) -> None:
        """Change what plays next (a ValueError for a bad direction, and the stream goes on as it was)."""
        direction = direction.checked()
        self.conditioning(direction)  # MuLan reads the prompts here, on the caller's time
        with self._lock:
            if self._pending is None and self.timeline and direction == self.timeline[-1].direction:
                return  # already playing it
            self._pending = (direction, round(self.playback.position(), 3))

    def stop(self) -> None:
        self._stopped.set()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    @property
    def seconds(self) -> float:
        """Seconds of audio handed out so far."""
        return self.samples / SAMPLE_RATE

    def conditioning(self, direction: Direction) -> torch.Tensor:
        """M for a direction (cached): its prompts read at its tempo and mixed by weight."""
        if direction not in self._conditioning:
            tempo = None
            if direction.bpm is not None and self.model.prior is not None:
                tempo = StatedTempo.at(direction.bpm, self.model.prior.cfg.tempo_tolerance)
            self._conditioning[direction] = self.model.blend_conditioning(list(direction.blend), tempo)
        return self._conditioning[direction]

    # -- the stream ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Chunk]:
        decoder = CodecStreamer(self.model.codec)
        context: dict[str, torch.Tensor] | None = None
        current: Direction | None = None
        while not self._stopped.is_set():
            index = self._index = self._index + 1
            segment = self._next_segment(index, current)
            if segment is None:
                break
            m = self.conditioning(segment.direction)
            if self.level:
                self.level.aim(blend_loudness(segment.direction.blend))
            schedule = [(0.0, self.conditioning(current)), (0.0, m)] if segment.handover else [(0.0, m)]
            settings = replace(self.settings, seconds=self.segment_seconds, seed=segment_seed(self.settings.seed, index))
            if segment.direction.guidance is not None:
                settings = replace(settings, guidance=segment.direction.guidance)
            tokens: dict = {}
            pieces = self.model.stream("", settings, schedule=schedule, prompt_tokens=context, tokens_out=tokens, decoder=decoder)
            started = time.perf_counter()
            try:
                for chunk in pieces:
                    self.compute_s += time.perf_counter() - started
                    self.frames = segment.frame + tokens["decoded"] - (0 if context is None else context["A"].shape[2])
                    yield self._hand_out(chunk.audio, chunk.stages)
                    if self._cut_here() or not self._wait_for_listener():
                        break
                    started = time.perf_counter()
            finally:
                pieces.close()  # stops the upstream stages of a segment cut short
            context = self._context(tokens)
            current = segment.direction
        tail = decoder.finish().cpu().numpy()  # the last frames' held-back samples: the stream ends cleanly
        if len(tail):
            yield self._hand_out(tail, {})

    def _hand_out(self, audio: np.ndarray, stages: dict) -> Chunk:
        audio = self.level.apply(audio) if self.level else audio
        self.samples += len(audio)
        self.playback.add(len(audio) / SAMPLE_RATE)
        return Chunk(audio, self.seconds, stages)

    def _next_segment(self, index: int, current: Direction | None) -> Segment | None:
        """The segment that starts at the current frame: the next planned one, or (added to the
        timeline) a change asked for or a continuation under the current direction."""
        if self.plan is not None:
            return self.plan[index] if index < len(self.plan) else None
        with self._lock:  # with the pending change taken, the timeline says what plays (``steer`` reads it)
            pending, self._pending = self._pending, None
            if pending is None or pending[0] == current:
                segment = Segment(self.frames, current, handover=False)
            else:
                segment = Segment(self.frames, pending[0], handover=current is not None, asked_at=pending[1])
            self.timeline.append(segment)
        return segment

    def _cut_here(self) -> bool:
        """Whether the current segment ends at this chunk: a change or a stop is waiting, or the plan's next segment starts here."""
        if self._stopped.is_set():
            return True
        if self.plan is not None:
            return self._index + 1 < len(self.plan) and self.plan[self._index + 1].frame <= self.frames
        with self._lock:
            return self._pending is not None

    def _wait_for_listener(self) -> bool:
        """Pace the stream: wait while it is more than ``buffer`` ahead of playback, looking for a
        change or a stop. False when one arrived (the segment ends here)."""
        if self.buffer is None:
            return True
        while self.playback.lead() > self.buffer:
            self.clock.sleep(min(WAIT_SLICE, self.playback.lead() - self.buffer))
            if self._cut_here():
                return False
        return True

    def _context(self, tokens: dict) -> dict[str, torch.Tensor]:
        """The last ``CONTEXT_SECONDS`` of S and A that were played, in whole 25 Hz pairs: the next segment's prompt."""
        end = tokens["decoded"]
        keep = min(end, int(CONTEXT_SECONDS * FRAME_RATE)) // 2 * 2
        a = tokens["A"][:, :, end - keep:end].clone()
        s = tokens["S"][:, :, (end - keep) // 2:end // 2].clone()
        return {"S": s, "A": a}

    # -- what a run leaves --------------------------------------------------------------------
    def timeline_record(self) -> dict:
        """The run as a story file: its segments with their starts and lengths, directions and the
        live settings, from which ``replay`` renders the same audio."""
        ends = [s.frame for s in self.timeline[1:]] + [self.frames]
        rows = [{**s.record(), "seconds": round((end - s.frame) / FRAME_RATE, 3)} for s, end in zip(self.timeline, ends)]
        return {"segments": rows, "live": {"frames": self.frames, "seconds": round(self.seconds, 3), "segment_seconds": self.segment_seconds,
                                           "settings": asdict(self.settings)}}


def replay(model: MusicLM, record: dict) -> Iterator[Chunk]:
    """Render a live run again from its timeline (``LiveStream.timeline_record``), sample for sample."""
    try:
        live = record["live"]
        settings = GenerationSettings(**{**live["settings"], "temperatures": tuple(live["settings"]["temperatures"])})
        plan = [Segment(int(row["frame"]), Direction.from_record(row), bool(row["handover"])) for row in record["segments"]]
        total = int(live["frames"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a live timeline (missing or malformed {exc})") from None
    if not plan or plan[0].frame != 0 or any(b.frame <= a.frame for a, b in zip(plan, plan[1:])) or total <= plan[-1].frame:
        raise ValueError("a live timeline's segments start at frame 0, in order, before its end")
    stream = LiveStream(model, plan[0].direction, settings, buffer=None, plan=plan, segment_seconds=float(live["segment_seconds"]),
                        chunk_seconds=settings.chunk_seconds)
    for chunk in stream:
        yield chunk
        if stream.frames >= total:
            stream.stop()
