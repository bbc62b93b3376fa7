"""Semantic tokens S (25 Hz): the role of w2v-BERT + k-means in MusicLM (§3.1).

A bidirectional Transformer trained here by masked prediction, HuBERT-style: spans of 25 Hz
frames are hidden and the model predicts, from the context around them, the cluster ids of two
handcrafted views of the hidden frames (harmony: chroma; timbre and rhythm: MFCC + onset) and
regresses their chroma (MERT's "musical teacher" in spirit). The targets are local, but a
prediction from context has to model harmony, melody and metre, which is what stage 1 needs.
An intermediate layer's features become tokens by k-means with ``vocab`` clusters ("flat", as
MusicLM), or by k-means on the features joined with the harmony and rhythm they hold, read out
linearly ("joint"). Flat k-means spends its vocabulary on timbre, which dominates the features'
variance, and loses the notes the layer holds (see ``JointCodebook``).

The baseline that the learned tokens must beat is k-means with the same vocabulary directly on
the handcrafted frames (``BaselineTokenizer``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import config_without_preset, load_trained
from ..features import CHANNELS, FRAMES_PER_TOKEN, SEMANTIC_RATE, MelStem, analyze, token_frames
from .quantization import kmeans
from .transformer import Transformer, TransformerConfig

HANDCRAFTED_VIEWS = {"harmony": slice(0, 12), "timbre": slice(12, 33)}  # columns of token_frames()
ONSET_COLUMN = 32  # token_frames()' onset strength, the last timbre column


@dataclass(frozen=True)
class SemanticConfig:
    encoder: TransformerConfig = field(default_factory=lambda: TransformerConfig(dim=192, layers=6, heads=4, causal=False))
    target_clusters: int = 128  # per handcrafted view
    mask_start: float = 0.08  # HuBERT: p(span starts here); spans of mask_span frames
    mask_span: int = 5
    token_layer: int = 4  # the intermediate layer that is clustered (w2v-BERT: layer 7 of 24)
    vocab: int = 1024
    context_seconds: float = 10.0  # tokenizing long audio: windows this long, overlapped
    codebook: str = "flat"  # "flat": k-means on the features (MusicLM; configs saved before the choice); "joint": on features + harmony and rhythm read-outs (JointCodebook, the presets)
    harmony_weight: float = 1.0  # joint codebook: each read-out's share of the distances, relative to the features'
    rhythm_weight: float = 0.7
    rhythm_lags: int = 6  # joint codebook: the rhythm read-out sees the onsets ± this many frames (0.24 s)

    @staticmethod
    def from_dict(d: dict) -> "SemanticConfig":
        return SemanticConfig(**{**d, "encoder": TransformerConfig(**d["encoder"])})


SEMANTIC_PRESETS = {
    "cpu-small": SemanticConfig(codebook="joint"),
    "gpu-base": SemanticConfig(encoder=TransformerConfig(dim=512, layers=12, heads=8, causal=False), token_layer=8, codebook="joint"),
}


class HandcraftedClusters(nn.Module):
    """k-means on standardized handcrafted 25 Hz frames: the training targets (one codebook per
    view) and, with the full vocabulary on all columns, the baseline tokenizer."""
    def __init__(self, sizes: dict[str, int], dim: int = 33):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.views = {name: HANDCRAFTED_VIEWS.get(name, slice(0, dim)) for name in sizes}
        self.centroids = nn.ParameterDict({
            name: nn.Parameter(torch.zeros(k, self.views[name].stop - self.views[name].start), requires_grad=False)
            for name, k in sizes.items()})

    def fit(self, frames: torch.Tensor, seed: int = 0) -> None:
        self.mean.copy_(frames.mean(0))
        self.std.copy_(frames.std(0) + 1e-4)
        x = (frames - self.mean) / self.std
        generator = torch.Generator().manual_seed(seed)
        for name, view in self.views.items():
            self.centroids[name].data.copy_(kmeans(x[:, view], self.centroids[name].shape[0], iters=15, generator=generator))

    @torch.no_grad()
    def assign(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """(..., 33) handcrafted frames → cluster ids per view (...)."""
        x = (frames - self.mean) / self.std
        return {name: torch.cdist(x[..., view].reshape(-1, view.stop - view.start), self.centroids[name]).argmin(1).view(x.shape[:-1])
                for name, view in self.views.items()}


class BaselineTokenizer(HandcraftedClusters):
    def __init__(self, vocab: int):
        super().__init__({"all": vocab})

    def tokenize_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, C, T@100 Hz) analysis frames → (B, T/4) tokens."""
        return self.assign(token_frames(frames))["all"]


