"""The tokenize step: every corpus clip as M_A, S and A (and its melody rendition as melody
tokens), cached once for the three stage LMs.

Training uses audio only (MusicLM §3.3): M_A comes from the MuLan *audio* tower of the clip (one
12-token set per 10 s window at a 1 s stride, so a training crop takes the window it starts in),
S from the semantic tokenizer, A from the codec encoder. The cache names the checkpoints it came
from, so stale tokens are never mixed with new models.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..audio import load_audio
from ..checkpoints import CHECKPOINT_DIR
from ..data.build import read_records
from ..features import corpus_frames
from ..files import atomic_write
from ..melody import FRAME_RATE, MELODY_SOURCES, UNVOICED, VOCAB, score_tokens, tokens, track
from ..nn.codec import load_codec
from ..nn.mulan import load_mulan
from ..nn.semantic import load_semantic

TOKEN_KEYS = ("M", "S", "A")


def checkpoint_fingerprint(paths: dict[str, Path]) -> str:
    """Hash of the model files that make the tokens (a run folder's model.safetensors, or the
    exported file and its shards)."""
    h = hashlib.sha1()
    for name in sorted(paths):
        path = Path(paths[name])
        files = [path / "model.safetensors"] if path.is_dir() else sorted(path.parent.glob(f"{path.stem}*.safetensors"))
        for f in files:
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def tokenize_clip(models: dict, frames: np.ndarray, audio: np.ndarray) -> dict[str, np.ndarray]:
    """One clip → M (windows, 12), S (T25,), A (12, T50)."""
    with torch.inference_mode():
        m = models["mulan"].tokens(models["mulan"].embed_frames(frames, per_window=True))
        s = models["semantic"].tokenize_frames(torch.from_numpy(frames.astype(np.float32))[None])[0]
        a = models["codec"].encode(torch.from_numpy(audio)[None])[0]
    return {"M": m.numpy().astype(np.int16), "S": s.numpy().astype(np.int16), "A": a.numpy().astype(np.int16)}


def load_tokenizers(checkpoints: dict[str, Path | None] | None = None) -> dict:
    checkpoints = checkpoints or {}
    return {"mulan": load_mulan(checkpoints.get("mulan")), "semantic": load_semantic(checkpoints.get("semantic")),
            "codec": load_codec(checkpoints.get("codec"))}


def token_cache_path(corpus: Path, split: str) -> Path:
    return Path(corpus) / "cache" / f"tokens-{split}.npz"


def build_token_cache(corpus: Path, split: str, checkpoints: dict[str, Path | None] | None = None, progress: bool = True) -> Path:
    """Tokenize every clip of a split (all clips have the corpus clip length) into one .npz."""
    records = read_records(corpus, split)
    paths = {n: Path(p) if p else CHECKPOINT_DIR / f"{n}.safetensors" for n, p in {"mulan": None, "semantic": None, "codec": None, **(checkpoints or {})}.items()}
    fingerprint = checkpoint_fingerprint(paths)
    path = token_cache_path(corpus, split)
    if path.exists() and json.loads(str(np.load(path)["meta"]))["fingerprint"] == fingerprint:
        return path
    models = load_tokenizers(paths)
    frames = corpus_frames(corpus, records)
    rows = {k: [] for k in TOKEN_KEYS}
    iterator = zip(records, frames)
    if progress:
        iterator = tqdm(iterator, total=len(records), desc=f"tokenize {split}", unit="clip")
    for record, f in iterator:
        for k, v in tokenize_clip(models, f, load_audio(Path(corpus) / record["audio"])).items():
            rows[k].append(v)
    shortest = {k: min(v.shape[-1] if k != "M" else v.shape[0] for v in rows[k]) for k in TOKEN_KEYS}
    arrays = {
        "M": np.stack([v[: shortest["M"]] for v in rows["M"]]),
        "S": np.stack([v[: shortest["S"]] for v in rows["S"]]),
        "A": np.stack([v[:, : shortest["A"]] for v in rows["A"]]),
    }
    meta = json.dumps({"fingerprint": fingerprint, "checkpoints": {k: str(v) for k, v in paths.items()}, "ids": [r["id"] for r in records]})

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(meta), **arrays)

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)
    return path


def token_cache_ids(corpus: Path, split: str) -> list[str]:
    """Clip ids in the token cache's row order."""
    return json.loads(str(np.load(token_cache_path(corpus, split))["meta"]))["ids"]


