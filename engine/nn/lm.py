"""The three MusicLM stages as one token LM over declared token layouts (paper §3.2, Figure 2).

Every stage is the same decoder-only Transformer (``engine.transformer``); what differs is a
small declaration of its token layout:

- an optional **prefix** stream placed before the sequence, one token per position (the 12
  MuLan tokens M), which classifier-free guidance can replace by learned "null" tokens;
- **aligned** conditioning streams whose frames are added to each generated position, read a few
  frames ahead (S for stage 2, the coarse acoustic levels for stage 3). The paper prepends them
  as a prefix; aligning them in time gives the same conditional model with a sequence half as
  long, and lets every stage run as soon as its inputs exist, which is what makes streaming
  possible on a CPU. An aligned stream may be optional (a hum's melody tokens for stages 1 and
  2): trained with dropout, it is all pad ids when absent;
- the **target** stream it generates: ``levels`` codebooks per position, with MusicGen's delay
  pattern (level k lags k positions) so each level still sees the coarser levels of its frame.

Stage 1 p(S | M, melody), stage 2 p(A_coarse | S, M, melody), stage 3 p(A_fine | A_coarse) are three
``StageLayout`` values at the bottom of this file.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import config_without_preset, load_trained
from ..melody import VOCAB as MELODY_VOCAB
from .sampling import Sampling, guide, sample
from .transformer import Transformer, TransformerConfig


class GenerationError(RuntimeError):
    """Generation failed in a way the user should hear about in one sentence."""


class DraftAbandoned(Exception):
    """A draft nobody will use any more: what it was drawn for changed while it was drawn."""


@dataclass(frozen=True)
class Stream:
    name: str
    vocab: int = 1024
    levels: int = 1
    frames_per_position: float = 1.0  # an aligned stream at 25 Hz under a 50 Hz target: 0.5
    lookahead: int = 0  # aligned streams: how many positions ahead each position reads
    dropout: float = 0.0  # training: the whole stream becomes pad ids this often (conditioning a user may not give)


@dataclass(frozen=True)
class StageLayout:
    name: str
    target: Stream
    rate: float  # target positions per second
    prefix: Stream | None = None
    aligned: tuple[Stream, ...] = ()
    delay: bool = True  # delay pattern across target levels
    crop_seconds: float = 10.0
    sampling: Sampling = field(default_factory=Sampling)

    @property
    def positions(self) -> int:
        return int(self.crop_seconds * self.rate)

    @property
    def max_delay(self) -> int:
        return self.target.levels - 1 if self.delay else 0


@dataclass(frozen=True)
class LMConfig:
    layout: StageLayout
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    cond_dropout: float = 0.1  # training: drop M for classifier-free guidance

    @staticmethod
    def from_dict(d: dict) -> "LMConfig":
        lay = d["layout"]
        layout = StageLayout(
            name=lay["name"], target=Stream(**lay["target"]), rate=lay["rate"],
            prefix=Stream(**lay["prefix"]) if lay["prefix"] else None, aligned=tuple(Stream(**s) for s in lay["aligned"]),
            delay=lay["delay"], crop_seconds=lay["crop_seconds"], sampling=Sampling(**lay["sampling"]))
        return LMConfig(layout, TransformerConfig(**d["transformer"]), d["cond_dropout"])


class TokenLM(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.cfg, lay, d = cfg, cfg.layout, cfg.transformer.dim
        self.transformer = Transformer(cfg.transformer)
        self.bos = nn.Parameter(torch.randn(d) * 0.02)  # the first position's "previous token"
        # one table per target level (+1 row: the delay pad); the output heads share them (nanoGPT's weight tying)
        self.target_embed = nn.ModuleList(nn.Embedding(lay.target.vocab + 1, d) for _ in range(lay.target.levels))
        self.aligned_embed = nn.ModuleDict({s.name: nn.ModuleList(nn.Embedding(s.vocab + 1, d) for _ in range(s.levels)) for s in lay.aligned})
        if lay.prefix is not None:
            self.prefix_embed = nn.Embedding(lay.prefix.vocab, d)  # shared by the 12 M levels …
            self.prefix_level = nn.Parameter(torch.randn(lay.prefix.levels, d) * 0.02)  # … told apart by a level vector
            self.null_prefix = nn.Parameter(torch.randn(lay.prefix.levels, d) * 0.02)
        for module in self.modules():  # GPT-2 init: unit-variance tables would give tied logits of std √d
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)

    def config_dict(self) -> dict:
        return asdict(self.cfg)

    @property
    def device(self) -> torch.device:
        return self.bos.device

    # -- layout ------------------------------------------------------------------------------
    def delayed(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L, T) target tokens → (B, L, T + max_delay) with level k shifted right by k; the
        holes hold the pad id (= vocab)."""
        lay = self.cfg.layout
        b, levels, t = tokens.shape
        out = torch.full((b, levels, t + lay.max_delay), lay.target.vocab, dtype=tokens.dtype, device=tokens.device)
        for k in range(levels):
            shift = k if lay.delay else 0
            out[:, k, shift:shift + t] = tokens[:, k]
        return out

    def embed_prefix(self, prefix: torch.Tensor | None, batch: int, drop: torch.Tensor | None = None) -> torch.Tensor:
        """(B, levels) prefix ids (or None = unconditional) → (B, levels, d)."""
        lay = self.cfg.layout
        if lay.prefix is None:
            return self.bos.new_zeros(batch, 0, self.bos.shape[0])
        null = self.null_prefix[None].expand(batch, -1, -1)
        if prefix is None:
            return null
        x = self.prefix_embed(prefix) + self.prefix_level
        if drop is not None:
            x = torch.where(drop[:, None, None], null, x)
        return x

    def embed_positions(self, previous: torch.Tensor, aligned: dict[str, torch.Tensor], start: int) -> torch.Tensor:
        """Inputs of target positions start … start+n−1.

        ``previous``: (B, L, n) delayed target ids of the positions before them (the pad id where a
        level has nothing yet); ``aligned``: whole aligned streams (B, levels, frames), read at
        frame ⌊(position + lookahead) · frames_per_position⌋ (past the end: pad).
        """
        x = sum(self.target_embed[k](previous[:, k]) for k in range(previous.shape[1]))
        n = previous.shape[2]
        for s in self.cfg.layout.aligned:
            frames = aligned.get(s.name)
            if frames is None:  # an optional stream not given (text without a hum): all pad
                ids = previous.new_full((previous.shape[0], s.levels, n), s.vocab)
            else:
                idx = ((torch.arange(start, start + n, device=frames.device) + s.lookahead) * s.frames_per_position).long()
                ids = torch.where(idx < frames.shape[2], frames[:, :, idx.clamp(max=frames.shape[2] - 1)], s.vocab)
            x = x + sum(self.aligned_embed[s.name][k](ids[:, k]) for k in range(s.levels))
        return x

    def shifted_inputs(self, delayed: torch.Tensor) -> torch.Tensor:
        """Position t sees the delayed targets of t−1 (position 0 sees BOS: pad ids + the bos vector)."""
        pad = torch.full_like(delayed[:, :, :1], self.cfg.layout.target.vocab)
        return torch.cat([pad, delayed[:, :, :-1]], dim=2)

    # -- training ----------------------------------------------------------------------------
    def forward(self, target: torch.Tensor, prefix: torch.Tensor | None = None, aligned: dict[str, torch.Tensor] | None = None,
                drop: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced logits (B, L, T + max_delay, V) for target tokens (B, L, T)."""
        delayed = self.delayed(target)
        x = self.embed_positions(self.shifted_inputs(delayed), aligned or {}, 0)
        x[:, 0] = x[:, 0] + self.bos
        p = self.embed_prefix(prefix, target.shape[0], drop)
        h = self.transformer(torch.cat([p, x], 1))[:, p.shape[1]:]
        return torch.stack([self.head(h, k) for k in range(target.shape[1])], 1)

    def without(self, stream: Stream, frames: torch.Tensor) -> torch.Tensor:
        """Optional-stream dropout: whole examples' frames become pad ids."""
        drop = torch.rand(frames.shape[0], device=frames.device) < stream.dropout
        return torch.where(drop[:, None, None], stream.vocab, frames)

    def head(self, h: torch.Tensor, level: int) -> torch.Tensor:
        """Logits of one target level from hidden states, through that level's embedding table."""
        return h @ self.target_embed[level].weight[: self.cfg.layout.target.vocab].t()

    def loss(self, target: torch.Tensor, prefix: torch.Tensor | None = None, aligned: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict]:
        drop = None
        if self.cfg.layout.prefix is not None and self.training:
            drop = torch.rand(target.shape[0], device=target.device) < self.cfg.cond_dropout
        if self.training and aligned:
            aligned = {**aligned, **{s.name: self.without(s, aligned[s.name]) for s in self.cfg.layout.aligned if s.dropout > 0}}
        logits = self(target, prefix, aligned, drop)
        delayed = self.delayed(target)
        mask = delayed != self.cfg.layout.target.vocab  # delay holes are not predicted
        loss = F.cross_entropy(logits[mask], delayed[mask])
        per_level = [F.cross_entropy(logits[:, k][mask[:, k]], delayed[:, k][mask[:, k]]).detach() for k in range(target.shape[1])]
        return loss, {"loss": loss.detach(), **{f"level{k + 1}": v for k, v in enumerate(per_level[:4])}}

    # -- generation --------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, length: int, prefix: torch.Tensor | None = None, aligned: dict[str, torch.Tensor] | None = None,
                 sampling: Sampling | None = None, generator: torch.Generator | None = None,
                 negative: torch.Tensor | None = None, prompt: torch.Tensor | None = None, anchor: torch.Tensor | None = None) -> torch.Tensor:
        """Sample ``length`` target positions (B, L, length) with a KV cache.

        ``prompt`` (B, L, P) continues given tokens; ``negative`` (B, levels) prefix ids replace the
        null prefix as the unconditional branch of classifier-free guidance (a negative prompt);
        ``anchor`` (B, levels): prefix ids of part of the condition, guided separately (``guide``).
        """
        steps = list(self.stream(length, prefix, aligned, sampling, generator, negative, prompt, anchor))
        return torch.cat(steps, 2) if steps else torch.zeros(1, self.cfg.layout.target.levels, 0, dtype=torch.long, device=self.device)

    @torch.inference_mode()
    def stream(self, length: int, prefix: torch.Tensor | None = None, aligned: dict[str, torch.Tensor] | None = None,
               sampling: Sampling | None = None, generator: torch.Generator | None = None,
               negative: torch.Tensor | None = None, prompt: torch.Tensor | None = None, anchor: torch.Tensor | None = None):
        """Yield each finished target frame (B, L, 1) as soon as all its levels are sampled.

        Classifier-free guidance contrasts the conditional model with the one conditioning
        dropout trained: the null (or ``negative``) prefix *and* every optional aligned stream
        absent, so a hum is guided along with the text (MusicGen's joint text + melody CFG). An
        ``anchor`` prefix adds a third branch between the two (double guidance, ``guide``)."""
        lay, aligned = self.cfg.layout, aligned or {}
        sampling = sampling or lay.sampling
        batch = prefix.shape[0] if prefix is not None else next(iter(aligned.values())).shape[0] if aligned else 1
        unconditional = {s.name: aligned[s.name] for s in lay.aligned if s.name in aligned and s.dropout == 0}
        anchored = anchor is not None and lay.prefix is not None and sampling.anchor_guidance != sampling.guidance  # equal scales: plain CFG
        guided = (sampling.guidance != 1.0 or anchored) and (lay.prefix is not None or len(unconditional) < len(aligned))
        branches = 3 if anchored else 2 if guided else 1  # rows: conditional, anchor, unconditional
        pad = lay.target.vocab
        given = prompt.shape[2] if prompt is not None else 0
        total = given + length
        delayed = torch.full((batch, lay.target.levels, total + lay.max_delay), pad, dtype=torch.long, device=self.device)
        if given:
            delayed[:, :, : given + lay.max_delay] = self.delayed(prompt)
        p = self.embed_prefix(prefix, batch)
        if anchored:
            p = torch.cat([p, self.embed_prefix(anchor, batch)])
        if guided:
            p = torch.cat([p, self.embed_prefix(negative, batch)])
        cache = self.transformer.new_cache()
        if p.shape[1]:
            self.transformer(p, cache=cache)
        if given:  # prefill: positions whose targets the prompt fixes
            inputs = self.shifted_inputs(delayed[:, :, :given])
            x = self.embed_positions(inputs, aligned, 0)
            if guided:
                x = torch.cat([x] * (branches - 1) + [self.embed_positions(inputs, unconditional, 0)])
            x[:, 0] = x[:, 0] + self.bos
            self.transformer(x, cache=cache)
        emitted = given
        heads = torch.stack([e.weight[:pad] for e in self.target_embed]).transpose(1, 2).contiguous()  # (L, d, V): every level in one matmul
        step_inputs = self.step_embedder(batch)
        levels = torch.arange(lay.target.levels, device=self.device)
        lags = levels * lay.delay  # level k of frame f sits at delayed position f + k
        for t in range(given, total + lay.max_delay):
            prev = delayed[:, :, t - 1] if t > 0 else torch.full_like(delayed[:, :, 0], pad)
            x = step_inputs(prev, aligned, t)  # aligned streams are read now, so a caller may fill them as it goes
            if guided:
                x = torch.cat([x] * (branches - 1) + [step_inputs(prev, unconditional, t)])
            if t == 0:
                x = x + self.bos
            h = self.transformer(x, cache=cache)[:, -1]
            logits = (h[None] @ heads).transpose(0, 1)  # (B, L, V)
            if not torch.isfinite(logits.sum()):  # one NaN/Inf anywhere poisons the sum: a damaged checkpoint or an overflow
                raise GenerationError(f"{lay.name} produced invalid (NaN or infinite) scores at frame {t}; "
                                      "the checkpoint may be damaged: run python -m engine models")
            if guided:
                rows = logits.split(batch)
                logits = guide(rows[0], rows[-1], sampling.guidance, rows[1] if anchored else None, sampling.anchor_guidance)
            ids = sample(logits, sampling, generator)  # one draw for all levels; the delay pattern keeps those it needs
            first, last = (max(0, t - total + 1), min(lay.target.levels, t - given + 1)) if lay.delay else (0, lay.target.levels)
            delayed[:, first:last, t] = ids[:, first:last]  # the levels whose frame (t − lag) is one to generate
            while emitted <= t - lay.max_delay and emitted < total:  # every level of frame `emitted` is sampled
                yield delayed[:, levels, emitted + lags][..., None]
                emitted += 1

    def step_embedder(self, batch: int):
        """``embed_positions`` for one position, as a single gather from every table the step reads
        stacked into one (target levels, then aligned levels) and one sum: a per-level lookup
        costs a dispatch each, and decoding one frame is dispatch-bound on a CPU."""
        lay = self.cfg.layout
        tables = list(self.target_embed) + [e for s in lay.aligned for e in self.aligned_embed[s.name]]
        stacked = torch.cat([e.weight for e in tables])
        offsets = torch.tensor([0] + [e.num_embeddings for e in tables[:-1]], device=self.device).cumsum(0)
        absent = {s.name: torch.full((batch, s.levels), s.vocab, device=self.device) for s in lay.aligned}

        def embed(previous: torch.Tensor, aligned: dict[str, torch.Tensor], position: int) -> torch.Tensor:
            """(B, L) previous target ids → (B, 1, d) inputs of ``position``."""
            ids = [previous]
            for s in lay.aligned:
                frames, frame = aligned.get(s.name), int((position + s.lookahead) * s.frames_per_position)
                ids.append(frames[:, :, frame] if frames is not None and frame < frames.shape[2] else absent[s.name])
            return F.embedding(torch.cat(ids, 1) + offsets, stacked).sum(1, keepdim=True)

        return embed


