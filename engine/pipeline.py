"""MusicLM inference, as in the paper's Figure 2, streamed.

    text ──MuLan──► M ──stage 1──► S ──stage 2 (+M)──► A coarse ──stage 3──► A fine ──codec──► audio

The three stages run interleaved in time: stage 2 reads S a few frames ahead of the frame it
makes, stage 3 reads the coarse levels a few frames ahead, and the codec decodes each block of
finished frames at once, so the first audio exists long before the last S token. Minutes of
music come from windows that overlap on every stage: each new window is a continuation whose
prompt is the end of the previous one.
"""
from __future__ import annotations

import threading
import time
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .audio import SAMPLE_RATE, SILENT_PEAK
from .codec import HOP, CodecStreamer
from .features import SEMANTIC_RATE
from .lm import COARSE_LEVELS, GenerationError, TokenLM
from .sampling import Sampling

MAX_SECONDS = 300.0
MAX_PROMPT_CHARS = 500
MAX_SEGMENTS = 50
CONTEXT_SECONDS = 10.0  # how much of a clip to continue the stages read (no crop is longer)
FRAME_PAIR = 2 * HOP  # samples of one 25 Hz semantic frame = two 50 Hz acoustic frames
INPAINT_FADE = 0.25  # seconds of cross-fade from the regenerated range into the kept remainder
STAGE_THREADS = 1  # operator threads of each half of the work when the stages run in parallel (RunAhead)
STORY_HANDOVER = 0.4  # seconds of the previous segment a story's next segment starts from (a window's context is longer)


def available_devices() -> list[str]:
    """Where generation can run on this machine: always the CPU, and CUDA when a GPU is visible."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when a GPU is visible, else the CPU; a ValueError for a device this machine lacks."""
    if name == "auto":
        name = available_devices()[-1]
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; choose auto, cpu or cuda")
    if name not in available_devices():
        raise ValueError("no CUDA GPU is visible to PyTorch; use the cpu device (or auto)")
    return torch.device(name)


def clean_prompt(prompt: str | None) -> str:
    """The prompt tidied, or a ValueError that says what to write instead. Odd Unicode is made
    plain: NFKC (full-width letters, ligatures), no control or invisible format characters (NUL,
    zero-width spaces, bidi overrides), no lone surrogates; emoji and every script stay."""
    text = unicodedata.normalize("NFKC", (prompt or "").encode("utf-8", "ignore").decode("utf-8"))
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text if unicodedata.category(c) != "Cf")
    text = " ".join(text.split())
    if not text:
        raise ValueError('the prompt is empty; describe the music, e.g. "calm violin melody over a guitar riff, 90 bpm"')
    if len(text) > MAX_PROMPT_CHARS:
        raise ValueError(f"the prompt is {len(text)} characters long; the limit is {MAX_PROMPT_CHARS}")
    return text


def check_story(segments) -> list[tuple[str, float]]:
    """A story's (prompt, seconds) segments, tidied, or a ValueError naming the first problem."""
    if not isinstance(segments, (list, tuple)) or not segments:
        raise ValueError("the story has no segments; give at least one (prompt, seconds)")
    if len(segments) > MAX_SEGMENTS:
        raise ValueError(f"the story has {len(segments)} segments; the limit is {MAX_SEGMENTS}")
    tidy = []
    for i, segment in enumerate(segments, 1):
        try:
            text, seconds = segment
            seconds = float(seconds)
        except (TypeError, ValueError):
            raise ValueError(f"segment {i} must be a prompt and a number of seconds") from None
        if not 0 < seconds <= MAX_SECONDS:  # NaN fails too
            raise ValueError(f"segment {i} lasts {seconds} s; each segment needs (0, {MAX_SECONDS:.0f}] seconds")
        try:
            tidy.append((clean_prompt(text if isinstance(text, str) else ""), seconds))
        except ValueError as exc:
            raise ValueError(f"segment {i}: {exc}") from None
    total = sum(seconds for _, seconds in tidy)
    if total > MAX_SECONDS:
        raise ValueError(f"the story lasts {total:g} s; the limit is {MAX_SECONDS:.0f} s")
    return tidy


