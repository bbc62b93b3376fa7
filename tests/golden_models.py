"""A whole random-weight generator (MuLan, its prior, a joint semantic tokenizer, the three stages
and the codec), small enough for CI and seeded, so that every mode's audio is reproducible."""
import torch

from engine.nn.mulan import AudioPrior, MuLan, MuLanConfig, PriorConfig, rvq_fingerprint
from engine.nn.semantic import SemanticConfig, SemanticModel
from engine.nn.transformer import TransformerConfig
from tests.tiny import tiny_pipeline

TINY_MULAN = MuLanConfig(audio=TransformerConfig(dim=32, layers=1, heads=2, causal=False), text_hidden=32, rvq_size=16)
TINY_SEMANTIC = SemanticConfig(encoder=TransformerConfig(dim=32, layers=3, heads=2, causal=False), target_clusters=8, token_layer=2,
                               vocab=1024, context_seconds=4.0, codebook="joint")


def golden_pipeline():
    model = tiny_pipeline()
    torch.manual_seed(1)
    mulan = MuLan(TINY_MULAN).eval()
    for codebook in mulan.rvq.codebooks:
        codebook.embed.copy_(torch.randn_like(codebook.embed) * 0.3)
    semantic = SemanticModel(TINY_SEMANTIC).eval()
    semantic.codebook.harmony_readout.copy_(torch.randn(33, 12))
    semantic.codebook.rhythm_readout.copy_(torch.randn(33, 13))
    semantic.codebook.centroids.copy_(torch.randn(1024, 32 + 12 + 13))
    prior = AudioPrior(PriorConfig(), windows=64, levels=12, mulan_rvq=rvq_fingerprint(mulan.rvq))
    prior.tokens.copy_(torch.randint(0, 16, (64, 12), dtype=torch.int16))
    prior.tempo.copy_(torch.tensor([70, 100, 130, 160] * 16, dtype=torch.int16))
    model.mulan, model.semantic, model.prior = mulan, semantic, prior
    return model
