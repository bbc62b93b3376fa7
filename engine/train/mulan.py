"""Training MuLan (contrastive, on 10 s windows and caption variants), fitting its RVQ, and
building the prior's bank of training windows."""
from __future__ import annotations

import json
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..audio import load_audio
from ..data.build import read_records
from ..data.captions import write_caption
from ..data.dynamics import dynamics_word
from ..data.genres import GENRES
from ..data.render import TARGET_LUFS, normalize_loudness
from ..features import CHANNELS, corpus_frames, stored_frames, window_descriptor
from ..files import atomic_write, save_json, save_tensors
from ..nn.mulan import (MULAN_PRESETS, TEXT_DIM, AudioPrior, AudioTower, MuLan, MuLanConfig, PriorConfig, encode_sentences, load_mulan,
                        rvq_fingerprint)
from .loop import Recipe, TrainConfig
from .tokens import load_token_cache, token_cache_ids, token_cache_path

CAPTIONED_ROLES = ("lead", "chords", "bass", "drums", "pad")


class SentenceCache:
    """MiniLM embeddings of every caption we train or evaluate on, stored next to the corpus."""
    def __init__(self, path: Path):
        self.path = Path(path)
        self.rows: dict[str, np.ndarray] = {}
        if self.path.exists():
            data = np.load(self.path, allow_pickle=False)
            self.rows = dict(zip(data["texts"].tolist(), data["embeddings"]))

    def embed(self, texts: list[str]) -> np.ndarray:
        missing = sorted({t for t in texts if t not in self.rows})
        if missing:
            self.rows.update(zip(missing, encode_sentences(missing)))
            self._save()
        return np.stack([self.rows[t] for t in texts]).astype(np.float32)

    def _save(self) -> None:
        texts = list(self.rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        embeddings = np.stack([self.rows[t] for t in texts]).astype(np.float16)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a path
                np.savez(f, texts=np.array(texts), embeddings=embeddings)

        atomic_write(self.path, write)


def caption_variants(record: dict, n: int, seed: int = 0) -> list[str]:
    """The clip's own caption plus ``n - 1`` fresh ones written from its ground truth (its
    dynamics included) with the training templates (and now and then a shuffled aspect list,
    MusicCaps' other form), so the text tower never sees one phrasing per clip often enough to
    memorize it."""
    rng = np.random.default_rng([record["seed"], seed, 7])
    genre = GENRES[record["genre"]]
    instruments = {i["role"]: (i["program"], i["is_drum"]) for i in record["instruments"] if i["role"] in CAPTIONED_ROLES}
    dynamics = dynamics_word(record["loudness_lufs"]) if "loudness_lufs" in record else None  # a levelled corpus has none
    out = [record["caption"]]
    while len(out) < n:
        if rng.random() < 0.2:
            aspects = list(record["aspects"])
            rng.shuffle(aspects)
            out.append(", ".join(aspects[: rng.integers(3, len(aspects) + 1)]))
            continue
        caption = write_caption(rng, "train", record["genre"], record["mood"],
                                descriptor=genre.descriptors[rng.integers(len(genre.descriptors))],
                                texture=genre.texture, bpm=record["tempo"], key_name=record["key"]["name"], instruments=instruments,
                                dynamics=dynamics)
        out.append(caption.text)
    return out


# ----------------------------------------------------------------------------- training data
class MuLanData:
    """Training clips' frames and caption-variant sentence embeddings, for random batches of
    (10 s window, caption) pairs, one pair per distinct clip."""
    def __init__(self, corpus: Path, cfg: MuLanConfig, variants: int = 8, limit: int | None = None):
        self.cfg = cfg
        self.records = read_records(corpus, "train")[:limit]
        self.frames = corpus_frames(corpus, self.records)
        captions = [caption_variants(r, variants) for r in self.records]
        flat = SentenceCache(Path(corpus) / "cache" / "minilm-captions.npz").embed([c for group in captions for c in group])
        self.sentences = torch.from_numpy(flat).view(len(self.records), variants, TEXT_DIM)

    def window(self, rng: np.random.Generator, clip: int) -> np.ndarray:
        frames, w = self.frames[clip], self.cfg.window_frames
        start = rng.integers(0, max(1, frames.shape[1] - w + 1))
        chunk = frames[:, start:start + w].astype(np.float32)
        if chunk.shape[1] < w:
            chunk = np.pad(chunk, ((0, 0), (0, w - chunk.shape[1])), constant_values=np.log(1e-6))
        return chunk

    def fit_standardization(self, tower: "AudioTower", samples: int = 512, seed: int = 0) -> None:
        """The tower's per-band log-mel and per-descriptor mean/std, over random training windows."""
        rng = np.random.default_rng(seed)
        chunks = [self.window(rng, int(rng.integers(len(self.frames)))) for _ in range(samples)]
        tower.stem.fit(np.concatenate([c[CHANNELS["mel"]] for c in chunks], axis=1))
        desc = np.stack([window_descriptor(c) for c in chunks])
        tower.desc_mean.copy_(torch.from_numpy(desc.mean(0)))
        tower.desc_std.copy_(torch.from_numpy(desc.std(0) + 1e-3))

    def batches(self, batch: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
        rng = np.random.default_rng(seed)
        batch = min(batch, len(self.records))
        while True:
            clips = rng.choice(len(self.records), size=batch, replace=False)
            chunks = [self.window(rng, int(c)) for c in clips]
            variant = rng.integers(self.sentences.shape[1], size=batch)
            yield {
                "mel": torch.from_numpy(np.stack([c[CHANNELS["mel"]] for c in chunks])),
                "descriptor": torch.from_numpy(np.stack([window_descriptor(c) for c in chunks])),
                "sentence": self.sentences[torch.from_numpy(clips), torch.from_numpy(variant)],
            }


def mulan_loss(model: nn.Module, batch: dict[str, torch.Tensor], frozen_audio: bool = False) -> tuple[torch.Tensor, dict]:
    """``frozen_audio``: the audio tower only embeds (no gradient, no dropout), the text side learns."""
    with torch.set_grad_enabled(not frozen_audio):
        audio = model.audio_tower.train(not frozen_audio)(batch["mel"], batch["descriptor"])
    text = model.text_tower(batch["sentence"])
    loss = model.contrastive_loss(audio, text)
    with torch.no_grad():
        acc = ((audio @ text.t()).argmax(1) == torch.arange(len(audio))).float().mean()
    return loss, {"loss": loss.detach(), "acc": acc, "temp": 1 / model.log_scale.exp().detach()}


@torch.inference_mode()
def fit_rvq(model: MuLan, data: MuLanData, windows_per_clip: int = 8, seed: int = 0) -> dict:
    """Fit the 12 × 1024 RVQ (paper §3.1) on audio embeddings of training windows *and* text
    embeddings of their captions. Stage 1 learns from audio tokens M_A but is driven by text tokens
    M_T at inference; fitted on audio alone, the codebooks sit where audio embeddings are and
    quantize text (which lies off that region, the modality gap) measurably worse."""
    model.eval()
    rng = np.random.default_rng(seed)
    audio = []
    for start in range(0, len(data.frames), 64):
        clips = range(start, min(start + 64, len(data.frames)))
        chunks = [data.window(rng, c) for c in clips for _ in range(windows_per_clip)]
        mel = torch.from_numpy(np.stack([c[CHANNELS["mel"]] for c in chunks]))
        desc = torch.from_numpy(np.stack([window_descriptor(c) for c in chunks]))
        audio.append(model.audio_tower(mel, desc))
    audio = torch.cat(audio)
    text = model.text_tower(data.sentences.reshape(-1, TEXT_DIM))
    model.rvq.fit(torch.cat([audio, text]), seed=seed)
    cos = lambda x: round(float(F.cosine_similarity(x, model.reconstruct(x), dim=-1).mean()), 4)  # noqa: E731
    return {"rvq_fit_audio": len(audio), "rvq_fit_text": len(text), "rvq_train_cosine_audio": cos(audio), "rvq_train_cosine_text": cos(text)}


def mulan_recipe(corpus: Path, preset: str, cfg: TrainConfig, rank: int, handcrafted: bool = True, text_only: bool = False) -> Recipe:
    """``handcrafted``: False trains the audio tower without the descriptors (the ablation).
    ``text_only``: fine-tune the text projection of the MuLan at ``cfg.init`` on this corpus's
    captions, its audio tower and RVQ kept: every M_A token the stages and the prior learnt from
    keeps its meaning, while the words learn where this corpus's music lies (its loud and quiet)."""
    if text_only:
        if not cfg.init:
            raise ValueError("a text-only MuLan fine-tune starts from a trained MuLan: give --init")
        model = load_mulan(Path(cfg.init))
        for parameter in model.audio_tower.parameters():
            parameter.requires_grad_(False)
        data = MuLanData(corpus, model.cfg)
        batches = data.batches(cfg.batch_size, seed=cfg.seed * 1000 + rank)
        return Recipe(model, batches, partial(mulan_loss, frozen_audio=True))
    model_cfg = replace(MULAN_PRESETS[preset], handcrafted=handcrafted)
    model = MuLan(model_cfg)
    data = MuLanData(corpus, model_cfg)
    data.fit_standardization(model.audio_tower, seed=cfg.seed)
    batches = data.batches(cfg.batch_size, seed=cfg.seed * 1000 + rank)
    return Recipe(model, batches, mulan_loss, lambda trained: fit_rvq(trained, data, seed=cfg.seed), "rvq")


def levelled_window_tokens(corpus: Path, mulan: MuLan, records: list[dict], windows: int, progress: bool = True) -> torch.Tensor:
    """M_A of the first ``windows`` windows of each clip played at the reference loudness
    (``normalize_loudness``, as every clip was before the corpus had dynamics): (clips, windows, levels)."""
    rows = []
    for i, record in enumerate(records):
        audio, _ = normalize_loudness(load_audio(Path(corpus) / record["audio"]))
        rows.append(mulan.tokens(mulan.embed_frames(stored_frames(audio), per_window=True))[:windows])
        if progress and (i + 1) % 200 == 0:
            print(json.dumps({"levelled_clips": i + 1, "of": len(records)}), flush=True)
    return torch.stack(rows)


def build_prior(corpus: Path, preset: str, run_dir: Path, overrides: dict | None = None, progress: bool = True) -> dict:
    """Collect the training split's M_A (every 10 s window of every clip, from the token cache) and
    each window's tempo and loudness (its clip's, from the corpus records) as the prior's bank,
    then the same windows levelled to the reference loudness (``AudioPrior``); written as a run
    folder, like the trained models, so ``--export`` ships it."""
    cfg = replace(PriorConfig(), **{k: v for k, v in (overrides or {}).items() if k in PriorConfig.__dataclass_fields__})
    m = load_token_cache(corpus, "train")["M"]  # (clips, windows, levels)
    mulan = load_mulan(json.loads(str(np.load(token_cache_path(corpus, "train"))["meta"]))["checkpoints"]["mulan"])
    records = {r["id"]: r for r in read_records(corpus, "train")}
    clips = [records[i] for i in token_cache_ids(corpus, "train")]
    levelled = levelled_window_tokens(corpus, mulan, clips, m.shape[1], progress)
    as_rendered = m.shape[0] * m.shape[1]
    prior = AudioPrior(cfg, 2 * as_rendered, m.shape[2], rvq_fingerprint(mulan.rvq))
    prior.tokens.copy_(torch.cat([m, levelled]).reshape(-1, m.shape[2]).to(torch.int16))
    prior.tempo.copy_(torch.tensor([r["tempo"] for r in clips], dtype=torch.int16).repeat_interleave(m.shape[1]).repeat(2))
    prior.loudness[:as_rendered] = torch.tensor([r["loudness_lufs"] for r in clips]).repeat_interleave(m.shape[1])
    prior.loudness[as_rendered:] = TARGET_LUFS
    prior.levelled[as_rendered:] = True
    run_dir.mkdir(parents=True, exist_ok=True)
    save_tensors(prior.state_dict(), run_dir / "model.safetensors")
    info = {"clips": int(m.shape[0]), "windows": int(prior.tokens.shape[0])}
    save_json({"step": 0, "config": {"preset": preset, **prior.config_dict()}, "train": {"source": str(corpus), **info},
               "metrics": {}}, run_dir / "state.json")
    if progress:
        print(json.dumps(info))
    return info