def parse_story(text: str) -> list[tuple[str, float]]:
    """DESIGN §4 story JSON, ``{"segments": [{"prompt": …, "seconds": …}, …]}``, read as data only."""
    import json

    try:
        story = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"the story is not valid JSON ({exc})") from None
    if not isinstance(story, dict) or not isinstance(story.get("segments"), list):
        raise ValueError('a story is {"segments": [{"prompt": "…", "seconds": 12.0}, …]}')
    rows = story["segments"]
    if not all(isinstance(r, dict) for r in rows):
        raise ValueError('each segment is {"prompt": "…", "seconds": 12.0}')
    return check_story([(r.get("prompt"), r.get("seconds")) for r in rows])


@dataclass
class Chunk:
    """A piece of streamed audio and where generation stands."""
    audio: np.ndarray  # float32, 24 kHz mono
    seconds_done: float
    stages: dict[str, float] = field(default_factory=dict)  # wall seconds spent per stage so far


@dataclass(frozen=True)
class GenerationSettings:
    seconds: float = 10.0
    seed: int = 0
    temperatures: tuple[float, float, float] = (1.0, 0.95, 0.4)  # paper §4
    top_k: int = 0
    guidance: float = 3.0  # classifier-free guidance on stage 1
    negative_prompt: str = ""
    chunk_seconds: float = 0.5

    def check(self) -> None:
        """A ValueError naming the first setting out of range (NaN fails every comparison)."""
        if not 0 < self.seconds <= MAX_SECONDS:
            raise ValueError(f"duration must be in (0, {MAX_SECONDS:.0f}] seconds, got {self.seconds}")
        if len(self.temperatures) != 3 or not all(0 <= t <= 5 for t in self.temperatures):
            raise ValueError(f"temperatures must be three numbers in [0, 5], got {self.temperatures}")
        if not 0 <= self.top_k <= 1024:
            raise ValueError(f"top-k must be in [0, 1024] (0 = off), got {self.top_k}")
        if not 0 <= self.guidance <= 20:
            raise ValueError(f"guidance must be in [0, 20], got {self.guidance}")
        if len(self.negative_prompt) > MAX_PROMPT_CHARS:
            raise ValueError(f"the negative prompt is longer than {MAX_PROMPT_CHARS} characters")


Schedule = list[tuple[int, "torch.Tensor | None"]]  # (first target frame, M from there on)


def windowed(model: TokenLM, total: int, schedule: Schedule, aligned: dict[str, torch.Tensor], sampling: Sampling, generator,
             negative=None, prompt: torch.Tensor | None = None, handover: int | None = None) -> Iterator[torch.Tensor]:
    """Yield ``total`` target frames (B, L, 1), in windows of the stage's crop length that
    overlap by half: each window continues the previous one's last half-crop of frames.

    ``schedule`` says which M conditions which frames (counted after the prompt); a window ends
    where M changes, and the next one starts from the end of the music so far under the new M —
    the paper's time-varying text (story mode) without a seam. Only the last ``handover`` frames
    are its context there: a whole half-crop of the old segment would keep its style going
    against the new text."""
    lay = model.cfg.layout
    window = lay.positions - lay.positions % 2
    context = window // 2
    given = prompt.shape[2] if prompt is not None else 0
    produced = torch.zeros(1 if prompt is None else prompt.shape[0], lay.target.levels, given + total, dtype=torch.long, device=model.device)
    if given:
        produced[:, :, :given] = prompt
    changes = [given + frame for frame, _ in schedule[1:]] + [given + total]
    end = given  # frames in ``produced`` so far; preallocated, so minutes of music are not re-copied every frame
    while end < given + total:
        ctx = min(end, context, handover if handover is not None and end in changes[:-1] else context)
        start = end - ctx  # target frame where this window begins
        segment = next(i for i, change in enumerate(changes) if change > end)
        length = min(window - ctx, changes[segment] - end)
        views = {s.name: aligned[s.name][..., int(start * s.frames_per_position):] for s in lay.aligned if s.name in aligned}
        prefix = schedule[segment][1]
        for frame in model.stream(length, prefix, views, sampling, generator, negative, produced[:, :, start:end] if ctx else None):
            produced[:, :, end] = frame[:, :, 0]
            end += 1
            yield frame


