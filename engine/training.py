"""Training: one loop that every model uses, and the codec's losses and step.

The loop is nanoGPT-shaped: sample a batch, step, log, checkpoint. It is resumable (model,
optimizer and step live in ``runs/<name>/`` as safetensors + JSON, written atomically) and runs
unchanged under ``torchrun`` (data parallel over gloo on CPU, nccl on GPU: ranks draw different
batches and average their gradients before every step).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn

from .audio import SAMPLE_RATE, log_mel, stft_distance
from .files import atomic_write


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 20_000
    batch_size: int = 8
    crop_seconds: float = 1.0
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup: int = 300
    checkpoint_every: int = 250
    log_every: int = 25
    max_minutes: float = float("inf")  # stop (with a checkpoint) after this much wall time
    seed: int = 0
    init: str = ""  # fine-tune: start from this trained checkpoint (file or run folder) instead of random weights
    descriptor_weight: float = 1.0  # codec decoder fine-tune: scale of its chroma and MFCC-spread terms
    pitch_weight: float = 0.0  # codec trained from scratch: weight of the fine log-STFT term that keeps the notes (codec_loss)


TRAIN_PRESETS = {
    "codec": {
        "cpu-small": TrainConfig(steps=14_000, batch_size=8, crop_seconds=1.0, lr=1e-3),
        "gpu-base": TrainConfig(steps=200_000, batch_size=32, crop_seconds=2.0, lr=5e-4),
    },
    "mulan": {
        "cpu-small": TrainConfig(steps=1000, batch_size=128, lr=1e-3, warmup=100, checkpoint_every=100),
        "gpu-base": TrainConfig(steps=20_000, batch_size=256, lr=5e-4, warmup=500),
    },
    **{stage: {
        "cpu-small": TrainConfig(steps=4000, batch_size=16, lr=1e-3, warmup=200, checkpoint_every=200),
        "gpu-base": TrainConfig(steps=100_000, batch_size=64, lr=3e-4, warmup=2000),
    } for stage in ("stage1", "stage2", "stage3")},
    "semantic": {
        "cpu-small": TrainConfig(steps=2000, batch_size=24, crop_seconds=6.0, lr=1e-3, warmup=200, checkpoint_every=200),
        "gpu-base": TrainConfig(steps=100_000, batch_size=64, crop_seconds=10.0, lr=5e-4, warmup=2000),
    },
}


# ----------------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Dist:
    """Join the process group when launched by torchrun; a plain process is rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Dist(int(os.environ.get("RANK", "0")), world)


# ----------------------------------------------------------------------------- checkpoints
def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def save_json(obj: dict, path: Path) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2)))


