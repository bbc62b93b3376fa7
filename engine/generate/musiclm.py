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
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..audio import SAMPLE_RATE
from ..checkpoints import model_set
from ..integrity import hash_ahead, manifest_files
from ..features import SEMANTIC_RATE
from ..nn.codec import HOP, CodecStreamer, load_codec
from ..nn.lm import COARSE_LEVELS, DraftAbandoned, GenerationError, Schedule, TokenLM, kept_draft, load_stage, windowed
from ..nn.mulan import blend_embeddings, load_mulan, load_prior
from ..nn.sampling import Sampling
from ..nn.semantic import load_semantic
from ..prompts import StatedTempo, clean_prompt, stated_loudness, stated_tempo
from .drafts import TempoDraft
from .level import LevelStage, blend_loudness, target_loudness
from .requests import ContinueRequest, HumRequest, InpaintRequest, Request, StoryRequest, StyleRequest, TextRequest, check_story
from .settings import MAX_SECONDS, GenerationSettings, resolve_device
from .tone import ToneStage
from .upstream import InLine, Reads, StageJob, StageWorker, Watched, decode

CONTEXT_SECONDS = 10.0  # how much of a clip to continue the stages read (no crop is longer)
FRAME_PAIR = 2 * HOP  # samples of one 25 Hz semantic frame = two 50 Hz acoustic frames
INPAINT_FADE = 0.25  # seconds of cross-fade from the regenerated range into the kept remainder
STAGE_THREADS = 1  # operator threads of the caller's stage when the upstream stages run on their own processes
# A one-shot process (the CLI) makes up to this much music in line: its upstream workers would take
# about 2 s of both cores to start (each imports torch), which is what parallel decoding saves on
# 30 s (10 s: 2.6 s in line, 1.3 s on warm workers; 30 s: 6.6 s and 4.5 s).
ONE_SHOT_INLINE_SECONDS = 30.0
STORY_HANDOVER = 0.4  # seconds of the previous segment a story's next segment starts from (a window's context is longer)
TEMPO_DRAFT_SLACK = 0.04  # a draft within 4 % of the prior's ±4 % range is within 8 % of the stated bpm, the evaluation's tolerance


@dataclass
class Chunk:
    """A piece of streamed audio and where generation stands."""
    audio: np.ndarray  # float32, 24 kHz mono
    seconds_done: float
    stages: dict[str, float] = field(default_factory=dict)  # wall seconds spent per stage so far


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


def stage_seeds(settings: GenerationSettings) -> list[int]:
    """One seed per stage: a stage's draws never depend on how the stages interleave."""
    return [settings.seed * 3 + i for i in range(3)]


def piece_frames(seconds: float) -> tuple[int, int]:
    """A piece's length in 50 Hz acoustic frames and in 25 Hz semantic frames."""
    frames = int(np.ceil(seconds * SAMPLE_RATE / HOP))
    return frames, (frames + 1) // 2


def caller_threads() -> int | None:
    """Operator threads for the work done in the caller's thread. torch's OpenMP threads pay off
    from the main thread only: a 250-frame tempo draft took 0.50 s on 2 threads from the main
    thread, 1.39 s on 2 from another thread (a server's worker) and 0.68 s on 1. None: as set."""
    return None if threading.current_thread() is threading.main_thread() else 1


