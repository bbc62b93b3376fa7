"""Choosing the next token: temperature, top-k, top-p and classifier-free guidance.

One module for all three stages, so that a seed means the same thing everywhere: every draw goes
through a ``torch.Generator`` owned by the caller.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    guidance: float = 1.0  # classifier-free guidance scale; 1 = the conditional model alone
    anchor_guidance: float = 1.0  # double guidance, when an anchor condition is given: the scale on what the full condition adds to it


def guide(conditional: torch.Tensor, unconditional: torch.Tensor, scale: float, anchor: torch.Tensor | None = None,
          anchor_scale: float = 1.0) -> torch.Tensor:
    """CFG on log-probabilities (AudioGen): uncond + scale · (cond − uncond). ``unconditional``
    may come from dropped conditioning or from a negative prompt.

    ``anchor``: the logits under part of the condition (a style request's words without its
    reference clips), guided on both (the double guidance of MusicGen-Style): uncond +
    scale · (anchor − uncond) + anchor_scale · (cond − anchor). Equal scales give plain CFG."""
    if anchor is None:
        if scale == 1.0:
            return conditional
        cond, uncond = conditional.log_softmax(-1), unconditional.log_softmax(-1)
        return uncond + scale * (cond - uncond)
    cond, middle, uncond = conditional.log_softmax(-1), anchor.log_softmax(-1), unconditional.log_softmax(-1)
    return uncond + scale * (middle - uncond) + anchor_scale * (cond - middle)


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set everything outside the top-k and outside the smallest set with mass ≥ top_p to −inf."""
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        outside = probs.cumsum(-1) - probs > top_p  # keep the token that crosses top_p
        logits = logits.masked_fill(outside.scatter(-1, order, outside), float("-inf"))
    return logits


def sample(logits: torch.Tensor, cfg: Sampling, generator: torch.Generator | None = None) -> torch.Tensor:
    """(..., V) logits → (...) token ids."""
    if cfg.temperature <= 0:
        return logits.argmax(-1)
    logits = filter_logits(logits.float() / cfg.temperature, cfg.top_k, cfg.top_p)
    return draw(logits.softmax(-1), generator)


def draw(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of (..., V) probabilities, by inverting the cumulative distribution at a
    uniform draw. Exact, and a sixteenth of ``torch.multinomial``'s cost on a CPU (which spends
    an exponential draw per vocabulary entry); zero-probability tokens are never chosen."""
    cdf = probs.reshape(-1, probs.shape[-1]).cumsum(-1)
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[-1] - 1).view(probs.shape[:-1])
