"""Training the three stage LMs on the token cache: random crops of M, S and A (MusicLM §3.3:
audio only, M from the MuLan audio tower), teacher-forced cross-entropy, and the held-out loss
under own, null and shuffled conditioning that tells how much a stage uses it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..checkpoints import load_weights
from ..nn.lm import COARSE_LEVELS, STAGE_PRESETS, StageLayout, TokenLM, hears_melody
from .loop import Recipe, TrainConfig
from .tokens import load_melody_cache, load_token_cache, token_cache_ids


def stage_inputs(layout: StageLayout, tokens: dict[str, torch.Tensor], clip: int, start: int, length: int) -> dict:
    """One training example of a stage from the token cache: a crop of ``length`` target
    positions beginning at target frame ``start`` of clip ``clip``."""
    a, s = tokens["A"][clip], tokens["S"][clip]
    per_second = layout.rate
    window = min(int(start / per_second), tokens["M"].shape[1] - 1)  # the 10 s MuLan window the crop starts in
    if layout.name == "stage1":
        melody = {"melody": tokens["melody"][clip][None, start:start + length + 2]} if "melody" in tokens else {}
        return {"target": s[None, start:start + length], "prefix": tokens["M"][clip, window], "aligned": melody}
    extra = length + layout.max_delay + 8  # aligned frames the delayed positions and lookahead read
    if layout.name == "stage2":
        semantic_frames = slice(start // 2, start // 2 + extra // 2 + 1)
        melody = {"melody": tokens["melody"][clip][None, semantic_frames]} if "melody" in tokens else {}
        return {"target": a[:COARSE_LEVELS, start:start + length], "prefix": tokens["M"][clip, window],
                "aligned": {"S": s[None, semantic_frames], **melody}}
    return {"target": a[COARSE_LEVELS:, start:start + length], "prefix": None,
            "aligned": {"A_coarse": a[:COARSE_LEVELS, start:start + extra]}}


def stage_batches(layout: StageLayout, tokens: dict[str, torch.Tensor], batch: int, seed: int):
    """Random crops, collated; crops of stage 2 start on even frames so S stays aligned."""
    rng = np.random.default_rng(seed)
    frames = tokens["S"].shape[1] if layout.name == "stage1" else tokens["A"].shape[2]
    length = min(layout.positions, frames)
    while True:
        rows = []
        for _ in range(batch):
            start = int(rng.integers(0, frames - length + 1))
            rows.append(stage_inputs(layout, tokens, int(rng.integers(len(tokens["S"]))), start - start % 2, length))
        shortest = {k: min(r["aligned"][k].shape[-1] for r in rows) for k in rows[0]["aligned"]}
        yield {
            "target": torch.stack([r["target"] for r in rows]),
            "prefix": torch.stack([r["prefix"] for r in rows]) if rows[0]["prefix"] is not None else None,
            "aligned": {k: torch.stack([r["aligned"][k][..., :n] for r in rows]) for k, n in shortest.items()},
        }


def stage_loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
    return model.loss(batch["target"], batch["prefix"], batch["aligned"])


@torch.no_grad()
def held_out_loss(model: TokenLM, tokens: dict[str, torch.Tensor], batches: int = 8, seed: int = 123, prefix: str = "own",
                  melody: str = "own") -> float:
    """Mean loss on test-split crops. ``prefix``: "own" (the crop's M), "null" (the learned
    unconditional M) or "shuffled" (another crop's M) — the gaps show how much a stage uses M;
    ``melody`` (stages that read a hum): "own", "none" or "shuffled", the same question for the tune."""
    model.eval()
    it = stage_batches(model.cfg.layout, tokens, 16, seed)
    losses = []
    for _ in range(batches):
        batch = next(it)
        m, aligned = batch["prefix"], dict(batch["aligned"])
        if m is not None and prefix != "own":
            m = None if prefix == "null" else m.roll(1, dims=0)
        if "melody" in aligned and melody != "own":
            aligned = {k: v for k, v in aligned.items() if k != "melody"} if melody == "none" else {**aligned, "melody": aligned["melody"].roll(1, dims=0)}
        losses.append(float(model.loss(batch["target"], m, aligned)[0]))
    model.train()
    return round(float(np.mean(losses)), 4)


def stage_recipe(stage: str):
    """The ``Prepare`` of one stage: its preset's LM on the token cache (+ the hum's melody tokens
    where its layout reads them); held-out loss on the test split when it is done."""
    def prepare(corpus: Path, preset: str, cfg: TrainConfig, rank: int) -> Recipe:
        model = TokenLM(STAGE_PRESETS[preset][stage])
        train_tokens, test_tokens = load_token_cache(corpus, "train"), load_token_cache(corpus, "test")
        if hears_melody(model.cfg.layout):
            train_tokens, test_tokens = with_melody(corpus, "train", train_tokens), with_melody(corpus, "test", test_tokens)
        if cfg.init:
            start_from(model, Path(cfg.init))
        batches = stage_batches(model.cfg.layout, train_tokens, cfg.batch_size, seed=cfg.seed * 1000 + rank)
        return Recipe(model, batches, stage_loss, lambda trained: {"held_out_loss": held_out_loss(trained, test_tokens)}, "held_out")

    return prepare


def with_melody(corpus: Path, split: str, tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The token cache plus the tracked melody tokens of each clip's melody rendition."""
    return {**tokens, "melody": load_melody_cache(corpus, split, token_cache_ids(corpus, split))}


def start_from(model: TokenLM, path: Path) -> None:
    """Fine-tuning: copy every weight a trained stage has; parameters it lacks (a new
    conditioning stream) keep their fresh initialisation."""
    weights = load_weights(path)
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=False)
    if unexpected:
        raise ValueError(f"{path} does not fit this stage layout: unexpected weights {unexpected[:3]}")
    print(f"fine-tuning from {path}; new parameters: {missing}")

