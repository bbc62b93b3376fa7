"""The models the pipeline needs, where their checkpoints live, and how each is trained.

The studio and CLI use this to say plainly which models are missing and which command trains
them, instead of failing with a traceback when ``assets/checkpoints/`` is still empty.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "assets" / "checkpoints"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    role: str  # what it does in the paper's Figure 2
    train_command: str

    def path(self, root: Path = CHECKPOINT_DIR) -> Path:
        return root / f"{self.name}.safetensors"


MODELS = (
    ModelEntry("codec", "SoundStream-style codec: waveform ↔ acoustic tokens A (50 Hz RVQ)", "python -m engine train codec --preset cpu-small"),
    ModelEntry("mulan", "MuLan text/music embedding → conditioning tokens M", "python -m engine train mulan --preset cpu-small"),
    ModelEntry("prior", "MuLan prior: a prompt's embedding → the audio embeddings the stages learned from",
               "python -m engine train prior (after tokenize)"),
    ModelEntry("semantic", "self-supervised semantic tokenizer → tokens S (25 Hz)", "python -m engine train semantic --preset cpu-small"),
    ModelEntry("stage1", "semantic LM p(S | M)", "python -m engine train stage1 --preset cpu-small"),
    ModelEntry("stage2", "coarse acoustic LM p(A_coarse | S, M)", "python -m engine train stage2 --preset cpu-small"),
    ModelEntry("stage3", "fine acoustic LM p(A_fine | A_coarse)", "python -m engine train stage3 --preset cpu-small"),
)


def model_status(root: Path = CHECKPOINT_DIR) -> list[dict]:
    """One row per model: name, role, whether its checkpoint is present, how to train it, and
    whether that trainer exists in this version."""
    from .training import TRAINERS

    return [
        {"name": m.name, "role": m.role, "present": m.path(root).exists(), "train_command": m.train_command,
         "trainable": m.name in TRAINERS}
        for m in MODELS
    ]


def missing_models(root: Path = CHECKPOINT_DIR) -> list[dict]:
    return [row for row in model_status(root) if not row["present"]]
