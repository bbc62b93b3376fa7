"""`eval mulan`: text→audio retrieval, zero-shot genre / instrument / mood, paraphrase robustness, RVQ fidelity."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..data.build import read_records
from ..data.captions import GENRE_NAMES, INSTRUMENT_NAMES, MOOD_NAMES
from ..features import corpus_frames
from ..nn.mulan import load_mulan
from ..train.mulan import SentenceCache


def _recall(similarity: torch.Tensor, ks: tuple[int, ...] = (1, 5, 10)) -> dict:
    """Text→audio retrieval: row i's own clip is column i."""
    own = similarity.diagonal()[:, None]
    rank = (similarity > own).sum(1)  # 0 = retrieved first
    out = {f"recall@{k}": round(float((rank < k).float().mean()), 4) for k in ks}
    out["median_rank"] = int(rank.median()) + 1
    out["chance@10"] = round(10 / similarity.shape[1], 4)
    return out



def _zero_shot(model, audio: torch.Tensor, labels: list, prompts: dict) -> dict:
    """Accuracy of picking the clip's label among all prompts (one prompt per label)."""
    names = list(prompts)
    text = model.embed_text([prompts[n] for n in names])
    predicted = (audio @ text.t()).argmax(1)
    correct = [names[p] == label for p, label in zip(predicted.tolist(), labels)]
    return {"accuracy": round(float(np.mean(correct)), 4), "classes": len(names), "chance": round(1 / len(names), 4)}



def _paraphrase_consistency(model, audio: torch.Tensor) -> dict:
    """Spearman correlation of the clip rankings two prompts induce, within a paraphrase group vs
    across groups: consistent ranking means within ≫ across."""
    prompts = [(g, p) for g, ps in PARAPHRASE_GROUPS.items() for p in ps]
    scores = (model.embed_text([p for _, p in prompts]) @ audio.t()).numpy()
    ranks = scores.argsort(1).argsort(1).astype(np.float64)
    corr = np.corrcoef(ranks)
    within, across = [], []
    for i in range(len(prompts)):
        for j in range(i + 1, len(prompts)):
            (within if prompts[i][0] == prompts[j][0] else across).append(corr[i, j])
    return {"within_group_spearman": round(float(np.mean(within)), 4), "across_group_spearman": round(float(np.mean(across)), 4),
            "groups": len(PARAPHRASE_GROUPS), "prompts": len(prompts)}



def _cosine(x: torch.Tensor, y: torch.Tensor) -> float:
    return round(float(torch.nn.functional.cosine_similarity(x, y, dim=-1).mean()), 4)



def eval_mulan(corpus: Path, checkpoint: Path | None = None, clips: int | None = None) -> dict:
    """MuLan's metrics on the test split (held-out wording, progressions, melodies)."""
    model = load_mulan(checkpoint)
    records = read_records(corpus, "test")[:clips]
    frames = corpus_frames(corpus, records)
    t0 = time.perf_counter()
    per_window = [model.embed_frames(f, per_window=True) for f in frames]
    embed_s = (time.perf_counter() - t0) / len(frames)
    audio = torch.nn.functional.normalize(torch.stack([w.mean(0) for w in per_window]), dim=-1)
    sentences = SentenceCache(Path(corpus) / "cache" / "minilm-captions.npz").embed([r["caption"] for r in records])
    with torch.inference_mode():
        text = model.text_tower(torch.from_numpy(sentences))
    leads = [next(i["program"] for i in r["instruments"] if i["role"] == "lead") for r in records]
    windows_all = torch.cat(per_window)
    return {
        "clips": len(records),
        "handcrafted_features": model.cfg.handcrafted,
        "text_to_audio": _recall(text @ audio.t()),
        "zero_shot_genre": _zero_shot(model, audio, [r["genre"] for r in records], {g: f"{n[0][0]} music" for g, n in GENRE_NAMES.items()}),
        "zero_shot_mood": _zero_shot(model, audio, [r["mood"] for r in records], {m: f"{n[0][0]} music" for m, n in MOOD_NAMES.items()}),
        "zero_shot_lead_instrument": _zero_shot(model, audio, leads, {p: f"music led by {INSTRUMENT_NAMES[p][0][0]}" for p in sorted(set(leads))}),
        "paraphrase": _paraphrase_consistency(model, audio),
        "rvq_cosine": {"audio_clip": _cosine(audio, model.reconstruct(audio)), "audio_window": _cosine(windows_all, model.reconstruct(windows_all)),
                       "text": _cosine(text, model.reconstruct(text))},
        "audio_embed_s_per_20s_clip": round(embed_s, 4),
    }



# ----------------------------------------------------------------------------- MuLan
PARAPHRASE_GROUPS = {  # hand-written; none of these prompts is a training caption
    "calm": ("mellow music", "laid-back music", "chill music", "soothing music", "relaxing music"),
    "energetic": ("energetic music", "upbeat music", "driving music", "music full of energy", "pumped-up music"),
    "sad": ("sad music", "melancholy music", "mournful music", "gloomy music", "tearful music"),
    "dark": ("dark music", "menacing music", "sinister music", "creepy music", "foreboding music"),
}

