"""Training: one loop and one recipe runner that every model uses.

Each model declares a ``Recipe`` (its module, batches, loss and what to fit after the last
step) in its own file beside this one; ``run_recipe`` does the rest the same way for all. The loop is nanoGPT-shaped: sample a batch, step, log, checkpoint. It is resumable (model,
optimizer and step live in ``runs/<name>/`` as safetensors + JSON, written atomically) and runs
unchanged under ``torchrun`` (data parallel over gloo on CPU, nccl on GPU: ranks draw different
batches and average their gradients before every step).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch import nn
from tqdm import tqdm

from ..data.recorded import TRAINING_MUSIC
from ..files import save_json, save_tensors


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
    pitch_weight: float = 0.0  # codec: weight of the fine log-STFT term that keeps the notes (codec_loss; codec_decoder_loss in a fine-tune)
    note_weight: float = 0.0  # codec trained from scratch: weight of the note head on the first levels (codec_loss)
    recorded_share: float = 0.0  # codec from scratch: share of crops taken from recorded music (data/recorded.py) instead of the corpus
    recorded: tuple[str, ...] = TRAINING_MUSIC  # … from these folders
    tone_share: float = 0.0  # codec: share of crops that are synthetic tones (train/codec.py synthetic_tones)
    phase_glide: bool = False  # codec: a decoder whose partials' phases run on at the frequency its magnitudes say (nn/codec.py); with --init, added to the trained one
    glide_rule: bool = False  # codec with phase_glide: glide where a rule finds a steady partial, not by learnt gates (nn/codec.py steady_partials)
    glide_prominence: float | None = None  # codec with glide_rule: the rule's threshold in nats (None: the codec's own, nn/codec.py CodecConfig)
    phase_vector: bool = False  # codec from scratch: the decoder's phases are 2-vectors' angles (nn/codec.py Decoder._stated_phase)
    phase_weight: float = 0.0  # codec: weight of the decoder's own frames against the target's (train/codec.py phase_derivative_loss, amplitude_loss)
    spectrum_weight: float = 0.0  # codec: weight of the decoder's own frames' compressed spectra against the target's (train/codec.py spectrum_loss)
    magnitude_weight: float = 0.0  # codec: weight of the decoder's own frames' compressed magnitudes against the target's where it has a steady partial (train/codec.py magnitude_loss)
    onset_weight: float = 0.0  # codec: weight of the output's attacks against the target's (train/codec.py onset_loss)
    coarse_share: float = 0.0  # codec fine-tune: share of the batch decoded from the levels stage 2 writes, which generation decodes
    fine_fft: int = 0  # codec fine-tune: a magnitude head this many points long on the gliding decoder, trained alone on magnitudes (nn/codec.py revoice)
    fine_context: int = 0  # … reading this many tokens before each too (CodecConfig.fine_context)
    fine_chorus_cents: float | None = None  # … and the revoiced partials' chorus copy this many cents sharp (CodecConfig.fine_chorus_cents; None: the init codec's)
    magnitudes_only: bool = False  # codec fine-tune: the decoder's frames' magnitudes alone, no term on the audio (train/codec.py codec_magnitudes_loss)
    phase_beyond_levels: int = 0  # codec from scratch: that spectrum's phase counts only for decodes from more levels than this (0: all)
    critic_weight: float = 0.0  # codec: weight of a critic's hinge and feature-matching terms on the decoder (nn/critic.py; 0: none)
    critic_after: int = 0  # codec: steps in which the critic learns before the decoder hears it
    critic_kind: str = "stft"  # codec: which critic (nn/critic.py CRITICS): short complex-STFT frames, or the fine structure of long ones


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


# ----------------------------------------------------------------------------- run folders
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


def rewrite_weights(run_dir: Path, model: nn.Module, info: dict) -> None:
    """Replace a run's weights after a post-training step (e.g. fitting an RVQ) and record it."""
    save_tensors(model.state_dict(), run_dir / "model.safetensors")
    state = json.loads((run_dir / "state.json").read_text())
    save_json({**state, **info}, run_dir / "state.json")


# ----------------------------------------------------------------------------- the loop
class Adversary(Protocol):
    """A second network that a loss steps itself (a GAN's critic): the loop only keeps it, with
    its optimizer and its own step count, in ``<run>/critic/`` beside the model."""
    critic: nn.Module
    optimizer: torch.optim.Optimizer
    steps: int


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
    adversary: Adversary | None = None,
) -> dict:
    """Train until ``cfg.steps`` or ``cfg.max_minutes``; returns the last logged metrics."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.8, 0.99))
    step = load_checkpoint(run_dir, model, optimizer)
    if adversary is not None:
        adversary.steps = load_checkpoint(run_dir / "critic", adversary.critic, adversary.optimizer)
    if ddp.world > 1:  # every rank starts from rank 0's weights
        with torch.no_grad():
            for p in model.parameters():
                dist.broadcast(p, 0)
    bar = None
    if progress and ddp.main:
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
            if adversary is not None:  # first: a run stopped between the two resumes with a critic at most one save older
                save_checkpoint(run_dir / "critic", adversary.critic, adversary.optimizer, adversary.steps, {})
            save_checkpoint(run_dir, model, optimizer, step, {"name": name, "config": config, "train": asdict(cfg), "metrics": logged})
        if out_of_time:
            break
    if bar is not None:
        bar.close()
    if ddp.main and not (run_dir / "state.json").exists():  # a zero-step run (a refit) still leaves a run
        save_checkpoint(run_dir, model, optimizer, step, {"name": name, "config": config, "train": asdict(cfg), "metrics": logged})
    return {"step": step, "wall_s": round(time.perf_counter() - t0, 1), **logged}


# ----------------------------------------------------------------------------- the recipe
@dataclass
class Recipe:
    """What one model brings to a training run; ``run_recipe`` does the rest."""
    model: nn.Module
    batches: Iterator[Any]
    loss: Callable[[nn.Module, Any], tuple[torch.Tensor, dict]]
    finish: Callable[[nn.Module], dict] | None = None  # after the last step, on rank 0: fit what gradients do not train, measure held-out loss
    finish_key: str = "finish"  # under which key the run's state.json records the finished result
    adversary: Adversary | None = None  # a critic the loss steps itself, kept in the run folder


Prepare = Callable[..., Recipe]  # (corpus, preset, TrainConfig, rank, **model options) → Recipe


def run_recipe(name: str, prepare: Prepare, corpus: Path, preset: str, run_dir: Path, overrides: dict | None = None,
               progress: bool = True) -> dict:
    """Train model ``name`` the one way every model trains: join the process group, take the
    preset's ``TrainConfig`` with ``overrides`` (keys that are not its fields are model options
    for ``prepare``), seed, build the recipe, loop, then finish and record the result."""
    overrides = dict(overrides or {})
    options = {k: overrides.pop(k) for k in list(overrides) if k not in TrainConfig.__dataclass_fields__}
    ddp = setup_distributed()
    cfg = replace(TRAIN_PRESETS[name][preset], **overrides)
    torch.manual_seed(cfg.seed)
    recipe = prepare(corpus, preset, cfg, ddp.rank, **options)
    config = {"preset": preset, **recipe.model.config_dict()}
    result = train_loop(name, recipe.model, config, recipe.batches, recipe.loss, cfg, run_dir, ddp, progress, recipe.adversary)
    if ddp.main and recipe.finish is not None:
        result.update(recipe.finish(recipe.model))
        rewrite_weights(run_dir, recipe.model, {recipe.finish_key: result})
    if ddp.world > 1:
        dist.destroy_process_group()
    return result