def save_checkpoint(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, step: int, info: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    save_tensors(model.state_dict(), run_dir / "model.safetensors")
    flat, layout = {}, {}
    for pid, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            flat[f"{pid}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    layout["param_groups"] = optimizer.state_dict()["param_groups"]
    save_tensors(flat, run_dir / "optimizer.safetensors")
    save_json({"step": step, "optimizer": layout, **info}, run_dir / "state.json")


def load_checkpoint(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> int:
    """Restore a run; returns the step to continue from (0 when there is nothing to resume)."""
    state_path = run_dir / "state.json"
    if not state_path.exists():
        return 0
    state = json.loads(state_path.read_text())
    model.load_state_dict(load_file(str(run_dir / "model.safetensors")))
    if optimizer is not None:
        flat = load_file(str(run_dir / "optimizer.safetensors"))
        per_param: dict[int, dict] = {}
        for name, value in flat.items():
            pid, key = name.split(".", 1)
            per_param.setdefault(int(pid), {})[key] = value
        optimizer.load_state_dict({"state": per_param, "param_groups": state["optimizer"]["param_groups"]})
    return int(state["step"])


TRAINING_ONLY_BUFFERS = ("embed_avg", "cluster_size")  # RVQ EMA statistics: not needed to infer
SHARD_BYTES = 14_000_000  # assets/checkpoints keeps every file under 15 MB


def export_checkpoint(run_dir: Path, path: Path, half: bool = False) -> dict:
    """Ship a run's weights to assets/checkpoints as float32 safetensors shards + a JSON config.

    float16 storage would halve the size but moves the RVQ codes (the LMs' tokens): measured on
    the codec, 98 % of codes changed. So the tokenizers stay float32 and large models are sharded:
    ``name.safetensors``, ``name-1.safetensors`` …, listed in ``name.json``. The stage LMs only
    produce logits to sample from, so they ship as float16 (``half``) and load back as float32.
    """
    state = json.loads((run_dir / "state.json").read_text())
    weights = {k: v for k, v in load_file(str(run_dir / "model.safetensors")).items() if not k.endswith(TRAINING_ONLY_BUFFERS)}
    if half:
        weights = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in weights.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    names = [path.name if i == 0 else f"{path.stem}-{i}{path.suffix}" for i in range(len(shards))]
    path.parent.mkdir(parents=True, exist_ok=True)
    for name, shard in zip(names, shards):
        save_tensors(shard, path.with_name(name), metadata={"config": json.dumps(state["config"])})
    info = {"step": state["step"], "train": state["train"], "metrics": state["metrics"], "shards": names}
    save_json({"config": state["config"], **info}, path.with_suffix(".json"))
    record_hashes(path.parent, [path.with_suffix(".json").name, *names])
    return info


MANIFEST = "MANIFEST.json"  # SHA-256 of every file in a checkpoint folder, written by export_checkpoint


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def record_hashes(folder: Path, names: list[str]) -> None:
    """Add (or refresh) ``names`` in the folder's manifest."""
    manifest = folder / MANIFEST
    hashes = json.loads(manifest.read_text()) if manifest.exists() else {}
    hashes.update({name: file_sha256(folder / name) for name in names})
    save_json(dict(sorted(hashes.items())), manifest)


def verify_hashes(folder: Path, names: list[str]) -> None:
    """Where a folder has a manifest, every file loaded from it must be listed with its hash: a
    swapped or corrupted checkpoint is refused before a byte of it is used."""
    manifest = folder / MANIFEST
    if not manifest.exists():
        return
    hashes = json.loads(manifest.read_text())
    for name in names:
        if name not in hashes:
            raise ValueError(f"{folder / name} is not listed in {manifest}; export checkpoints with `python -m engine train … --export`")
        if file_sha256(folder / name) != hashes[name]:
            raise ValueError(f"{folder / name} does not match its SHA-256 in {manifest}: the file was changed or damaged")


def load_exported(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read an exported checkpoint: its config and all its shards' tensors (hash-checked)."""
    meta_path = path.with_suffix(".json")
    shards = json.loads(meta_path.read_text()).get("shards", [path.name])
    verify_hashes(path.parent, [meta_path.name, *shards])
    meta = json.loads(meta_path.read_text())
    weights: dict[str, torch.Tensor] = {}
    for name in shards:
        weights.update(load_file(str(path.with_name(name))))
    return meta["config"], {k: v.float() if v.is_floating_point() else v for k, v in weights.items()}


def load_trained(name: str, path: Path | str | None, build: Callable[[dict], nn.Module], device: str = "cpu") -> nn.Module:
    """Load a model from ``assets/checkpoints/<name>.safetensors`` (default), another exported
    file, a folder of them, or a training run folder; ``build`` makes the module from the stored config."""
    from .models import CHECKPOINT_DIR, MODELS

    path = Path(path) if path else CHECKPOINT_DIR / f"{name}.safetensors"
    if path.is_dir() and not (path / "state.json").exists():  # a folder of exported checkpoints, like assets/checkpoints
        path = path / f"{name}.safetensors"
    if path.is_dir():  # a training run
        config = json.loads((path / "state.json").read_text())["config"]
        state = load_file(str(path / "model.safetensors"))
    elif path.exists():
        config, state = load_exported(path)
    else:
        command = next((m.train_command for m in MODELS if m.name == name), f"python -m engine train {name}")
        raise FileNotFoundError(f"no {name} checkpoint at {path}; train one with: {command}")
    model = build(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.endswith(TRAINING_ONLY_BUFFERS) for k in missing):
        raise ValueError(f"{path} does not match the {name} config (missing {missing}, unexpected {unexpected})")
    return model.to(device).eval()


def rewrite_weights(run_dir: Path, model: nn.Module, info: dict) -> None:
    """Replace a run's weights after a post-training step (e.g. fitting an RVQ) and record it."""
    save_tensors(model.state_dict(), run_dir / "model.safetensors")
    state = json.loads((run_dir / "state.json").read_text())
    save_json({**state, **info}, run_dir / "state.json")


# ----------------------------------------------------------------------------- the loop
def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10 %."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def average_gradients(model: nn.Module, world: int) -> None:
    """Data parallelism without a wrapper: DistributedDataParallel only synchronizes what runs
    through ``forward``, and our losses call other methods (``loss``, the MuLan towers). A
    parameter without a gradient on this rank contributes zeros, so every rank joins every
    reduction in the same order."""
    for p in model.parameters():
        if p.requires_grad:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            p.grad /= world


def train_loop(
    name: str,
    model: nn.Module,
    config: dict,
    batches: Iterator[torch.Tensor],
    loss_fn: Callable[[nn.Module, torch.Tensor], tuple[torch.Tensor, dict]],
    cfg: TrainConfig,
    run_dir: Path,
    ddp: Dist,
    progress: bool = True,
) -> dict:
    """Train until ``cfg.steps`` or ``cfg.max_minutes``; returns the last logged metrics."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.8, 0.99))
    step = load_checkpoint(run_dir, model, optimizer)
    if ddp.world > 1:  # every rank starts from rank 0's weights
        with torch.no_grad():
            for p in model.parameters():
                dist.broadcast(p, 0)
    bar = None
    if progress and ddp.main:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc=f"train {name}", unit="step")
    t0, logged, running, counted = time.perf_counter(), {}, {}, 0
    model.train()
    while step < cfg.steps:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss, metrics = loss_fn(model, next(batches))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if ddp.world > 1:
            average_gradients(model, ddp.world)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        for k, v in metrics.items():
            running[k] = running.get(k, 0.0) + float(v)
        counted += 1
        if step % cfg.log_every == 0:  # a resumed run's first average covers fewer steps
            logged = {k: round(v / counted, 5) for k, v in running.items()}
            running, counted = {}, 0
            if bar is not None:
                bar.set_postfix(logged)
        if bar is not None:
            bar.update(1)
        out_of_time = (time.perf_counter() - t0) / 60 > cfg.max_minutes
        if ddp.main and (step % cfg.checkpoint_every == 0 or step == cfg.steps or out_of_time):
            save_checkpoint(run_dir, model, optimizer, step, {"name": name, "config": config, "train": asdict(cfg), "metrics": logged})
        if out_of_time:
            break
    if bar is not None:
        bar.close()
    if ddp.main and not (run_dir / "state.json").exists():  # a zero-step run (a refit) still leaves a run
        save_checkpoint(run_dir, model, optimizer, step, {"name": name, "config": config, "train": asdict(cfg), "metrics": logged})
    return {"step": step, "wall_s": round(time.perf_counter() - t0, 1), **logged}


# ----------------------------------------------------------------------------- codec
MEL_RESOLUTIONS = ((512, 128, 64), (1024, 256, 80), (2048, 512, 128))


def reconstruction_loss(wav: torch.Tensor, recon: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Multi-resolution log-mel L1 (weighted 4) + log-STFT L1 and spectral convergence: (loss, mel, stft)."""
    mel = sum((log_mel(wav, n, h, m) - log_mel(recon, n, h, m)).abs().mean() for n, h, m in MEL_RESOLUTIONS) / len(MEL_RESOLUTIONS)
    stft = stft_distance(wav, recon)
    return 4.0 * mel + stft, mel, stft


PITCH_RESOLUTIONS = ((4096, 480),)  # 5.9 Hz bins: the harmonics of neighbouring notes stay apart, as they do not at 12–47 Hz


def codec_loss(model: nn.Module, wav: torch.Tensor, pitch_weight: float = 0.0) -> tuple[torch.Tensor, dict]:
    """The reconstruction loss + RVQ commitment, + ``pitch_weight`` × a log-STFT distance fine
    enough to tell the notes apart. Without it the codec learns the spectral envelope and drops
    the notes (``eval codec``: pitch-class agreement 0.18, Opus 0.78; with this term at weight 2,
    0.38 after 45 minutes from scratch)."""
    recon, _, commit = model(wav)
    loss, mel, stft = reconstruction_loss(wav, recon)
    loss = loss + 0.25 * commit
    logs = {"mel": mel.detach(), "stft": stft.detach(), "commit": commit.detach()}
    if pitch_weight:
        pitch = stft_distance(wav, recon, PITCH_RESOLUTIONS)
        loss = loss + pitch_weight * pitch
        logs["pitch"] = pitch.detach()
    return loss, {"loss": loss.detach(), **logs}


CHROMA_WEIGHT = 2.0  # decoder fine-tune: weight of the pitch-class term beside the log-mel (4) and STFT (1) terms
MFCC_SPREAD_WEIGHT = 1.0  # … and of the timbre-movement term (per-coefficient MFCC spread over the crop)


def codec_decoder_loss(model: nn.Module, wav: torch.Tensor, descriptor_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
    """Fine-tuning a trained codec: its tokens stay exactly as they are (every token cache and
    stage LM was built on them), so only the decoder learns, from the full-bitrate codes.

    Beside the reconstruction loss it matches two descriptors MuLan reads. The jointly trained
    decoder fills the gaps between harmonics, so its chroma comes out flat (mean 0.40 → 0.68 on
    test renders), and it smooths timbre over time (MFCC spread 2.52 → 1.71); MuLan then hears a
    render through the codec as far from its caption (MCC 0.42 → 0.15)."""
    from .features import CHANNELS, analyze

    with torch.no_grad():
        latents = model.quantizer.decode(model.encode(wav))
        target = analyze(wav)
    recon = model.decode_latents(latents, wav.shape[-1])
    loss, mel, stft = reconstruction_loss(wav, recon)
    frames = analyze(recon)
    chroma = (frames[:, CHANNELS["chroma"]] - target[:, CHANNELS["chroma"]]).abs().mean()
    spread = (frames[:, CHANNELS["mfcc"]].std(-1) - target[:, CHANNELS["mfcc"]].std(-1)).abs().mean()
    loss = loss + descriptor_weight * (CHROMA_WEIGHT * chroma + MFCC_SPREAD_WEIGHT * spread)
    return loss, {"loss": loss.detach(), "mel": mel.detach(), "stft": stft.detach(), "chroma": chroma.detach(),
                  "mfcc_spread": spread.detach()}


class CorpusAudio:
    """Every clip of one corpus split held in memory (int16), for random training crops."""

    def __init__(self, corpus: Path, split: str = "train", limit: int | None = None):
        import soundfile as sf

        from .data.build import read_records

        records = read_records(corpus, split)
        if not records:
            raise ValueError(f"{corpus}/{split}.jsonl has no clips; build the corpus first")
        self.records = records[:limit] if limit else records
        self.clips = [sf.read(str(Path(corpus) / r["audio"]), dtype="int16")[0] for r in self.records]

    def crops(self, batch: int, samples: int, seed: int) -> Iterator[torch.Tensor]:
        rng = np.random.default_rng(seed)
        while True:
            out = np.empty((batch, samples), dtype=np.float32)
            for i in range(batch):
                clip = self.clips[rng.integers(len(self.clips))]
                start = rng.integers(0, max(1, len(clip) - samples))
                piece = clip[start:start + samples].astype(np.float32) / 32768
                out[i, : len(piece)] = piece
                out[i, len(piece):] = 0
            gain = 10 ** (rng.uniform(-6, 3, size=(batch, 1)) / 20)  # loudness augmentation
            yield torch.from_numpy(out * gain.astype(np.float32))


def train_codec(corpus: Path, preset: str, run_dir: Path, overrides: dict | None = None, progress: bool = True) -> dict:
    from .codec import CODEC_PRESETS, HOP, Codec

    ddp = setup_distributed()
    cfg = replace(TRAIN_PRESETS["codec"][preset], **(overrides or {}))
    torch.manual_seed(cfg.seed)
    model = Codec(CODEC_PRESETS[preset])
    if cfg.init:  # a fine-tune keeps the encoder and codebooks: see codec_decoder_loss
        from .codec import load_codec

        model.load_state_dict(load_codec(Path(cfg.init)).state_dict())
        for module in (model.encoder, model.quantizer):
            module.requires_grad_(False)
    samples = int(cfg.crop_seconds * SAMPLE_RATE) // HOP * HOP
    batches = CorpusAudio(corpus).crops(cfg.batch_size, samples, seed=cfg.seed * 1000 + ddp.rank)
    loss = partial(codec_decoder_loss, descriptor_weight=cfg.descriptor_weight) if cfg.init else partial(codec_loss, pitch_weight=cfg.pitch_weight)
    result = train_loop("codec", model, {"preset": preset, **model.config_dict()}, batches, loss, cfg, run_dir, ddp, progress)
    if ddp.world > 1:
        dist.destroy_process_group()
    return result


# Stage name → trainer; `python -m engine train` and the studio's model table read this.
from .mulan import train_mulan, train_prior  # noqa: E402  (the stage modules import this one lazily)
from .semantic import train_semantic  # noqa: E402
from .lm import train_stage  # noqa: E402

TRAINERS = {"codec": train_codec, "mulan": train_mulan, "prior": train_prior, "semantic": train_semantic,
            **{stage: train_stage(stage) for stage in ("stage1", "stage2", "stage3")}}
