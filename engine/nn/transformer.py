"""One Transformer for the whole project, nanoGPT-shaped.

Pre-norm blocks, attention through ``scaled_dot_product_attention``, rotary positions (so a
model trained on short crops still runs on longer windows), and a KV cache for incremental
decoding. ``causal=True`` makes it the decoder-only LM of all three MusicLM stages;
``causal=False`` makes it the bidirectional encoder of MuLan's audio tower and of the semantic
tokenizer.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class TransformerConfig:
    dim: int = 256
    layers: int = 4
    heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.0
    causal: bool = True
    rope_base: float = 10_000.0


def rotary_tables(positions: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, head_dim) tables of the angles rotary embedding turns each channel pair (i, i + head_dim/2)
    by: cos for both channels, and sin signed so that one roll of the channels finishes the turn."""
    half = head_dim // 2
    freqs = base ** (-torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angles = positions.to(torch.float32)[:, None] * freqs[None]
    cos, sin = angles.cos(), angles.sin()
    return torch.cat([cos, cos], -1), torch.cat([-sin, sin], -1)


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs of channels of (..., T, Dh) by angles that grow with the position:
    (x1, x2) → (x1·cos − x2·sin, x2·cos + x1·sin), in four operations (decoding is dispatch-bound)."""
    return x * cos.to(x.dtype) + x.roll(x.shape[-1] // 2, -1) * sin.to(x.dtype)


class KVCache:
    """Keys and values of every layer for the positions seen so far (one sequence batch).

    Preallocated and grown by doubling, so decoding one token writes into place instead of
    re-concatenating the whole history at every step."""

    def __init__(self, layers: int):
        self.keys: list[torch.Tensor | None] = [None] * layers
        self.values: list[torch.Tensor | None] = [None] * layers
        self.length = 0  # positions stored; the Transformer advances it after its last layer

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = self.length, self.length + k.shape[2]
        buffer = self.keys[layer]
        if buffer is None or buffer.shape[2] < end or buffer.shape[:2] != k.shape[:2]:
            capacity = max(64, 2 * end)
            grown = [x.new_empty(*x.shape[:2], capacity, x.shape[3]) for x in (k, v)]
            if buffer is not None:
                grown[0][:, :, :start] = self.keys[layer][:, :, :start]
                grown[1][:, :, :start] = self.values[layer][:, :, :start]
            self.keys[layer], self.values[layer] = grown
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def crop(self, length: int) -> None:
        """Forget everything after ``length`` positions (windowed generation slides the context)."""
        self.length = min(self.length, length)


class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.out = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None,
                cache: KVCache | None, layer: int) -> torch.Tensor:
        b, t, d = x.shape
        h = self.cfg.heads
        qkv = self.qkv(x).view(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        q, k = rotary(qkv[:2], *rope)  # queries and keys turned together
        v = qkv[2]
        if cache is not None:
            k, v = cache.append(layer, k, v)
        causal = self.cfg.causal and mask is None and (cache is None or t > 1)
        if causal and k.shape[2] != t:  # new queries attend to the whole cache and causally to each other
            past = k.shape[2] - t
            mask = torch.ones(t, k.shape[2], dtype=torch.bool, device=x.device).tril(past)
            causal = False
        drop = self.cfg.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, is_causal=causal)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.dim)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, cfg.mlp_ratio * cfg.dim), nn.GELU(), nn.Linear(cfg.mlp_ratio * cfg.dim, cfg.dim))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, rope, mask, cache, layer):
        x = x + self.drop(self.attn(self.norm1(x), rope, mask, cache, layer))
        return x + self.drop(self.mlp(self.norm2(x)))


class Transformer(nn.Module):
    """A stack of blocks over already-embedded inputs (B, T, dim) → (B, T, dim).

    Embeddings and heads belong to the model that uses it (a stage declares its token layout;
    an encoder its input projection). ``return_layers`` gives every block's output, which the
    semantic tokenizer clusters.
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, mask: torch.Tensor | None = None,
                return_layers: bool = False, upto: int | None = None):
        start = cache.length if cache is not None else 0
        rope = self.rope(start, x.shape[1], x.device)
        layers = []
        for i, block in enumerate(self.blocks if upto is None else self.blocks[:upto]):  # a slice builds a new ModuleList
            x = block(x, rope, mask, cache, i)
            layers.append(x)
        if cache is not None:
            cache.length += x.shape[1]
        if upto is None:
            x = self.norm(x)
        return (x, layers) if return_layers else x

    def rope(self, start: int, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary tables for positions start … start+length−1, computed once and grown by doubling
        (token-by-token decoding would otherwise spend a sixth of its time on trigonometry)."""
        end = start + length
        table = getattr(self, "_rope", None)
        if table is None or table[0].shape[0] < end or table[0].device != device:
            with torch.inference_mode(False):  # a table made while generating must still serve training
                positions = torch.arange(max(256, 2 * end), device=device)
                table = self._rope = rotary_tables(positions, self.cfg.dim // self.cfg.heads, self.cfg.rope_base)
        return table[0][start:end], table[1][start:end]

    def new_cache(self) -> KVCache:
        return KVCache(self.cfg.layers)