class MusicLM:
    """The studio's and the CLI's one door into generation.

    The token loop (three stage LMs) and the codec run on ``device``; MuLan and the semantic
    tokenizer stay on the CPU: they run once per request, on a prompt or a clip, and hand over a
    few tokens."""
    def __init__(self, mulan, codec, stage1: TokenLM, stage2: TokenLM, stage3: TokenLM, semantic=None, parallel: bool = False,
                 prior=None):
        self.mulan, self.codec, self.semantic, self.prior = mulan, codec, semantic, prior
        self.stages = {"stage1": stage1, "stage2": stage2, "stage3": stage3}
        self.parallel = self.parallel_on_cpu = parallel  # run the upstream stages on processes of their own (engine.upstream)
        self._upstream_workers: tuple[StageWorker, StageWorker] | None = None
        self._upstream_lock = threading.Lock()  # one piece at a time uses the workers; another runs in line
        self._prepared: dict[tuple[str, GenerationSettings], Future] = {}  # the latest ``prepare``d opening: (M, S) when done
        self._abandon_prepared = threading.Event()  # set: the opening being drawn is no longer wanted
        self._prepared_lock = threading.Lock()

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
        """Every model from ``assets/checkpoints/`` (or those ``root`` holds, ``checkpoints.model_set``)
        on ``device`` (auto, cpu, cuda); ``paths`` overrides single models (a run folder or an
        exported file); ``parallel`` runs the upstream stages on processes of their own, started
        here (default: on a CPU this process may use two or more cores of)."""
        where = {**model_set(root), **(paths or {})}
        hash_ahead([file for path in where.values() if Path(path).suffix == ".safetensors" for file in manifest_files(path)])
        if parallel is None:
            parallel = _cores_for_upstream()
        target = resolve_device(device)
        mulan = load_mulan(where["mulan"])
        model = cls(mulan, load_codec(where["codec"]),
                    *(load_stage(s, where[s]) for s in ("stage1", "stage2", "stage3")), semantic=load_semantic(where["semantic"]),
                    parallel=parallel, prior=load_prior(where["prior"]).check(mulan)).to(target)
        if model.parallel:
            model.upstream_workers()  # they start while the caller gets ready
        return model

    def start_upstream(self) -> None:
        """From now on, run the upstream stages on processes of their own (on a CPU this process may
        use two or more cores of), starting them now. A server loads in line and calls this once
        idle: workers still importing torch would hold up the first requests."""
        self.parallel_on_cpu = _cores_for_upstream()
        self.parallel = self.parallel_on_cpu and self.device.type == "cpu"
        if self.parallel:
            self.upstream_workers()

    def warm_up(self) -> "MusicLM":
        """Load the text encoder and run every stage once, so a user's first click does not pay
        for lazy initialisation."""
        for step in self.warm_up_steps():
            step()
        return self

    def warm_up_steps(self) -> list[Callable[[], object]]:
        """``warm_up`` in parts of 2–3 s on a 2-core CPU, for a server that answers a request
        arriving in between before it warms up the rest."""
        clip = (0.3 * np.sin(2 * np.pi * 220 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
        short = GenerationSettings(seconds=0.5)
        return [lambda: self.generate("warm-up, 120 bpm", short),  # a tempo: the drafts run too
                lambda: collect(self.continuation(clip, None, short), short)]  # a clip's analysis too

    def read_tempo(self, prompt: str) -> StatedTempo | None:
        """What the prompt says of its tempo, within the prior's tolerance (None without a prior:
        nothing here could act on it)."""
        return stated_tempo(prompt, self.prior.cfg.tempo_tolerance) if self.prior is not None else None

    def conditioning(self, prompt: str) -> torch.Tensor:
        """Text → the 12 MuLan tokens M (1, 12), at the tempo the prompt states (``conditioning_at``)."""
        return self.conditioning_at(prompt, self.read_tempo(prompt))

    def conditioning_at(self, prompt: str, tempo: StatedTempo | None, readings: int = 1) -> torch.Tensor:
        """Text → the 12 MuLan tokens M (1, 12): through the prior, when there is one, to the
        audio-side embedding the stages were trained on (``engine.nn.mulan.AudioPrior``), among
        training windows at ``tempo`` (the prompt's, as ``read_tempo`` reads it) and as loud as
        the prompt asks (``stated_loudness``). ``readings`` > 1:
        up to that many rows, that M and then the prior's other readings (``AudioPrior.alternatives``)."""
        with operator_threads(caller_threads()):
            embedding = self.mulan.embed_text([prompt])
            if self.prior is not None:
                span, loudness = tempo.range if tempo is not None else None, stated_loudness(prompt)
                embedding = (self.prior.alternatives(embedding, self.mulan.rvq, span, readings, loudness) if readings > 1
                             else self.prior(embedding, self.mulan.rvq, span, loudness))
            return self.mulan.tokens(embedding)

    def blend_conditioning(self, blend: list[tuple[str | np.ndarray, float]], tempo: StatedTempo | None = None) -> torch.Tensor:
        """M (1, 12) for a weighted blend of prompts and reference clips (live mode's sliders,
        ``StyleRequest``): each prompt read as ``conditioning_at`` reads it, at ``tempo`` or else
        at the one it states, each clip (24 kHz mono) by MuLan's audio tower — both land in the
        audio-side space the stages were trained on —, mixed by weight, then quantized. One
        prompt alone is exactly ``conditioning_at``; one clip alone, its own style."""
        with operator_threads(caller_threads()):
            return self._blended_tokens(self._source_embeddings(blend, tempo), [weight for _, weight in blend])

    def _source_embeddings(self, blend: list[tuple[str | np.ndarray, float]], tempo: StatedTempo | None) -> torch.Tensor:
        """(sources, 128): each source of a blend on the audio side (``_audio_side_embedding``)."""
        return torch.stack([self._audio_side_embedding(source, tempo) for source, _ in blend])

    def _blended_tokens(self, embeddings: torch.Tensor, weights: list[float]) -> torch.Tensor:
        """M (1, 12) of the weighted blend of ``embeddings`` (one source: its own tokens)."""
        return self.mulan.tokens(embeddings if len(weights) == 1 else blend_embeddings(embeddings, weights))

    def _audio_side_embedding(self, source: str | np.ndarray, tempo: StatedTempo | None) -> torch.Tensor:
        """A prompt or a clip → its (128,) MuLan embedding on the audio side (a prompt through the prior)."""
        if not isinstance(source, str):
            return self.mulan.embed_audio(source)
        embedding = self.mulan.embed_text([source])
        if self.prior is not None:
            span = tempo or self.read_tempo(source)
            embedding = self.prior(embedding, self.mulan.rvq, span.range if span else None, stated_loudness(source))
        return embedding[0]

    def stream(self, prompt: str, settings: GenerationSettings = GenerationSettings(), prefix: torch.Tensor | None = None,
               prompt_tokens: dict[str, torch.Tensor] | None = None, unconditional: bool = False,
               schedule: list[tuple[float, torch.Tensor]] | None = None, tokens_out: dict | None = None,
               melody: np.ndarray | None = None, semantic: torch.Tensor | None = None, decoder: CodecStreamer | None = None,
               anchor: torch.Tensor | None = None, drafts: dict[int, TempoDraft] | None = None,
               dynamics: list[tuple[float, float | None]] | None = None, tone: ToneStage | None = None) -> Iterator[Chunk]:
        """Yield audio chunks of about ``chunk_seconds`` as soon as they are decoded.

        ``prefix`` overrides M (e.g. MuLan audio tokens for continuation); ``schedule`` gives M per
        time instead, as (start second, M) pairs (story mode); ``prompt_tokens`` holds S (1, 1, Ts)
        and A (1, 12, Ta) of audio to continue from; ``unconditional`` ignores the text (the learned
        null M of conditioning dropout): the baseline the evaluation compares against;
        ``tokens_out``, if given, receives the S and A of the whole piece, prompt included, as they
        are made, and under ``decoded`` how many frames of A (prompt included) are in the audio so far;
        ``melody``: 25 Hz melody tokens of a hum (``engine.melody.melody_tokens``) for stage 1 to
        follow, repeated if the piece is longer than the hum; ``semantic`` (1, 1, ≥ the piece's 25 Hz
        frames): S given instead of drawn, so stage 1 is skipped — how the evaluation tells what
        stage 1 loses from what stages 2–3 lose; ``decoder``: the codec stream of the music so far
        (live mode), which already holds the prompt's tokens and is left open for what follows;
        ``anchor``: M of the words alone beside a style's ``prefix`` (words and clips blended), for
        stage 1's double guidance: the words at ``guidance``, what the clips add at ``style_guidance``;
        ``drafts``: schedule index → the tempo draft of that segment's opening (``tempo_draft_of``;
        a text prompt that states a bpm gets one of its own); ``dynamics``: (start second, LUFS or None)
        the level stage steers each segment to (default: what ``prompt``'s words state, throughout);
        ``tone``: the tone stage a style's chunks pass through before the level stage."""
        settings.check()
        device = self.device
        seeds = stage_seeds(settings)
        timings = {"mulan": 0.0, "stage1": 0.0, "stage2": 0.0, "stage3": 0.0, "codec": 0.0}
        t0 = time.perf_counter()
        from_text = schedule is None and not unconditional and prefix is None  # M comes from this prompt, read for its tempo once
        tempo = self.read_tempo(prompt) if from_text else None
        # tempo drafts: text alone (no S, clip, hum or M given) that states a bpm the tokens can be read for
        text_only = from_text and semantic is None and melody is None and not prompt_tokens
        drafts = dict(drafts or {})
        ready = self._prepared_opening((prompt, settings) if text_only else None)
        prepared_s = ready[1] if ready else None  # the opening's S, drawn ahead by ``prepare``
        if ready:
            m = ready[0].clone()
            schedule = [(0.0, m)]
        elif from_text:
            m, opening = self.words_conditioning(prompt, tempo, settings, drafting=text_only)
            schedule = [(0.0, m)]
            if opening:
                drafts[0] = opening
        elif schedule is None:
            schedule = [(0.0, None if unconditional else prefix)]
        schedule = [(start, m if m is None else m.to(device)) for start, m in schedule]
        drafts = {i: replace(draft, readings=draft.readings.to(device)) for i, draft in drafts.items()}
        negative = None if unconditional else self._negative(settings)
        timings["mulan"] = time.perf_counter() - t0
        s1, s2, s3 = (self.stages[n] for n in ("stage1", "stage2", "stage3"))
        frames, semantic_total = piece_frames(settings.seconds)
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
        sampling = self._sampling(settings, unconditional)
        def at_rate(rate: float, made: int = 0) -> Schedule:  # the schedule in one stage's frames after the ``made`` ones
            return [(max(0, int(round(start * rate)) - made), m) for start, m in schedule]

        hum = self.melody_stream(melody, offset_s, semantic_total)  # stage 1 follows it; stage 2 too if it was trained to
        job1 = None
        drafted = 0
        if prepared_s is not None:
            drafted = prepared_s.shape[2]
            s_buf[:, :, :drafted] = prepared_s.to(device)
        elif semantic is None and 0 in drafts and offset_s == 0:  # the opening's draft, here: the first chunk waits for it anyway
            t = time.perf_counter()
            opening = at_rate(s1.cfg.layout.rate)[1][0] if len(schedule) > 1 else semantic_total  # a draft stays in its segment
            drafted = self.tempo_draft(drafts.pop(0), opening, sampling[0], seeds[0], negative, schedule[0][1], s_buf)
            timings["stage1"] = time.perf_counter() - t
        if semantic is not None:
            if semantic.dim() != 3 or semantic.shape[:2] != (1, 1) or semantic.shape[2] < semantic_total:
                raise ValueError(f"semantic tokens must have shape (1, 1, ≥ {semantic_total}), got {tuple(semantic.shape)}")
            s_buf[:, :, offset_s:] = semantic[:, :, :semantic_total].to(device)
        elif drafted < semantic_total:
            job1 = StageJob(semantic_total, at_rate(s1.cfg.layout.rate, drafted), hum, sampling[0], seeds[0], s_buf, offset_s, negative,
                            s_buf[:, :, :offset_s + drafted].clone() if drafted else given_s, int(STORY_HANDOVER * s1.cfg.layout.rate),
                            ready=drafted, anchor=None if anchor is None else anchor.to(device), drafts=drafts)
            job1.progress[1] = timings["stage1"]
        s_reads = s2.cfg.layout.aligned[0]  # S, read ahead of each coarse frame
        job2 = StageJob(frames, at_rate(s2.cfg.layout.rate), {"S": s_buf, **hum}, sampling[1], seeds[1], c_buf, offset_a, None,
                        given_a[:, :COARSE_LEVELS] if given_a is not None else None, int(STORY_HANDOVER * s2.cfg.layout.rate),
                        reads=Reads(semantic_total, s_reads.lookahead + s2.cfg.layout.max_delay, int(1 / s_reads.frames_per_position)) if job1 else None)
        levels = self.codec.cfg.levels if settings.fine_stage else COARSE_LEVELS  # what the codec decodes
        gen3 = windowed(s3, frames, [(0, None)], {"A_coarse": c_buf}, sampling[2], torch.Generator(device=device).manual_seed(seeds[2]), None,
                        given_a[:, COARSE_LEVELS:] if given_a is not None else None) if settings.fine_stage else None
        reads3 = Reads(frames, s3.cfg.layout.aligned[0].lookahead + s3.cfg.layout.max_delay if gen3 is not None else 0)
        a_buf = torch.zeros(1, self.codec.cfg.levels, frames + offset_a, dtype=torch.long, device=device)  # the whole piece, for tokens_out
        if given_a is not None:
            a_buf[:, :, :offset_a] = given_a
        level = (LevelStage.of_targets(dynamics or [(0.0, target_loudness(prompt))], after_music=given_a is not None)
                 if settings.level_stage and not unconditional else None)
        streamer = decoder or CodecStreamer(self.codec)
        if given_a is not None and decoder is None:  # decoder context: the prompt's tokens, whose audio the caller has
            streamer.push(given_a[0, :levels])
        if tokens_out is not None:
            tokens_out.update(S=s_buf, A=a_buf, decoded=offset_a)
        chunk = max(1, int(settings.chunk_seconds * SAMPLE_RATE / HOP))
        jobs = [job for job in (job1, job2) if job is not None]
        coarse, workers = self._start_upstream(job1, job2)
        pending: list[torch.Tensor] = []
        done = 0
        try:
            for f in range(frames):
                with operator_threads(STAGE_THREADS if workers else caller_threads()):
                    coarse.wait_for(reads3.needed(f))  # stage 3 reads the coarse frames a little ahead
                    a_buf[:, :COARSE_LEVELS, offset_a + f] = c_buf[:, :, offset_a + f]
                    if gen3 is not None:
                        t = time.perf_counter()
                        a_buf[:, COARSE_LEVELS:, offset_a + f] = next(gen3)[:, :, 0]
                        timings["stage3"] += time.perf_counter() - t
                    pending.append(a_buf[0, :levels, offset_a + f:offset_a + f + 1])
                    if len(pending) < chunk and f < frames - 1:
                        continue
                    t = time.perf_counter()
                    audio = streamer.push(torch.cat(pending, 1), final=f == frames - 1 and decoder is None)
                    timings["codec"] += time.perf_counter() - t
                    if tokens_out is not None:
                        tokens_out["decoded"] = offset_a + f + 1
                pending = []  # a chunk is decoded: hand it over with the caller's own thread settings back
                keep = min(len(audio), int(settings.seconds * SAMPLE_RATE) - done)
                timings.update({f"stage{i}": job.seconds for i, job in ((1, job1), (2, job2)) if job is not None})
                out, start = audio[:keep].cpu().numpy(), done / SAMPLE_RATE
                out = tone(out) if tone else out
                done += keep
                yield Chunk(level(out, start) if level else out, done / SAMPLE_RATE, {k: round(v, 4) for k, v in timings.items()})
        except (MemoryError, torch.OutOfMemoryError):
            raise GenerationError(f"out of memory while generating {settings.seconds:g} s; try a shorter piece") from None
        finally:  # a consumer that stops early (the studio's Stop) also stops the upstream stages
            for job in jobs:
                job.stop.fill_(True)
            if workers:
                for worker in workers:
                    worker.finish()
                self._upstream_lock.release()

    def _negative(self, settings: GenerationSettings) -> torch.Tensor | None:
        """M of the negative prompt, the unconditional branch of stage 1's guidance (None: the learned null M)."""
        return self.conditioning(settings.negative_prompt).to(self.device) if settings.negative_prompt.strip() else None

    def _sampling(self, settings: GenerationSettings, unconditional: bool = False) -> list[Sampling]:
        """How each stage draws under ``settings`` (``unconditional``: no guidance)."""
        sampling = [replace(self.stages[name].cfg.layout.sampling, temperature=t, top_k=settings.top_k)
                    for name, t in zip(("stage1", "stage2", "stage3"), settings.temperatures)]
        for stage, scale in enumerate((settings.guidance, settings.coarse_guidance)):
            sampling[stage] = replace(sampling[stage], guidance=1.0 if unconditional else scale)
        sampling[0] = replace(sampling[0], anchor_guidance=settings.style_guidance)
        return sampling

    def prepare(self, request: Request) -> bool:
        """Draw ahead what a request's first chunk would wait for: a text prompt's tempo draft
        (the rest of the wait is a fraction of a second). Its run then starts from that draft,
        sample for sample the piece it would have been; a run that comes while the draft is still
        being drawn waits for it rather than drawing it twice. The studio prepares the next take
        while the user listens or types. Only the latest request is kept, and a draft still being
        drawn is abandoned when another request is prepared or another piece is run. Whether there
        was a draft to draw."""
        if not isinstance(request, TextRequest):
            return False
        settings, tempo = request.settings, self.read_tempo(request.prompt)
        key, future = (request.prompt, settings), Future()
        with self._prepared_lock:
            if key in self._prepared:
                return True
            self._abandon_drawing()  # the prompt moved on: an opening still being drawn is wasted work
            if not self.drafts_tempo(tempo, settings.tempo_drafts):
                return False
            self._prepared, abandoned = {key: future}, self._abandon_prepared
        try:
            m, draft = self.words_conditioning(request.prompt, tempo, settings)
            m, s_buf = m.to(self.device), torch.zeros(1, 1, piece_frames(settings.seconds)[1], dtype=torch.long, device=self.device)
            drafted = self.tempo_draft(replace(draft, readings=draft.readings.to(self.device)), s_buf.shape[2], self._sampling(settings)[0],
                                       stage_seeds(settings)[0], self._negative(settings), m, s_buf, abandoned.is_set)
            future.set_result((m, s_buf[:, :, :drafted].clone()))
        except DraftAbandoned as exc:  # a newer prompt or a run of another piece took over
            future.set_exception(exc)
            return False
        except BaseException as exc:
            with self._prepared_lock:
                self._prepared.pop(key, None)
            future.set_exception(exc)
            raise
        return True

    def _abandon_drawing(self) -> None:
        """Abandon the opening still being drawn, if one is, so that it stops taking the cores
        (with the lock held); one already drawn stays for its click."""
        if any(not future.done() for future in self._prepared.values()):
            self._abandon_prepared.set()
            self._prepared, self._abandon_prepared = {}, threading.Event()

    def _prepared_opening(self, key: tuple[str, GenerationSettings] | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(M, S of the opening) ``prepare`` drew for exactly this (prompt, settings), waiting for it
        if it is still being drawn; None if it drew none (or failed: the run draws its own). Another
        opening still being drawn is abandoned: this run is what the cores are for now."""
        with self._prepared_lock:
            future = self._prepared.get(key)
            if future is None:
                self._abandon_drawing()
                return None
        try:
            return future.result()
        except Exception:
            return None

    def drafts_tempo(self, tempo: StatedTempo | None, count: int) -> bool:
        """Whether a text prompt gets tempo drafts: ``count`` ≥ 2, it states a bpm (a tempo word's
        range is wide, and half or double of any tempo falls in it), and there is a prior to give
        readings and a tokenizer whose tokens can be read for tempo."""
        return (count >= 2 and tempo is not None and tempo.bpm is not None and self.prior is not None and self.semantic is not None
                and self.semantic.reads_rhythm)

    def words_conditioning(self, words: str, tempo: StatedTempo | None, settings: GenerationSettings,
                           drafting: bool = True) -> tuple[torch.Tensor, TempoDraft | None]:
        """M (1, 12) of ``words`` at their stated ``tempo``, and, when ``drafting`` and a draft pays
        (``drafts_tempo``), the tempo draft whose kept reading will be written into that M."""
        if drafting and self.drafts_tempo(tempo, settings.tempo_drafts):
            draft = self.tempo_draft_of(words, tempo, settings)
            return draft.readings[:1].clone(), draft
        return self.conditioning_at(words, tempo), None

    def tempo_draft_of(self, words: str, tempo: StatedTempo, settings: GenerationSettings) -> TempoDraft:
        """A draft of stage 1's opening under ``settings.tempo_drafts`` readings of ``words`` at
        their stated ``tempo`` (``engine.generate.drafts``); ``drafts_tempo`` says when one pays."""
        return TempoDraft(self.conditioning_at(words, tempo, settings.tempo_drafts), tempo.range, self.semantic.onset_table().cpu(),
                          SEMANTIC_RATE, int(settings.tempo_draft_seconds * SEMANTIC_RATE), TEMPO_DRAFT_SLACK)

    def tempo_draft(self, draft: TempoDraft, frames: int, sampling: Sampling, seed: int, negative: torch.Tensor | None,
                    m: torch.Tensor, s_buf: torch.Tensor, abandoned: Callable[[], bool] | None = None) -> int:
        """Draft stage 1's opening here, before the stages start (at most ``frames`` and its window):
        the kept draft goes into ``s_buf``, its reading into ``m``. Returns how many S frames were drafted.
        ``abandoned``: asked after every frame (``kept_draft``)."""
        s1 = self.stages["stage1"]
        length = min(frames, draft.frames, s1.cfg.layout.positions)
        with operator_threads(caller_threads()):
            generator = torch.Generator(device=self.device).manual_seed(seed)
            for n, frame in enumerate(kept_draft(s1, draft, m, length, {}, sampling, generator, negative, None, None, abandoned)):
                s_buf[:, :, n] = frame[:, :, 0]
        return length

    def _start_upstream(self, job1: StageJob | None, job2: StageJob):
        """Start the stages before the caller's: (what to wait on for coarse frames, the workers
        used). In parallel, stages 1 and 2 each decode on a process of their own; otherwise (a GPU,
        one core, or the workers busy with another piece) they run in line on this thread."""
        s1, s2 = self.stages["stage1"], self.stages["stage2"]
        if self.parallel and self._upstream_lock.acquire(blocking=False):
            try:
                workers = self.upstream_workers()
                for job in (job1, job2):
                    if job is not None:
                        job.share()
                if job1 is not None:
                    workers[0].submit(s1, job1)
                workers[1].submit(s2, job2, watches=job1)
            except BaseException:
                self._upstream_lock.release()
                raise
            return Watched(job2, workers), workers
        semantic = InLine(decode(s1, job1)) if job1 is not None else None
        return InLine(decode(s2, job2, semantic)), ()

    def upstream_workers(self) -> tuple[StageWorker, StageWorker]:
        """The processes of stages 1 and 2: started on first use (and again if one died), given
        their models at once so the first piece does not wait for the transfer."""
        if self._upstream_workers is None or not all(w.alive for w in self._upstream_workers):
            for worker in self._upstream_workers or ():
                worker.close()
            self._upstream_workers = (StageWorker("stage1"), StageWorker("stage2"))
            for worker, name in zip(self._upstream_workers, ("stage1", "stage2")):
                worker.load(self.stages[name])
        return self._upstream_workers

    def close(self) -> None:
        """Stop the upstream stages' processes now (a server that loads new checkpoints; otherwise
        they end with this process)."""
        for worker in self._upstream_workers or ():
            worker.close()
        self._upstream_workers = None

    def worker_pids(self) -> list[int]:
        """The process ids of the upstream stages' workers (none while they run in line)."""
        return [worker.process.pid for worker in self._upstream_workers or () if worker.alive]

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
        schedule, drafts, dynamics = [], {}, []
        for i, ((text, _), start) in enumerate(zip(segments, edges[:-1])):  # each segment that states a bpm is drafted for it
            m, draft = self.words_conditioning(text, self.read_tempo(text), settings)
            schedule.append((float(start), m))
            dynamics.append((float(start), target_loudness(text)))
            if draft:
                drafts[i] = draft
        yield from self.stream(segments[0][0], replace(settings, seconds=float(edges[-1])), schedule=schedule, tokens_out=tokens_out,
                               drafts=drafts, dynamics=dynamics)

    def continuation(self, audio: np.ndarray, prompt: str | None = None, settings: GenerationSettings = GenerationSettings(),
                     tokens_out: dict | None = None) -> Iterator[Chunk]:
        """Continue a clip (24 kHz mono): the semantic and acoustic tokens of its last
        ``CONTEXT_SECONDS`` are every stage's prompt; M comes from ``prompt``, or, without one, from
        the clip's own MuLan audio embedding. Yields the clip first (cut to whole token frames),
        then ``settings.seconds`` of new music: the stream is the whole output."""
        audio = self._usable_clip(audio)
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
        audio = self._usable_clip(audio)
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

    def _usable_clip(self, audio: np.ndarray) -> np.ndarray:
        """A clip (checked by its request) cut to whole token pairs."""
        audio = np.asarray(audio, np.float32)
        return audio[: len(audio) // FRAME_PAIR * FRAME_PAIR]

    def _clip_conditioning(self, audio: np.ndarray, prompt: str | None) -> torch.Tensor:
        """M from a new prompt, or from the clip's own MuLan audio embedding (its style)."""
        if prompt and prompt.strip():
            return self.conditioning(clean_prompt(prompt))
        return self.blend_conditioning([(audio, 1.0)])

    def _context_tokens(self, audio: np.ndarray) -> tuple[int, dict[str, torch.Tensor]]:
        """S and A of the last ``CONTEXT_SECONDS`` of ``audio`` as every stage's prompt, and how
        many samples of ``audio`` those tokens end at (whole 40 ms frame pairs)."""
        context = audio[-(int(CONTEXT_SECONDS * SAMPLE_RATE) // FRAME_PAIR * FRAME_PAIR):]
        with torch.inference_mode(), operator_threads(caller_threads()):
            a = self.codec.encode(torch.from_numpy(np.ascontiguousarray(context))[None].to(self.device))
            s = self.semantic.tokenize(context)[None, None].to(self.device)
        pairs = min(s.shape[2], a.shape[2] // 2)  # stage 2 reads S at half the acoustic rate: keep them aligned
        cut = len(audio) - len(context) + pairs * FRAME_PAIR
        return cut, {"S": s[:, :, :pairs], "A": a[:, :, :2 * pairs]}

    def generate(self, prompt: str, settings: GenerationSettings = GenerationSettings(), **kwargs) -> tuple[np.ndarray, dict]:
        """``stream``'s whole piece at once: (audio, info with per-stage seconds and first-chunk latency)."""
        return collect(self.stream(prompt, settings, **kwargs), settings)

    # -- the one door: a request of any mode ------------------------------------------------
    def run(self, request: Request) -> Iterator[Chunk]:
        """The stream of chunks a request asks for. Every caller (the CLI, the studio, the
        evaluations) goes through here, so a mode is told from another in this one place."""
        settings = request.settings
        if isinstance(request, TextRequest):
            return self.stream(request.prompt, settings)
        if isinstance(request, HumRequest):
            return self.stream(request.style, settings, melody=request.melody)
        if isinstance(request, StoryRequest):
            return self.story(list(request.segments), settings)
        if isinstance(request, ContinueRequest):
            return self.continuation(request.clip, request.prompt, settings)
        if isinstance(request, InpaintRequest):
            return self.inpaint(request.clip, request.start, request.end, request.prompt, settings)
        if isinstance(request, StyleRequest):
            return self.style(request)
        raise TypeError(f"not a generation request: {type(request).__name__}")

    def style(self, request: StyleRequest, tokens_out: dict | None = None) -> Iterator[Chunk]:
        """New music in the style of reference clips: M from the blend of the clips and the words
        (``blend_conditioning``). Words beside the clips are guided on their own too (double
        guidance): stage 1 follows the words at ``guidance`` and what the clips add at
        ``style_guidance``; clips alone are followed at ``style_guidance``. Stage 2 is guided toward the
        blend at ``style_coarse_guidance``: the clips' timbre is its to make. After the codec the piece
        takes the clips' loudness (the level stage) and, with ``tone_match``, their spectral balance
        (the tone stage). ``tokens_out``: as ``stream``'s."""
        settings, blend = replace(request.settings, coarse_guidance=request.settings.style_coarse_guidance), request.blend()
        with operator_threads(caller_threads()):
            embeddings = self._source_embeddings(blend, None)  # each source read once: the blend and the words alone share them
            prefix = self._blended_tokens(embeddings, [weight for _, weight in blend])
            worded = isinstance(blend[0][0], str)  # words of weight 0 are not in the blend
            anchor = self.mulan.tokens(embeddings[:1]) if worded else None  # the words alone, as ``conditioning`` reads them
        shaping = {"dynamics": [(0.0, blend_loudness(blend))], "tone": ToneStage.of_blend(blend) if settings.tone_match else None}
        if not worded:
            return self.stream("", replace(settings, guidance=settings.style_guidance), prefix=prefix, tokens_out=tokens_out, **shaping)
        return self.stream(request.prompt, settings, prefix=prefix, anchor=anchor, tokens_out=tokens_out, **shaping)

    def render(self, request: Request, candidates: int = 1) -> tuple[np.ndarray, dict]:
        """The whole piece a request asks for: (audio, info: wall time, RTF over the new music,
        first-chunk latency, per-stage seconds, seed).

        ``candidates`` > 1 (text and hum) generates that many pieces (seeds seed, seed+1, …) and
        keeps the one whose MuLan audio embedding is closest to the prompt's text embedding
        (re-ranking, as in the paper's MuLan-based selection); ``info["candidates"]`` lists every
        seed and its score."""
        if candidates < 1:
            raise ValueError(f"candidates must be at least 1, got {candidates}")
        timed = replace(request.settings, seconds=request.generated_seconds)
        if candidates == 1:
            return collect(self.run(request), timed)
        if not isinstance(request, (TextRequest, HumRequest)):
            raise ValueError("several candidates are drawn for text and hum only")
        text = self.mulan.embed_text([request.prompt if isinstance(request, TextRequest) else request.style])[0]
        scored = []
        for seed in range(request.settings.seed, request.settings.seed + candidates):
            one = replace(request, settings=replace(request.settings, seed=seed))
            audio, info = collect(self.run(one), replace(timed, seed=seed))
            scored.append((float(text @ self.mulan.embed_audio(audio)), seed, audio, info))
        best = max(scored, key=lambda row: row[0])
        return best[2], {**best[3], "candidates": [{"seed": seed, "mulan_score": round(score, 4)} for score, seed, _, _ in scored],
                         "wall_s": round(sum(row[3]["wall_s"] for row in scored), 3)}


def _cores_for_upstream() -> bool:
    """Whether this process may use two or more cores: the upstream stages then pay for processes of their own."""
    return torch.get_num_threads() >= 2


def collect(chunks: Iterator[Chunk], settings: GenerationSettings) -> tuple[np.ndarray, dict]:
    """Drain any of the streams (text, story, continuation) into (audio, info): the CLI's
    ``--json`` fields — wall time, RTF over the generated seconds, first-chunk latency, per-stage seconds."""
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