def lagged(x: torch.Tensor, lags: int) -> torch.Tensor:
    """(T,) → (T, 2·lags + 1): each frame with its ``lags`` neighbours on either side (edges repeated)."""
    padded = F.pad(x[None, None], (lags, lags), mode="replicate")[0, 0]
    return torch.stack([padded[i:i + len(x)] for i in range(2 * lags + 1)], 1)


class JointCodebook(nn.Module):
    """One k-means over the token layer's frames joined with two linear read-outs of them, so
    that harmony and rhythm get their share of the vocabulary beside the timbre that dominates
    the features' variance.

    harmony: the frame's chroma, read out by least squares (no labels), centred and L2-normalized
        per frame so clusters follow which notes sound, not how loud;
    rhythm: the handcrafted onset envelope ``rhythm_lags`` frames either side of the frame, read
        out the same way: where the frame sits between attacks, which is what beat phase needs.
    Each read-out is scaled to ``weight`` × the features' RMS norm, so a weight of 1 gives it as
    much say in the distances as all the features together. On the shipped encoder (layer 4, 201
    test clips) flat k-means probes chord root 0.167 and melody 0.309 against the handcrafted
    baseline's 0.233 and 0.702; harmony 1.0 and rhythm 0.7 give 0.266 and 0.712 and keep beat
    phase and instrument family above the baseline (docs/models/semantic.md)."""
    def __init__(self, dim: int, vocab: int, harmony_weight: float, rhythm_weight: float, rhythm_lags: int):
        super().__init__()
        self.harmony_weight, self.rhythm_weight, self.rhythm_lags = harmony_weight, rhythm_weight, rhythm_lags
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(()))  # RMS norm of the centred features
        self.register_buffer("harmony_readout", torch.zeros(dim + 1, 12))
        self.register_buffer("rhythm_readout", torch.zeros(dim + 1, 2 * rhythm_lags + 1))  # to unit RMS norm
        self.register_buffer("centroids", torch.zeros(vocab, dim + 12 + 2 * rhythm_lags + 1))

    def _design(self, feats: torch.Tensor) -> torch.Tensor:
        """(T, dim) → (T, dim + 1): the centred features and a bias column, what the read-outs read."""
        return torch.cat([feats - self.mean, torch.ones_like(feats[:, :1])], 1)

    def _harmony(self, design: torch.Tensor) -> torch.Tensor:
        h = design @ self.harmony_readout
        h = h - h.mean(1, keepdim=True)
        return h / h.norm(dim=1, keepdim=True).clamp(min=1e-6)

    def harmony_view(self, feats: torch.Tensor) -> torch.Tensor:
        """(T, dim) → (T, 12) unit vectors."""
        return self._harmony(self._design(feats))

    def rhythm_view(self, feats: torch.Tensor) -> torch.Tensor:
        """(T, dim) → (T, 2·lags + 1), of unit RMS norm over the fitting frames."""
        return self._design(feats) @ self.rhythm_readout

    def joint(self, feats: torch.Tensor) -> torch.Tensor:
        design = self._design(feats)
        return torch.cat([design[:, :-1], self.harmony_weight * self.scale * self._harmony(design),
                          self.rhythm_weight * self.scale * (design @ self.rhythm_readout)], 1)

    def fit(self, feats: list[torch.Tensor], chroma: list[torch.Tensor], onset: list[torch.Tensor], per_clip: int, seed: int) -> int:
        """Fit on clips' full feature sequences (T, dim), their handcrafted chroma (T, 12) and onset
        strength (T,)."""
        rng = np.random.default_rng(seed)
        picks = [rng.choice(len(f), size=min(per_clip, len(f)), replace=False) for f in feats]
        x = torch.cat([f[p] for f, p in zip(feats, picks)])
        self.mean.copy_(x.mean(0))
        self.scale.copy_((x - self.mean).pow(2).sum(1).mean().sqrt())
        design = self._design(x)
        for readout, target in ((self.harmony_readout, torch.cat([c[p] for c, p in zip(chroma, picks)])),
                                (self.rhythm_readout, torch.cat([lagged(o, self.rhythm_lags)[p] for o, p in zip(onset, picks)]))):
            target = (target - target.mean(0)) / (target.std(0) + 1e-6)
            readout.copy_(torch.linalg.lstsq(design, target).solution)
        self.rhythm_readout /= (design @ self.rhythm_readout).pow(2).sum(1).mean().sqrt().clamp(min=1e-6)
        self.centroids.copy_(kmeans(self.joint(x), len(self.centroids), iters=20, generator=torch.Generator().manual_seed(seed)))
        return len(x)

    def assign(self, feats: torch.Tensor) -> torch.Tensor:
        """(T, dim) features of one sequence → (T,) token ids."""
        return torch.cdist(self.joint(feats), self.centroids).argmin(1)

    def onset_per_token(self) -> torch.Tensor:
        """(vocab,): each token's rhythm read-out at its own frame, the onset strength it stands
        for; looked up along a token sequence, an onset envelope with no audio decoded."""
        return self.centroids[:, -(self.rhythm_lags + 1)]


