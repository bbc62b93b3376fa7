"""How a piece is drawn: its length, seed, the stages' temperatures and guidance, and the two
named presets the studio offers; and where it runs."""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..prompts import MAX_PROMPT_CHARS

MAX_SECONDS = 300.0
MAX_TEMPO_DRAFTS = 16


@dataclass(frozen=True)
class GenerationSettings:
    seconds: float = 10.0
    seed: int = 0
    temperatures: tuple[float, float, float] = (1.0, 0.95, 0.4)  # paper §4
    top_k: int = 0
    guidance: float = 3.0  # classifier-free guidance on stage 1
    style_guidance: float = 3.0  # a style request: how strongly stage 1 follows its reference clips (beside its words: what the clips add to them)
    coarse_guidance: float = 1.0  # on stage 2 (1 = off): stresses the text beyond what S implies; see docs/experiments.md for what it trades
    style_coarse_guidance: float = 2.5  # a style request's stage 2, in place of coarse_guidance: a clip's timbre is stage 2's to make; chosen on training recordings (docs/experiments.md)
    negative_prompt: str = ""
    chunk_seconds: float = 0.5
    fine_stage: bool = False  # on: stage 3 writes codec levels 5–12 (the paper); off: the codec decodes levels 1–4 alone, as stage 3 predicts the fine levels no better than chance
    tempo_drafts: int = 4  # text that states a bpm (no hum or clip: they bring their own): stage 1 drafts under this many readings of it, the one that keeps the tempo goes on (1 = off)
    tempo_draft_seconds: float = 5.0  # how much of stage 1 each draft covers; the first chunk waits for it; 10 s kept the tempo no more often, 3 s lost MCC (docs/experiments.md)
    tone_match: bool = True  # a style request: its spectral balance is shaped toward its clips' after the codec (generate/tone.py); off: the models' own
    level_stage: bool = True  # a prompt that states loud or quiet is steered to that loudness after the codec (generate/level.py); off: the models' own level

    def check(self) -> None:
        """A ValueError naming the first setting out of range (NaN fails every comparison)."""
        if not 0 < self.seconds <= MAX_SECONDS:
            raise ValueError(f"duration must be in (0, {MAX_SECONDS:.0f}] seconds, got {self.seconds}")
        if len(self.temperatures) != 3 or not all(0 <= t <= 5 for t in self.temperatures):
            raise ValueError(f"temperatures must be three numbers in [0, 5], got {self.temperatures}")
        if not 0 <= self.top_k <= 1024:
            raise ValueError(f"top-k must be in [0, 1024] (0 = off), got {self.top_k}")
        for name in ("guidance", "style_guidance", "coarse_guidance", "style_coarse_guidance"):
            if not 0 <= getattr(self, name) <= 20:
                raise ValueError(f"{name.replace('_', ' ')} must be in [0, 20], got {getattr(self, name)}")
        if not 1 <= self.tempo_draft_seconds <= 10:
            raise ValueError(f"a tempo draft must cover 1–10 seconds, got {self.tempo_draft_seconds}")
        if not 1 <= self.tempo_drafts <= MAX_TEMPO_DRAFTS:
            raise ValueError(f"tempo drafts must be in [1, {MAX_TEMPO_DRAFTS}] (1 = off), got {self.tempo_drafts}")
        if len(self.negative_prompt) > MAX_PROMPT_CHARS:
            raise ValueError(f"the negative prompt is longer than {MAX_PROMPT_CHARS} characters")


SAMPLING_PRESETS = {
    "quality": GenerationSettings(),  # the paper's temperatures, guided stage 1
    "fast preview": replace(GenerationSettings(), top_k=50, guidance=1.0),  # no guidance: stage 1 runs one branch instead of two
}


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