Schedule = list[tuple[int, "torch.Tensor | None"]]  # (first target frame, M from there on)


def windowed(model: TokenLM, total: int, schedule: Schedule, aligned: dict[str, torch.Tensor], sampling: Sampling, generator,
             negative=None, prompt: torch.Tensor | None = None, handover: int | None = None,
             anchor: torch.Tensor | None = None, drafts: dict | None = None) -> Iterator[torch.Tensor]:
    """Yield ``total`` target frames (B, L, 1), in windows of the stage's crop length that
    overlap by half: each window continues the previous one's last half-crop of frames.

    ``schedule`` says which M conditions which frames (counted after the prompt); a window ends
    where M changes, and the next one starts from the end of the music so far under the new M —
    the paper's time-varying text (story mode) without a seam. Only the last ``handover`` frames
    are its context there: a whole half-crop of the old segment would keep its style going
    against the new text. ``drafts``: schedule index → a draft (``engine.generate.drafts.TempoDraft``)
    of that segment's opening under several readings of its M; the kept reading is written into
    the schedule's M in place, where the next stage (on another process too) reads it."""
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
        context_tokens = produced[:, :, start:end] if ctx else None
        draft = (drafts or {}).get(segment) if end == (changes[segment - 1] if segment else given) else None
        if draft is None:
            frames = model.stream(length, prefix, views, sampling, generator, negative, context_tokens, anchor)
        else:
            frames = kept_draft(model, draft, prefix, min(length, draft.frames), views, sampling, generator, negative, context_tokens, anchor)
        for frame in frames:
            produced[:, :, end] = frame[:, :, 0]
            end += 1
            yield frame