class SemanticModel(nn.Module):
    def __init__(self, cfg: SemanticConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.encoder.dim
        self.stem = MelStem(d, FRAMES_PER_TOKEN)
        self.mask_embedding = nn.Parameter(torch.randn(d) * 0.02)
        self.encoder = Transformer(cfg.encoder)
        self.targets = HandcraftedClusters({name: cfg.target_clusters for name in HANDCRAFTED_VIEWS})
        self.heads = nn.ModuleDict({name: nn.Linear(d, cfg.target_clusters) for name in HANDCRAFTED_VIEWS})
        self.chroma_head = nn.Linear(d, 12)
        if cfg.codebook == "joint":
            self.codebook = JointCodebook(d, cfg.vocab, cfg.harmony_weight, cfg.rhythm_weight, cfg.rhythm_lags)
        elif cfg.codebook == "flat":
            self.register_buffer("centroids", torch.zeros(cfg.vocab, d))
        else:
            raise ValueError(f"unknown codebook {cfg.codebook!r}: flat or joint")

    def config_dict(self) -> dict:
        return asdict(self.cfg)

    def embed(self, mel: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.stem(mel)
        if mask is not None:
            x = torch.where(mask[..., None], self.mask_embedding.to(x.dtype), x)
        return x

    def span_mask(self, batch: int, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
        starts = torch.rand(batch, length, generator=generator) < self.cfg.mask_start
        mask = torch.zeros(batch, length + self.cfg.mask_span, dtype=torch.bool)
        for offset in range(self.cfg.mask_span):
            mask[:, offset:offset + length] |= starts
        return mask[:, :length]

    def loss(self, frames: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Masked prediction on (B, C, T@100 Hz) analysis frames."""
        hand = token_frames(frames)  # (B, T/4, 33)
        targets = self.targets.assign(hand)
        mask = self.span_mask(hand.shape[0], hand.shape[1]).to(frames.device)
        hidden = self.encoder(self.embed(frames[:, CHANNELS["mel"]], mask))[mask]
        losses = {name: F.cross_entropy(self.heads[name](hidden), targets[name][mask]) for name in HANDCRAFTED_VIEWS}
        losses["chroma"] = F.mse_loss(torch.sigmoid(self.chroma_head(hidden)), hand[..., :12][mask])
        total = sum(losses.values())
        metrics = {f"{k}_loss": v.detach() for k, v in losses.items()}
        metrics["harmony_acc"] = (self.heads["harmony"](hidden).argmax(-1) == targets["harmony"][mask]).float().mean().detach()
        return total, {"loss": total.detach(), **metrics}

    @torch.inference_mode()
    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, C, T@100 Hz) → (B, T/4, dim) features of the token layer, computed in overlapping
        windows of ``context_seconds`` so minutes of audio cost linear time and match training."""
        mel = frames[:, CHANNELS["mel"]]
        total = mel.shape[2] // FRAMES_PER_TOKEN
        window = int(self.cfg.context_seconds * SEMANTIC_RATE)
        if total <= window:
            return self.encoder(self.embed(mel[:, :, : total * FRAMES_PER_TOKEN]), upto=self.cfg.token_layer)
        margin = window // 5  # context each side that is computed but not kept
        hop = window - 2 * margin
        out = []
        for start in range(0, total, hop):
            lo, hi = max(0, start - margin), min(total, start + hop + margin)
            x = self.encoder(self.embed(mel[:, :, lo * FRAMES_PER_TOKEN: hi * FRAMES_PER_TOKEN]), upto=self.cfg.token_layer)
            out.append(x[:, start - lo: min(start + hop, total) - lo])
        return torch.cat(out, 1)

    @torch.inference_mode()
    def quantize(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, T, dim) token-layer features → (B, T) token ids."""
        if self.cfg.codebook == "joint":
            return torch.stack([self.codebook.assign(f) for f in feats])
        return torch.cdist(feats.reshape(-1, feats.shape[-1]), self.centroids).argmin(1).view(feats.shape[:2])

    @property
    def reads_rhythm(self) -> bool:
        """Whether token ids say where the onsets fall (``onset_envelope``): the joint codebook's do."""
        return self.cfg.codebook == "joint"

    def onset_envelope(self, tokens: torch.Tensor) -> torch.Tensor:
        """(..., T) token ids → (..., T) onset strength, read from the joint codebook's rhythm
        read-out: on the 201 test clips' own S, librosa's tempo estimate on it keeps the score's
        tempo (within 8 %, half or double allowed) for 79 % over their first 10 s, 83 % over 20 s."""
        return self.onset_table()[tokens]

    def onset_table(self) -> torch.Tensor:
        """(vocab,): the onset strength each token stands for (``onset_envelope`` is a lookup in it)."""
        if not self.reads_rhythm:
            raise ValueError("a flat semantic codebook holds no rhythm read-out; train one with --codebook joint")
        return self.codebook.onset_per_token()

    def pitch_classes(self, tokens: torch.Tensor) -> torch.Tensor:
        """(..., T) token ids → (..., T) the pitch class (0–11) each token's harmony read-out
        stands for: the notes S carries, read with no audio decoded (joint codebook only)."""
        if not self.reads_rhythm:
            raise ValueError("a flat semantic codebook holds no harmony read-out; train one with --codebook joint")
        dim = self.codebook.mean.numel()
        return self.codebook.centroids[:, dim:dim + 12].argmax(1)[tokens]

    def token_vectors(self) -> torch.Tensor:
        """(vocab, D): a point per token, so that distances between tokens mean something."""
        return self.codebook.centroids if self.cfg.codebook == "joint" else self.centroids

    @torch.inference_mode()
    def tokenize_frames(self, frames: torch.Tensor) -> torch.Tensor:
        return self.quantize(self.features(frames))

    @torch.inference_mode()
    def tokenize(self, audio: np.ndarray | torch.Tensor) -> torch.Tensor:
        """24 kHz mono waveform → (T,) semantic tokens at 25 Hz."""
        return self.tokenize_frames(analyze(torch.as_tensor(audio, dtype=torch.float32)))[0]


def load_semantic(path: Path | None = None) -> SemanticModel:
    return load_trained("semantic", path, lambda config: SemanticModel(SemanticConfig.from_dict(config_without_preset(config))))


