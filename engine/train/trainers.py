"""Model name → its trainer: the recipe each model's file declares, run by the one training loop."""
from __future__ import annotations

from functools import partial

from .codec import codec_recipe
from .loop import run_recipe
from .mulan import build_prior, mulan_recipe
from .semantic import semantic_recipe
from .stages import stage_recipe

# model name → trainer(corpus, preset, run_dir, overrides, progress) -> result; `python -m engine train` reads this
TRAINERS = {
    "codec": partial(run_recipe, "codec", codec_recipe),
    "mulan": partial(run_recipe, "mulan", mulan_recipe),
    "prior": build_prior,  # no steps: a bank of training windows' tokens, collected from the token cache
    "semantic": partial(run_recipe, "semantic", semantic_recipe),
    **{stage: partial(run_recipe, stage, stage_recipe(stage)) for stage in ("stage1", "stage2", "stage3")},
}
