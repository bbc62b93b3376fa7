"""Training the semantic tokenizer: masked prediction of handcrafted-view clusters over random
crops of analysis frames, then the codebook fitted on the token layer's features."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from ..data.build import read_records
from ..features import CHANNELS, FRAMES_PER_TOKEN, SEMANTIC_RATE, corpus_frames, token_frames
from ..nn.quantization import kmeans
from ..nn.semantic import HANDCRAFTED_VIEWS, ONSET_COLUMN, SEMANTIC_PRESETS, SemanticModel, load_semantic
from .loop import Recipe, TrainConfig


# ----------------------------------------------------------------------------- training
def sample_token_frames(frames: list[np.ndarray], per_clip: int, seed: int = 0) -> torch.Tensor:
    """Random handcrafted 25 Hz frames from many clips, for fitting k-means."""
    rng = np.random.default_rng(seed)
    rows = []
    for f in frames:
        hand = token_frames(torch.from_numpy(f.astype(np.float32))[None])[0]
        rows.append(hand[rng.choice(len(hand), size=min(per_clip, len(hand)), replace=False)])
    return torch.cat(rows)


def frame_crops(frames: list[np.ndarray], batch: int, crop: int, seed: int) -> Iterator[torch.Tensor]:
    """Random (B, C, crop) windows of analysis frames; crop is a multiple of 4 (one token)."""
    rng = np.random.default_rng(seed)
    while True:
        out = np.empty((batch, frames[0].shape[0], crop), np.float32)
        for i in range(batch):
            f = frames[rng.integers(len(frames))]
            start = rng.integers(0, max(1, f.shape[1] - crop)) // FRAMES_PER_TOKEN * FRAMES_PER_TOKEN
            piece = f[:, start:start + crop]
            out[i, :, : piece.shape[1]] = piece
            out[i, :, piece.shape[1]:] = piece[:, -1:]
        yield torch.from_numpy(out)


def semantic_loss(model: nn.Module, frames: torch.Tensor) -> tuple[torch.Tensor, dict]:
    return model.loss(frames)


@torch.inference_mode()
def fit_token_centroids(model: SemanticModel, frames: list[np.ndarray], per_clip: int = 100, seed: int = 0) -> dict:
    """Fit the codebook on the token layer's features of training frames."""
    model.eval()
    joint = model.cfg.codebook == "joint"
    feats, chroma, onset = [], [], []
    for f in frames:
        x = torch.from_numpy(f.astype(np.float32))[None]
        feats.append(model.features(x)[0])
        if joint:  # the read-outs' targets: the handcrafted chroma and onset of the same frames
            hand = token_frames(x)[0, : len(feats[-1])]
            chroma.append(hand[:, HANDCRAFTED_VIEWS["harmony"]])
            onset.append(hand[:, ONSET_COLUMN])
    if joint:
        return {"codebook": "joint", "kmeans_frames": model.codebook.fit(feats, chroma, onset, per_clip, seed)}
    rng = np.random.default_rng(seed)
    x = torch.cat([f[rng.choice(len(f), size=min(per_clip, len(f)), replace=False)] for f in feats])
    model.centroids.copy_(kmeans(x, model.cfg.vocab, iters=20, generator=torch.Generator().manual_seed(seed)))
    return {"codebook": "flat", "kmeans_frames": len(x)}


def start_from_encoder(model: SemanticModel, path: Path) -> None:
    """Continue from a trained semantic model: its stem, encoder, targets and heads; the codebook
    is fitted afresh (it may be of another kind)."""
    trained = load_semantic(path)
    if trained.cfg.encoder != model.cfg.encoder:
        raise ValueError(f"{path} has encoder {trained.cfg.encoder}, this preset {model.cfg.encoder}")
    weights = {k: v for k, v in trained.state_dict().items() if not k.startswith(("centroids", "codebook."))}
    model.load_state_dict(weights, strict=False)


def semantic_recipe(corpus: Path, preset: str, cfg: TrainConfig, rank: int, codebook: str | None = None) -> Recipe:
    """``codebook``: flat or joint (default: the preset's); ``--init`` with ``--steps 0`` refits only the codebook."""
    model = SemanticModel(replace(SEMANTIC_PRESETS[preset], codebook=codebook or SEMANTIC_PRESETS[preset].codebook))
    frames = corpus_frames(corpus, read_records(corpus, "train"))
    if cfg.init:
        start_from_encoder(model, Path(cfg.init))
    else:
        model.stem.fit(np.concatenate([f[CHANNELS["mel"], ::50].astype(np.float32) for f in frames], axis=1))
        model.targets.fit(sample_token_frames(frames, per_clip=100, seed=cfg.seed), seed=cfg.seed)
    crop = int(cfg.crop_seconds * SEMANTIC_RATE) * FRAMES_PER_TOKEN
    batches = frame_crops(frames, cfg.batch_size, crop, seed=cfg.seed * 1000 + rank)
    return Recipe(model, batches, semantic_loss, lambda trained: fit_token_centroids(trained, frames, seed=cfg.seed), "tokens")