def load_token_cache(corpus: Path, split: str) -> dict[str, torch.Tensor]:
    path = token_cache_path(corpus, split)
    if not path.exists():
        raise FileNotFoundError(f"no token cache at {path}; run: python -m engine tokenize --corpus {corpus}")
    data = np.load(path)
    return {k: torch.from_numpy(data[k].astype(np.int64)) for k in TOKEN_KEYS}


# ----------------------------------------------------------------------------- corpus cache
def melody_cache_path(corpus: Path, split: str) -> Path:
    return Path(corpus) / "cache" / f"melody-{split}.npz"


def build_melody_cache(corpus: Path, split: str, progress: bool = True, save_every: int = 50, source: str = "tracked") -> Path:
    """Every clip's melody as (clips, frames) tokens (``VOCAB``, the pad id, where a clip has
    none): ``tracked`` from its melody rendition (``melody/<id>.flac``) by the pitch tracker a hum
    goes through (≈ 1 s a clip: resumable, saved as it goes); ``score`` from the lead line's
    notes, instantly: what the tracker reads, without its errors (the corpus's ground truth)."""
    if source not in MELODY_SOURCES:
        raise ValueError(f"unknown melody source {source!r}; choose from {', '.join(MELODY_SOURCES)}")
    records = read_records(corpus, split)
    path = melody_cache_path(corpus, split)
    done: dict[str, np.ndarray] = {}
    if path.exists():
        data = np.load(path)
        built_from = str(data["source"]) if "source" in data else "tracked"
        if built_from == source:  # a cache from the other source starts afresh
            done = dict(zip(json.loads(str(data["ids"])), data["melody"]))
    frames = int(records[0]["seconds"] * FRAME_RATE)

    def save() -> None:
        ids = [r["id"] for r in records if r["id"] in done]
        stack = np.stack([np.pad(done[i][:frames], (0, max(0, frames - done[i].size)), constant_values=UNVOICED) for i in ids])
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: np.savez(open(tmp, "wb"), ids=np.array(json.dumps(ids)), melody=stack.astype(np.int8),
                                                source=np.array(source)))

    todo = [r for r in records if r["id"] not in done]
    iterator = todo
    if progress:
        iterator = tqdm(todo, desc=f"track melodies {split}", unit="clip")
    for n, record in enumerate(iterator, 1):
        if record.get("rendition") and source == "score":
            done[record["id"]] = score_tokens(record["melody"], frames)
        elif record.get("rendition"):
            done[record["id"]] = tokens(track(load_audio(Path(corpus) / record["rendition"]["audio"])))
        else:  # a crop inside the intro has no lead line: the melody is absent, as in text-only use
            done[record["id"]] = np.full(frames, VOCAB)
        if n % save_every == 0:
            save()
    if todo or not path.exists():
        save()
    return path



def load_melody_cache(corpus: Path, split: str, ids: list[str]) -> torch.Tensor:
    """Melody tokens in the token cache's clip order (``ids``)."""
    path = melody_cache_path(corpus, split)
    if not path.exists():
        raise FileNotFoundError(f"no melody cache at {path}; run: python -m engine tokenize --only melody --corpus {corpus}")
    data = np.load(path)
    row = {i: k for k, i in enumerate(json.loads(str(data["ids"])))}
    missing = [i for i in ids if i not in row]
    if missing:
        raise FileNotFoundError(f"{len(missing)} clips have no melody tokens yet; run: python -m engine tokenize --only melody --corpus {corpus}")
    return torch.from_numpy(data["melody"][[row[i] for i in ids]].astype(np.int64))

