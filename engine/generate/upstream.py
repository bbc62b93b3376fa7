"""How the upstream stages (semantic, coarse) run beside the caller, who runs the fine stage and
the codec: in line, only as far as the caller needs, or each on a process of its own.

Decoding is a stream of small operators, so on a CPU it is bound by Python and the dispatcher,
not by arithmetic. Two threads of one process would share the interpreter lock and slow each
other down by a third (stages 2 and 3 side by side, ms per frame: 4.35 / 3.39 on threads,
3.27 / 2.25 on processes), so the parallel form gives each upstream stage a process: it writes
its frames into a buffer in shared memory, and the stage reading them waits until the frames it
looks ahead to exist. Every stage draws from its own seeded generator, so the music is the same
in either form.
"""
from __future__ import annotations

import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch

from ..nn.lm import GenerationError, Schedule, TokenLM, windowed
from ..nn.sampling import Sampling

POLL_SECONDS = 2e-4  # how often a waiting stage looks at its upstream's progress (a frame takes ≈ 3 ms)
STOP_WAIT_SECONDS = 10.0  # how long a stopped piece waits for a worker to put its stage down


@dataclass(frozen=True)
class Reads:
    """Which upstream frames a stage's frame n reads: up to (n + lookahead) // step of ``total``."""
    total: int
    lookahead: int
    step: int = 1

    def needed(self, n: int) -> int:
        return min(self.total, (n + self.lookahead) // self.step + 1)


@dataclass
class StageJob:
    """One stage's share of a piece: the arguments of ``windowed``, and where its frames go."""
    total: int
    schedule: Schedule
    aligned: dict[str, torch.Tensor]
    sampling: Sampling
    seed: int
    out: torch.Tensor  # (1, levels, offset + total): frame n is written at offset + n
    offset: int = 0
    negative: torch.Tensor | None = None
    prompt: torch.Tensor | None = None
    handover: int | None = None
    reads: Reads | None = None  # what it reads of the stage before it (None: nothing that stage still makes)
    ready: int = 0  # frames of ``out`` after ``offset`` made before the job (a tempo draft); ``prompt`` ends with them
    anchor: torch.Tensor | None = None  # M of the words alone beside a style's blend: double guidance (``engine.nn.sampling.guide``)
    drafts: dict = field(default_factory=dict)  # schedule index → the tempo draft of that segment's opening (``engine.generate.drafts``)
    # bookkeeping, always on the CPU (where another process can watch it): frames done, seconds spent; a stop flag
    progress: torch.Tensor = field(default_factory=lambda: torch.zeros(2, dtype=torch.float64, device="cpu"))
    stop: torch.Tensor = field(default_factory=lambda: torch.zeros(1, dtype=torch.bool, device="cpu"))

    def share(self) -> "StageJob":
        """Put the tensors other processes write or watch into shared memory (in place): M too,
        since a draft's kept reading is written into it for the next stage."""
        for tensor in (self.out, self.progress, self.stop, *self.aligned.values(), *(m for _, m in self.schedule if m is not None)):
            tensor.share_memory_()
        for draft in self.drafts.values():
            draft.share()
        return self

    @property
    def done(self) -> int:
        return int(self.progress[0])

    @property
    def seconds(self) -> float:
        return float(self.progress[1])


class Stopped(Exception):
    """The piece was stopped (a listener pressed Stop, or another stage failed)."""


def decode(model: TokenLM, job: StageJob, upstream=None) -> Iterator[int]:
    """Decode ``job`` frame by frame into ``job.out``, yielding how many frames exist; before each
    frame, ``upstream.wait_for`` makes sure the frames it reads exist."""
    generator = torch.Generator(device=model.device).manual_seed(job.seed)
    frames = windowed(model, job.total - job.ready, job.schedule, job.aligned, job.sampling, generator, job.negative, job.prompt, job.handover,
                      job.anchor, job.drafts)
    job.progress[0] = job.ready
    for n in range(job.ready, job.total):
        if upstream is not None:
            upstream.wait_for(job.reads.needed(n))
        if job.stop:
            raise Stopped
        t = time.perf_counter()
        job.out[:, :, job.offset + n] = next(frames)[:, :, 0]
        job.progress[1] += time.perf_counter() - t
        job.progress[0] = n + 1  # after the frame: a reader that sees the count sees the frame
        yield n + 1


class InLine:
    """A stage advanced on the caller's thread, only as far as asked."""
    def __init__(self, frames: Iterator[int]):
        self.frames, self.count = frames, 0

    def wait_for(self, count: int) -> None:
        while self.count < count:
            self.count = next(self.frames)


class Watched:
    """A stage decoding on another process, watched through its progress counter; ``workers``
    are checked while waiting, so a failure anywhere upstream surfaces instead of a hang."""
    def __init__(self, job: StageJob, workers: tuple["StageWorker", ...] = ()):
        self.job, self.workers = job, workers

    def wait_for(self, count: int) -> None:
        while self.job.done < count:
            if self.job.stop:
                raise Stopped
            for worker in self.workers:
                worker.check()
            time.sleep(POLL_SECONDS)


@contextmanager
def caller_script_hidden() -> Iterator[None]:
    """Start a spawned process without the caller's script: spawn re-runs ``__main__`` in the child,
    so a script without an ``if __name__ == "__main__":`` guard would load models and start
    workers again there (and ``launch.py`` would import the whole studio). A worker needs nothing
    from it: its target lives in this module."""
    main = sys.modules["__main__"]
    saved = {key: main.__dict__[key] for key in ("__file__", "__spec__") if key in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.update(saved)
        if "__spec__" not in saved:
            del main.__spec__


class StageWorker:
    """A spawned process that decodes one stage's jobs, one at a time. The stage model is sent
    once (its weights move to shared memory) and again only when the caller's model changes."""
    def __init__(self, name: str):
        context = torch.multiprocessing.get_context("spawn")  # forking a process with torch's threads running is unsafe
        self.conn, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child,), name=f"hummingbird-{name}", daemon=True)
        with caller_script_hidden():
            self.process.start()
        child.close()
        self.model: TokenLM | None = None
        self.busy = False
        self.peak_rss_mb = 0.0

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def load(self, model: TokenLM) -> None:
        """Send the model ahead of the first job."""
        self.conn.send((model, None, None))
        self.model = model

    def submit(self, model: TokenLM, job: StageJob, watches: StageJob | None = None) -> None:
        """Start decoding ``job``; ``watches``: the upstream job whose frames it reads."""
        self.conn.send((model if model is not self.model else None, job, watches))
        self.model, self.busy = model, True

    def check(self) -> None:
        """Note a finished job; raise the error a job failed with, or a GenerationError if the process died."""
        try:
            while self.busy and self.conn.poll():
                failed, value = self.conn.recv()
                self.busy = False
                if failed:
                    raise value
                self.peak_rss_mb = max(self.peak_rss_mb, value)
        except (EOFError, OSError):
            self.busy = False
            raise GenerationError(f"the {self.process.name} process stopped unexpectedly; generate again to restart it") from None

    def finish(self, timeout: float = STOP_WAIT_SECONDS) -> None:
        """Wait until the current job is over (it was told to stop, or it ends by itself)."""
        deadline = time.monotonic() + timeout
        while self.busy and time.monotonic() < deadline:
            self.conn.poll(POLL_SECONDS * 50)
            try:
                self.check()
            except Exception:  # the piece is being closed anyway; its error was or will be raised elsewhere
                pass
        if self.busy:
            self.close()

    def close(self) -> None:
        """Stop the process. An idle one is asked to leave and given time to: a model sent a moment
        before may still be on its way (the child fetches its tensors' file descriptors from this
        process), and a child killed in that exchange leaves a traceback in this process's log. A
        busy or unanswering one is killed."""
        if not self.busy and self.process.is_alive():
            try:
                self.conn.send(None)
                self.process.join(STOP_WAIT_SECONDS)
            except OSError:  # it is gone already
                pass
        if self.process.is_alive():
            self.process.kill()
        self.busy = False


def serve(conn) -> None:
    """A worker's loop: receive (model or None, job, the job it watches), decode, report
    (False, peak RSS in MB) or (True, the exception)."""
    torch.set_num_threads(1)  # one operator thread per process: the processes are the parallelism
    model = None
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the caller's process is gone
            return
        if message is None:  # asked to leave (StageWorker.close)
            return
        sent, job, watches = message
        model = sent if sent is not None else model
        if job is None:  # the model alone, sent ahead
            continue
        try:
            with torch.inference_mode():
                for _ in decode(model, job, Watched(watches) if watches is not None else None):
                    pass
        except Stopped:
            pass
        except BaseException as exc:  # handed to the caller, as itself if it pickles
            try:
                conn.send((True, exc))
            except Exception:
                conn.send((True, RuntimeError(f"{type(exc).__name__}: {exc}")))
            continue
        conn.send((False, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
