"""`eval stages`: each stage LM's held-out loss under its own, the null and a shuffled conditioning."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..checkpoints import model_set
from ..nn.lm import hears_melody, load_stage
from ..train.stages import held_out_loss, with_melody
from ..train.tokens import load_token_cache


# ----------------------------------------------------------------------------- stage LMs
def eval_stages(corpus: Path, checkpoint: Path | None = None, clips: int | None = None) -> dict:
    """Held-out loss of each stage LM on test-split token crops (nats per token; uniform = ln 1024
    = 6.93), with its own M, the null M and a shuffled M: what the text conditioning is worth (and,
    for the melody-conditioned stages, the same with no or a shuffled melody)."""
    tokens = load_token_cache(corpus, "test")
    result = {}
    for stage in ("stage1", "stage2", "stage3"):
        model = load_stage(stage, model_set(checkpoint)[stage])
        hums = hears_melody(model.cfg.layout)
        crops = with_melody(corpus, "test", tokens) if hums else tokens
        row = {k: held_out_loss(model, crops, batches=clips or 16, prefix=k) for k in ("own", "null", "shuffled")}
        result[stage] = row if model.cfg.layout.prefix is not None else {"own": row["own"]}
        if hums:  # what a hum is worth: the crop's own tracked melody, none, another crop's
            result[stage].update({f"melody_{k}": held_out_loss(model, crops, batches=clips or 16, melody=k) for k in ("none", "shuffled")})
    return {"uniform": round(float(np.log(1024)), 4), **result}