class InLine:
    """Advance the upstream stages on the caller's thread, only as far as asked."""

    def __init__(self, progress: Iterator[int]):
        self.progress, self.count = progress, 0

    def wait_for(self, count: int) -> None:
        while self.count < count:
            self.count = next(self.progress)

    def close(self) -> None:
        pass


@contextmanager
def operator_threads(count: int | None) -> Iterator[None]:
    """Run torch operators on ``count`` threads inside the block (None: leave as is). The setting
    belongs to the calling thread, so it is restored before control goes back to the caller."""
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class RunAhead:
    """Advance the upstream stages (semantic + coarse) on a worker thread while the caller runs the
    fine stage and the codec: the two halves of the work on the two cores. Every stage draws from
    its own seeded generator, so the music does not depend on how the threads interleave.

    Each half runs its operators on one thread (``STAGE_THREADS``): decoding is a stream of
    small operators, and two streams that each ask for every core only fight over them
    (bench generate, 10 s: RTF 0.37 with torch's default threads, 0.31 with one each)."""

    def __init__(self, progress: Iterator[int]):
        self.progress, self.count = progress, 0
        self.error: BaseException | None = None
        self.finished = self.stopping = False
        self.condition = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="upstream-stages", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        torch.set_num_threads(STAGE_THREADS)  # this worker thread's own setting
        try:
            for count in self.progress:
                with self.condition:
                    if self.stopping:
                        return
                    self.count = count
                    self.condition.notify_all()
        except BaseException as exc:  # handed to the caller's thread by wait_for
            self.error = exc
        finally:
            with self.condition:
                self.finished = True
                self.condition.notify_all()

    def wait_for(self, count: int) -> None:
        with self.condition:
            self.condition.wait_for(lambda: self.count >= count or self.finished)
        if self.error is not None:
            raise self.error
        if self.count < count:
            raise RuntimeError("the upstream stages stopped early")

    def close(self) -> None:
        with self.condition:
            self.stopping = True
        self.thread.join()