def kept_draft(model: TokenLM, draft, prefix: torch.Tensor, length: int, views: dict[str, torch.Tensor], sampling: Sampling, generator,
               negative, context: torch.Tensor | None, anchor, abandoned: Callable[[], bool] | None = None) -> Iterator[torch.Tensor]:
    """The frames of ``draft``'s kept row: ``length`` frames drawn under each of its readings at
    once (one batch), the one its ``pick`` keeps, whose reading becomes ``prefix`` in place.
    ``abandoned`` is asked after every frame; when it says yes, ``DraftAbandoned`` ends the draft."""
    rows = draft.readings.shape[0]
    def each(t):  # one row → a row per reading
        return None if t is None else t.expand(rows, *t.shape[1:])
    frames = []
    for frame in model.stream(length, draft.readings, {k: each(v) for k, v in views.items()}, sampling, generator, each(negative),
                              each(context), each(anchor)):
        if abandoned is not None and abandoned():
            raise DraftAbandoned(f"{model.cfg.layout.name} draft abandoned after {len(frames)} frames")
        frames.append(frame)
    tokens = torch.cat(frames, 2)
    keep = draft.pick(tokens)
    with torch.inference_mode():  # M may come from inference mode (MuLan), where alone it can change in place
        prefix.copy_(draft.readings[keep:keep + 1])
    for n in range(length):
        yield tokens[keep:keep + 1, :, n:n + 1]


