"""Every quality question the project asks of its models, one file each; ``report`` runs them
all into docs/RESULTS.md, ``bench`` measures speed and memory."""
from __future__ import annotations

from .codec import eval_codec, eval_recordings
from .dynamics import eval_dynamics
from .generation import eval_generation
from .melody import eval_melody
from .memorization import eval_memorization
from .mulan import eval_mulan
from .semantic import eval_semantic
from .stages import eval_stages
from .story import eval_continuation, eval_story
from .style import eval_style
from .tones import eval_tones

# `python -m engine eval NAME` → its evaluator(corpus, checkpoint, clips, **sizes) -> JSON-ready dict
EVALUATORS = {"codec": eval_codec, "mulan": eval_mulan, "semantic": eval_semantic, "stages": eval_stages, "generation": eval_generation,
              "story": eval_story, "continuation": eval_continuation, "melody": eval_melody, "memorization": eval_memorization,
              "tones": eval_tones, "recordings": eval_recordings, "style": eval_style,
              "dynamics": eval_dynamics}