class MusicLM:
    """The studio's and the CLI's one door into generation.

    The token loop (three stage LMs) and the codec run on ``device``; MuLan and the semantic
    tokenizer stay on the CPU: they run once per request, on a prompt or a clip, and hand over a
    few tokens."""

    def __init__(self, mulan, codec, stage1: TokenLM, stage2: TokenLM, stage3: TokenLM, semantic=None, parallel: bool = False,
                 prior=None):
        self.mulan, self.codec, self.semantic, self.prior = mulan, codec, semantic, prior
        self.stages = {"stage1": stage1, "stage2": stage2, "stage3": stage3}
        self.parallel = self.parallel_on_cpu = parallel  # run the upstream stages on their own thread (RunAhead)

    @property
    def device(self) -> torch.device:
        return self.stages["stage1"].device

    def to(self, device: str | torch.device = "auto") -> "MusicLM":
        """Move generation to another device (``auto``, ``cpu`` or ``cuda``); a ValueError if this
        machine lacks it. Upstream stages share the GPU with the caller, so they run in line there."""
        device = resolve_device(device) if isinstance(device, str) else device
        for model in (self.codec, *self.stages.values()):
            model.to(device)
        self.parallel = self.parallel_on_cpu and device.type == "cpu"
        return self

    @classmethod
    def load(cls, root: Path | None = None, device: str = "cpu", paths: dict[str, Path] | None = None,
             parallel: bool | None = None) -> "MusicLM":
        """Every model from ``assets/checkpoints/`` (or ``root``) on ``device`` (auto, cpu, cuda);
        ``paths`` overrides single models (a run folder or an exported file); ``parallel`` runs the
        upstream stages on their own thread (default: on a CPU this process may use two or more
        cores of)."""
        from .codec import load_codec
        from .lm import load_stage
        from .models import CHECKPOINT_DIR
        from .mulan import load_mulan, load_prior
        from .semantic import load_semantic

        root = Path(root) if root else CHECKPOINT_DIR
        where = {name: (paths or {}).get(name, root / f"{name}.safetensors")
                 for name in ("mulan", "prior", "semantic", "codec", "stage1", "stage2", "stage3")}
        if parallel is None:
            parallel = torch.get_num_threads() >= 2
        target = resolve_device(device)
        mulan = load_mulan(where["mulan"])
        model = cls(mulan, load_codec(where["codec"]),
                    *(load_stage(s, where[s]) for s in ("stage1", "stage2", "stage3")), semantic=load_semantic(where["semantic"]),
                    parallel=parallel, prior=load_prior(where["prior"]).check(mulan))
        return model.to(target)

    def warm_up(self) -> "MusicLM":
        """Load the text encoder and run every stage once, so a user's first click does not pay
        for lazy initialisation (the MiniLM load alone takes seconds)."""
        self.generate("warm-up", GenerationSettings(seconds=0.5))
        return self

    def conditioning(self, prompt: str) -> torch.Tensor:
        """Text → the 12 MuLan tokens M (1, 12): through the prior, when there is one, to the
        audio-side embedding the stages were trained on (``engine.mulan.AudioPrior``)."""
        embedding = self.mulan.embed_text([prompt])
        if self.prior is not None:
            embedding = self.prior(embedding, self.mulan.rvq)
        return self.mulan.tokens(embedding)

    def stream(self, prompt: str, settings: GenerationSettings = GenerationSettings(), prefix: torch.Tensor | None = None,
               prompt_tokens: dict[str, torch.Tensor] | None = None, unconditional: bool = False,
               schedule: list[tuple[float, torch.Tensor]] | None = None, tokens_out: dict | None = None,
               melody: np.ndarray | None = None, semantic: torch.Tensor | None = None) -> Iterator[Chunk]:
        """Yield audio chunks of about ``chunk_seconds`` as soon as they are decoded.

        ``prefix`` overrides M (e.g. MuLan audio tokens for continuation); ``schedule`` gives M per
        time instead, as (start second, M) pairs (story mode); ``prompt_tokens`` holds S (1, 1, Ts)
        and A (1, 12, Ta) of audio to continue from; ``unconditional`` ignores the text (the learned
        null M of conditioning dropout): the baseline the evaluation compares against;
        ``tokens_out``, if given, receives the S and A of the whole piece, prompt included;
        ``melody``: 25 Hz melody tokens of a hum (``engine.melody.melody_tokens``) for stage 1 to
        follow, repeated if the piece is longer than the hum; ``semantic`` (1, 1, ≥ the piece's 25 Hz
        frames): S given instead of drawn, so stage 1 is skipped — how the evaluation tells what
        stage 1 loses from what stages 2–3 lose."""
        settings.check()
        # one generator per stage: a stage's draws never depend on how the stages interleave
        device = self.device
        generators = [torch.Generator(device=device).manual_seed(settings.seed * 3 + i) for i in range(3)]
        timings = {"mulan": 0.0, "stage1": 0.0, "stage2": 0.0, "stage3": 0.0, "codec": 0.0}
        t0 = time.perf_counter()
        if schedule is None:
            schedule = [(0.0, None if unconditional else prefix if prefix is not None else self.conditioning(prompt))]
        schedule = [(start, m if m is None else m.to(device)) for start, m in schedule]
        negative = self.conditioning(settings.negative_prompt).to(device) if settings.negative_prompt.strip() and not unconditional else None
        timings["mulan"] = time.perf_counter() - t0
        s1, s2, s3 = (self.stages[n] for n in ("stage1", "stage2", "stage3"))
        frames = int(np.ceil(settings.seconds * SAMPLE_RATE / HOP))  # 50 Hz acoustic frames
        semantic_total = (frames + 1) // 2
        prompt_tokens = {name: tokens.to(device) for name, tokens in (prompt_tokens or {}).items()}
        given_s = prompt_tokens.get("S")
        given_a = prompt_tokens.get("A")
        # buffers the later stages read from while the earlier ones fill them
        s_buf = torch.full((1, 1, semantic_total + (given_s.shape[2] if given_s is not None else 0)), s2.cfg.layout.aligned[0].vocab, dtype=torch.long, device=device)
        offset_s = 0
        if given_s is not None:
            s_buf[:, :, : given_s.shape[2]] = given_s
            offset_s = given_s.shape[2]
        offset_a = given_a.shape[2] if given_a is not None else 0
        c_buf = torch.full((1, COARSE_LEVELS, frames + offset_a), s3.cfg.layout.aligned[0].vocab, dtype=torch.long, device=device)
        if given_a is not None:
            c_buf[:, :, :offset_a] = given_a[:, :COARSE_LEVELS]
        temps = settings.temperatures
        sampling = [replace(s.cfg.layout.sampling, temperature=t, top_k=settings.top_k) for s, t in zip((s1, s2, s3), temps)]
        sampling[0] = replace(sampling[0], guidance=1.0 if unconditional else settings.guidance)
        def at_rate(rate: float) -> Schedule:  # the schedule in one stage's frames
            return [(int(round(start * rate)), m) for start, m in schedule]

        hum = self.melody_stream(melody, offset_s, semantic_total)  # stage 1 follows it; stage 2 too if it was trained to
        if semantic is not None:
            if semantic.dim() != 3 or semantic.shape[:2] != (1, 1) or semantic.shape[2] < semantic_total:
                raise ValueError(f"semantic tokens must have shape (1, 1, ≥ {semantic_total}), got {tuple(semantic.shape)}")
            semantic = semantic.to(device)
            gen1 = (semantic[:, :, f:f + 1] for f in range(semantic_total))
        else:
            gen1 = windowed(s1, semantic_total, at_rate(s1.cfg.layout.rate), hum, sampling[0], generators[0], negative, given_s,
                            handover=int(STORY_HANDOVER * s1.cfg.layout.rate))
        gen2 = windowed(s2, frames, at_rate(s2.cfg.layout.rate), {"S": s_buf, **hum}, sampling[1], generators[1], None,
                        given_a[:, :COARSE_LEVELS] if given_a is not None else None, handover=int(STORY_HANDOVER * s2.cfg.layout.rate))
        gen3 = windowed(s3, frames, [(0, None)], {"A_coarse": c_buf}, sampling[2], generators[2], None,
                        given_a[:, COARSE_LEVELS:] if given_a is not None else None)
        a_buf = torch.zeros(1, self.codec.cfg.levels, frames + offset_a, dtype=torch.long, device=device)  # the whole piece, for tokens_out
        if given_a is not None:
            a_buf[:, :, :offset_a] = given_a
        streamer = CodecStreamer(self.codec)
        if given_a is not None:  # decoder context: the prompt's tokens, whose audio the caller has
            streamer.push(given_a[0])
        chunk = max(1, int(settings.chunk_seconds * SAMPLE_RATE / HOP))
        lookahead2 = s2.cfg.layout.aligned[0].lookahead + s2.cfg.layout.max_delay
        lookahead3 = s3.cfg.layout.aligned[0].lookahead + s3.cfg.layout.max_delay

        def coarse_frames() -> Iterator[int]:
            """Stage 2 frame by frame, stage 1 just ahead of it; yields how many coarse frames exist."""
            n_s = 0
            for n_c in range(frames):
                need_s = min(semantic_total, (n_c + lookahead2) // 2 + 1)
                while n_s < need_s:
                    t = time.perf_counter()
                    s_buf[:, :, offset_s + n_s] = next(gen1)[:, :, 0]
                    timings["stage1"] += time.perf_counter() - t
                    n_s += 1
                t = time.perf_counter()
                c_buf[:, :, offset_a + n_c] = next(gen2)[:, :, 0]
                timings["stage2"] += time.perf_counter() - t
                yield n_c + 1

        upstream = (RunAhead if self.parallel else InLine)(coarse_frames())
        pending: list[torch.Tensor] = []
        done = 0
        try:
            for f in range(frames):
                with operator_threads(STAGE_THREADS if self.parallel else None):
                    upstream.wait_for(min(frames, f + lookahead3 + 1))  # stage 3 reads the coarse frames a little ahead
                    t = time.perf_counter()
                    fine = next(gen3)
                    timings["stage3"] += time.perf_counter() - t
                    a_buf[:, :, offset_a + f] = torch.cat([c_buf[:, :, offset_a + f], fine[:, :, 0]], 1)
                    pending.append(a_buf[0, :, offset_a + f:offset_a + f + 1])
                    if len(pending) < chunk and f < frames - 1:
                        continue
                    t = time.perf_counter()
                    audio = streamer.push(torch.cat(pending, 1), final=f == frames - 1)
                    timings["codec"] += time.perf_counter() - t
                pending = []  # a chunk is decoded: hand it over with the caller's own thread settings back
                keep = min(len(audio), int(settings.seconds * SAMPLE_RATE) - done)
                done += keep
                yield Chunk(audio[:keep].cpu().numpy(), done / SAMPLE_RATE, {k: round(v, 4) for k, v in timings.items()})
        except (MemoryError, torch.OutOfMemoryError):
            raise GenerationError(f"out of memory while generating {settings.seconds:g} s; try a shorter piece") from None
        finally:  # a consumer that stops early (the studio's Stop) also stops the upstream stages
            upstream.close()
        if tokens_out is not None:
            tokens_out.update(S=s_buf, A=a_buf)

    def melody_stream(self, melody: np.ndarray | None, offset: int, frames: int) -> dict[str, torch.Tensor]:
        """The aligned melody input of stages 1 and 2 (25 Hz): the hum's tokens tiled over
        ``frames`` after ``offset`` prompt frames (pad there: a continuation's prompt has no hum)."""
        if melody is None:
            return {}
        stream = next((s for s in self.stages["stage1"].cfg.layout.aligned if s.name == "melody"), None)
        if stream is None:
            raise ValueError("this stage-1 checkpoint was trained without melody conditioning; train one with "
                             "python -m engine train stage1 --init assets/checkpoints/stage1.safetensors")
        melody = np.asarray(melody, dtype=np.int64)
        if melody.ndim != 1 or melody.size == 0 or melody.min() < 0 or melody.max() >= stream.vocab:
            raise ValueError(f"melody tokens must be a non-empty 1-D array of ids in [0, {stream.vocab})")
        out = torch.full((1, 1, offset + frames), stream.vocab, dtype=torch.long, device=self.device)
        out[0, 0, offset:] = torch.from_numpy(np.resize(melody, frames))
        return {"melody": out}

    def story(self, segments: list[tuple[str, float]], settings: GenerationSettings = GenerationSettings(),
              tokens_out: dict | None = None) -> Iterator[Chunk]:
        """One continuous piece through a timeline of (prompt, seconds) segments (paper §5,
        time-varying text): M changes at each boundary, every stage keeps its context, one codec
        stream decodes it all, so there is no gap and no click. Boundaries snap to the 25 Hz
        semantic grid, which keeps the total exact to one frame."""
        segments = check_story(segments)
        grid = 1 / SEMANTIC_RATE
        edges = np.round(np.cumsum([0.0] + [seconds for _, seconds in segments]) / grid) * grid
        schedule = [(float(start), self.conditioning(text)) for (text, _), start in zip(segments, edges[:-1])]
        yield from self.stream(segments[0][0], replace(settings, seconds=float(edges[-1])), schedule=schedule, tokens_out=tokens_out)

    def continuation(self, audio: np.ndarray, prompt: str | None = None, settings: GenerationSettings = GenerationSettings(),
                     tokens_out: dict | None = None) -> Iterator[Chunk]:
        """Continue a clip (24 kHz mono): the semantic and acoustic tokens of its last
        ``CONTEXT_SECONDS`` are every stage's prompt; M comes from ``prompt``, or, without one, from
        the clip's own MuLan audio embedding. Yields the clip first (cut to whole token frames),
        then ``settings.seconds`` of new music: the stream is the whole output."""
        audio = self._usable_clip(audio, "continue")
        m = self._clip_conditioning(audio, prompt)
        cut, context = self._context_tokens(audio)
        yield Chunk(audio[:cut], cut / SAMPLE_RATE)
        for chunk in self.stream(prompt or "", settings, prefix=m, prompt_tokens=context, tokens_out=tokens_out):
            yield Chunk(chunk.audio, cut / SAMPLE_RATE + chunk.seconds_done, chunk.stages)

    def inpaint(self, audio: np.ndarray, start: float, end: float, prompt: str | None = None,
                settings: GenerationSettings = GenerationSettings()) -> Iterator[Chunk]:
        """Regenerate the time range [start, end) s of a clip (JEN-1's inpainting task) and keep
        the rest. Everything before ``start`` is every stage's prompt, as in continuation, so the
        new music grows out of it without a seam; an autoregressive model cannot read the music
        after ``end``, so the new part runs ``INPAINT_FADE`` s past it and is cross-faded into the
        kept remainder. M: ``prompt``, or the clip's own style. ``settings.seconds`` is ignored."""
        audio = self._usable_clip(audio, "inpaint")
        length = len(audio) / SAMPLE_RATE
        if not (np.isfinite(start) and np.isfinite(end) and 0 <= start < end <= length):
            raise ValueError(f"the range to inpaint must satisfy 0 ≤ start < end ≤ {length:.2f} s (the clip's length); got {start}–{end}")
        grid = FRAME_PAIR / SAMPLE_RATE  # snap outward to whole 40 ms frames; the clip already ends on one
        start, end = np.floor(start / grid + 1e-6) * grid, min(np.ceil(end / grid - 1e-6) * grid, length)
        if end - start > MAX_SECONDS:
            raise ValueError(f"the range is {end - start:.0f} s long; the limit is {MAX_SECONDS:.0f} s")
        m = self._clip_conditioning(audio, prompt)
        first = int(round(start * SAMPLE_RATE))
        cut, context = self._context_tokens(audio[:first]) if first >= SAMPLE_RATE // 2 else (first, None)
        fade = min(INPAINT_FADE, length - end)
        yield Chunk(audio[:cut], cut / SAMPLE_RATE)
        new = replace(settings, seconds=end - cut / SAMPLE_RATE + fade)
        pieces, done = [], cut
        last = int(round(end * SAMPLE_RATE))
        for chunk in self.stream(prompt or "", new, prefix=m, prompt_tokens=context):
            keep = chunk.audio[: max(0, last - done)]  # up to `end` it streams; the fade is mixed below
            pieces.append(chunk.audio[len(keep):])
            done += len(chunk.audio)
            if len(keep):
                yield Chunk(keep, min(done, last) / SAMPLE_RATE, chunk.stages)
        tail = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        n = min(len(tail), int(round(fade * SAMPLE_RATE)))
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        mixed = tail[:n] * (1 - ramp) + audio[last:last + n] * ramp
        yield Chunk(np.concatenate([mixed, audio[last + n:]]), length)

    def _usable_clip(self, audio: np.ndarray, verb: str) -> np.ndarray:
        audio = np.asarray(audio, np.float32)
        audio = audio[: len(audio) // FRAME_PAIR * FRAME_PAIR]
        if len(audio) < SAMPLE_RATE // 2:
            raise ValueError(f"the clip is too short to {verb}: give at least half a second")
        if np.abs(audio).max() < SILENT_PEAK:
            raise ValueError(f"the clip is silent: there is nothing to {verb}")
        return audio

    def _clip_conditioning(self, audio: np.ndarray, prompt: str | None) -> torch.Tensor:
        """M from a new prompt, or from the clip's own MuLan audio embedding (its style)."""
        if prompt and prompt.strip():
            return self.conditioning(clean_prompt(prompt))
        return self.mulan.tokens(self.mulan.embed_audio(audio)[None])

    def _context_tokens(self, audio: np.ndarray) -> tuple[int, dict[str, torch.Tensor]]:
        """S and A of the last ``CONTEXT_SECONDS`` of ``audio`` as every stage's prompt, and how
        many samples of ``audio`` those tokens end at (whole 40 ms frame pairs)."""
        context = audio[-(int(CONTEXT_SECONDS * SAMPLE_RATE) // FRAME_PAIR * FRAME_PAIR):]
        with torch.inference_mode():
            a = self.codec.encode(torch.from_numpy(np.ascontiguousarray(context))[None].to(self.device))
            s = self.semantic.tokenize(context)[None, None].to(self.device)
        pairs = min(s.shape[2], a.shape[2] // 2)  # stage 2 reads S at half the acoustic rate: keep them aligned
        cut = len(audio) - len(context) + pairs * FRAME_PAIR
        return cut, {"S": s[:, :, :pairs], "A": a[:, :, :2 * pairs]}

    def generate(self, prompt: str, settings: GenerationSettings = GenerationSettings(), candidates: int = 1,
                 **kwargs) -> tuple[np.ndarray, dict]:
        """The whole piece at once: (audio, info with per-stage seconds and first-chunk latency).

        ``candidates`` > 1 generates that many pieces (seeds seed, seed+1, …) and keeps the one whose
        MuLan audio embedding is closest to the prompt's text embedding (re-ranking, as in the
        paper's MuLan-based selection); ``info["candidates"]`` lists every seed and its score."""
        if candidates < 1:
            raise ValueError(f"candidates must be at least 1, got {candidates}")
        if candidates == 1:
            return collect(self.stream(prompt, settings, **kwargs), settings)
        text = self.mulan.embed_text([prompt])[0]
        scored = []
        for seed in range(settings.seed, settings.seed + candidates):
            one = replace(settings, seed=seed)
            audio, info = collect(self.stream(prompt, one, **kwargs), one)
            scored.append((float(text @ self.mulan.embed_audio(audio)), seed, audio, info))
        best = max(scored, key=lambda row: row[0])
        return best[2], {**best[3], "candidates": [{"seed": seed, "mulan_score": round(score, 4)} for score, seed, _, _ in scored],
                         "wall_s": round(sum(row[3]["wall_s"] for row in scored), 3)}


def collect(chunks: Iterator[Chunk], settings: GenerationSettings) -> tuple[np.ndarray, dict]:
    """Drain any of the streams (text, story, continuation) into (audio, info): the DESIGN §4
    JSON fields — wall time, RTF over the generated seconds, first-chunk latency, per-stage seconds."""
    t0 = time.perf_counter()
    pieces, first, stages = [], None, {}
    for chunk in chunks:
        if first is None and chunk.stages:  # a continuation's first chunk is the given clip, not generated audio
            first = time.perf_counter() - t0
        pieces.append(chunk.audio)
        stages = chunk.stages or stages
    wall = time.perf_counter() - t0
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return audio, {"seconds": round(len(audio) / SAMPLE_RATE, 3), "sample_rate": SAMPLE_RATE, "wall_s": round(wall, 3),
                   "rtf": round(wall / max(settings.seconds, 1e-9), 4), "first_chunk_s": round(first or wall, 3),
                   "stages": stages, "seed": settings.seed}
