"""Random-weight models small enough for CI, shared by the pipeline tests."""
import torch

from engine import MusicLM
from engine.nn.codec import Codec, CodecConfig
from engine.nn.lm import LMConfig, StageLayout, TokenLM, stage_layouts
from engine.nn.transformer import TransformerConfig


def tiny_stage(name: str, crop: float) -> TokenLM:
    lay = stage_layouts()[name]
    lay = StageLayout(lay.name, lay.target, lay.rate, lay.prefix, lay.aligned, lay.delay, crop, lay.sampling)
    return TokenLM(LMConfig(lay, TransformerConfig(dim=32, layers=1, heads=2))).eval()


def tiny_pipeline() -> MusicLM:
    torch.manual_seed(0)
    codec = Codec(CodecConfig(dim=16, encoder_blocks=1, decoder_blocks=1, latent_dim=8)).eval()
    codec.quantizer.fit(torch.randn(4096, 8), iters=2)
    return MusicLM(None, codec, tiny_stage("stage1", 2.0), tiny_stage("stage2", 1.0), tiny_stage("stage3", 0.6))