def stage_layouts(crop_scale: float = 1.0) -> dict[str, StageLayout]:
    """The paper's three stages (§3.2, §4): crops 30 / 10 / 3 s scaled by ``crop_scale``,
    temperatures 1.0 / 0.95 / 0.4, coarse = codec levels 1–4, fine = 5–12. Stage 1 also reads the
    optional 25 Hz melody tokens of a hum (§3.4), one frame ahead. Beyond the paper, stage 2 reads
    them too: our small semantic tokens carry little pitch (melody pitch-class probe 0.31), so the
    acoustic stage needs the tune to put it in the sound."""
    return {
        "stage1": StageLayout("stage1", target=Stream("S", 1024, 1), rate=25, prefix=Stream("M", 1024, 12),
                              aligned=(Stream("melody", MELODY_VOCAB, 1, lookahead=1, dropout=0.5),),
                              crop_seconds=30 * crop_scale, sampling=Sampling(temperature=1.0, top_k=0, guidance=3.0)),
        "stage2": StageLayout("stage2", target=Stream("A_coarse", 1024, 4), rate=50, prefix=Stream("M", 1024, 12),
                              aligned=(Stream("S", 1024, 1, frames_per_position=0.5, lookahead=4),
                                       Stream("melody", MELODY_VOCAB, 1, frames_per_position=0.5, lookahead=4, dropout=0.5)),
                              crop_seconds=10 * crop_scale, sampling=Sampling(temperature=0.95, guidance=1.0)),
        "stage3": StageLayout("stage3", target=Stream("A_fine", 1024, 8), rate=50,
                              aligned=(Stream("A_coarse", 1024, 4, lookahead=2),),
                              crop_seconds=3 * crop_scale, sampling=Sampling(temperature=0.4)),
    }


STAGE_PRESETS = {
    "cpu-small": {
        "stage1": LMConfig(replace(stage_layouts()["stage1"], crop_seconds=10.0), TransformerConfig(dim=256, layers=4, heads=4, dropout=0.1)),
        "stage2": LMConfig(replace(stage_layouts()["stage2"], crop_seconds=4.0), TransformerConfig(dim=256, layers=4, heads=4, dropout=0.1)),
        "stage3": LMConfig(replace(stage_layouts()["stage3"], crop_seconds=2.0), TransformerConfig(dim=192, layers=3, heads=4, dropout=0.1)),
    },
    "gpu-base": {
        "stage1": LMConfig(stage_layouts()["stage1"], TransformerConfig(dim=768, layers=12, heads=12, dropout=0.1)),
        "stage2": LMConfig(stage_layouts()["stage2"], TransformerConfig(dim=768, layers=12, heads=12, dropout=0.1)),
        "stage3": LMConfig(stage_layouts()["stage3"], TransformerConfig(dim=512, layers=8, heads=8, dropout=0.1)),
    },
}
COARSE_LEVELS = 4


def hears_melody(layout: StageLayout) -> bool:
    return any(s.name == "melody" for s in layout.aligned)


def load_stage(stage: str, path: Path | None = None) -> TokenLM:
    return load_trained(stage, path, lambda config: TokenLM(LMConfig.from_dict(config_without_preset(config))))
