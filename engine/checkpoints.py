"""Where trained weights live, how they are shipped, and how they are loaded back.

Inference needs only this file to find and verify a model's weights; it imports no model and no
training code (each model's ``load_*`` passes the function that builds it from its stored config).
The studio and the CLI read ``model_status`` to say plainly which models are missing and which
command trains them, instead of failing with a traceback when ``assets/checkpoints/`` is empty.
"""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from safetensors.torch import load_file
from torch import nn

from .files import save_json, save_tensors
from .integrity import MANIFEST, file_sha256, verify_hashes
from .paths import CHECKPOINT_DIR

TRAINING_ONLY_BUFFERS = ("embed_avg", "cluster_size")  # RVQ EMA statistics: not needed to infer
SHARD_BYTES = 14_000_000  # assets/checkpoints keeps every file under 15 MB


@dataclass(frozen=True)
class ModelEntry:
    name: str
    role: str  # what it does in the paper's Figure 2, in plain words
    train_command: str

    def path(self, root: Path) -> Path:
        return root / f"{self.name}.safetensors"


MODELS = (
    ModelEntry("codec", "SoundStream-style codec: waveform ↔ acoustic tokens A (50 Hz RVQ)", "python -m engine train codec --preset cpu-small"),
    ModelEntry("mulan", "MuLan text/music embedding → conditioning tokens M", "python -m engine train mulan --preset cpu-small"),
    ModelEntry("prior", "MuLan prior: a prompt's embedding → the audio embeddings the stages learned from",
               "python -m engine train prior (after tokenize)"),
    ModelEntry("semantic", "self-supervised semantic tokenizer → tokens S (25 Hz)", "python -m engine train semantic --preset cpu-small"),
    ModelEntry("stage1", "semantic LM p(S | M)", "python -m engine train stage1 --preset cpu-small"),
    ModelEntry("stage2", "coarse acoustic LM p(A_coarse | S, M)", "python -m engine train stage2 --preset cpu-small"),
    ModelEntry("stage3", "fine acoustic LM p(A_fine | A_coarse)", "python -m engine train stage3 --preset cpu-small"),
)
MODEL_NAMES = tuple(m.name for m in MODELS)


def model_status(root: Path | None = None) -> list[dict]:
    """One row per model: name, role, whether its checkpoint is present (in ``root``, default
    ``CHECKPOINT_DIR``), and how to train it."""
    return [{"name": m.name, "role": m.role, "present": m.path(root or CHECKPOINT_DIR).exists(), "train_command": m.train_command}
            for m in MODELS]


def missing_models(root: Path | None = None) -> list[dict]:
    return [row for row in model_status(root) if not row["present"]]


# ----------------------------------------------------------------------------- integrity
def record_hashes(folder: Path, names: list[str]) -> None:
    """Add (or refresh) ``names`` in the folder's manifest."""
    manifest = folder / MANIFEST
    hashes = json.loads(manifest.read_text()) if manifest.exists() else {}
    hashes.update({name: file_sha256(folder / name) for name in names})
    save_json(dict(sorted(hashes.items())), manifest)


# ----------------------------------------------------------------------------- export and load
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


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of an exported file or of a training run folder (fine-tuning starts from either)."""
    return load_exported(path)[1] if path.suffix == ".safetensors" else load_file(str(path / "model.safetensors"))


def model_set(root: Path | None) -> dict[str, Path]:
    """Where each model of a set lies: in ``root`` as an exported file (``<name>.safetensors``) or
    a training run folder named after it (a retraining chain's runs folder holds ``codec/``,
    ``stage2/`` …), else the shipped one, so a folder names only the models that differ."""
    if root is None:
        return {name: CHECKPOINT_DIR / f"{name}.safetensors" for name in MODEL_NAMES}
    root = Path(root)
    found = {}
    for name in MODEL_NAMES:  # an exported file first, then a run folder
        path = next((p for p in (root / f"{name}.safetensors", root / name) if p.is_file() or (p / "state.json").exists()), None)
        if path is not None:
            found[name] = path
    if not found:
        raise FileNotFoundError(f"{root} holds no model: neither <name>.safetensors nor a run folder <name>/ for any of {', '.join(MODEL_NAMES)}")
    return {name: found.get(name, CHECKPOINT_DIR / f"{name}.safetensors") for name in MODEL_NAMES}


RANDOM_INITS = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_")


@contextmanager
def initial_weights_skipped() -> Iterator[None]:
    """Build modules without drawing random initial weights, for weights that are loaded next
    anyway: the draws are a tenth of a second of every command-line start (MiniLM's 11.7 M-entry
    word table alone takes 50 ms). torch.nn.init's draws, and torch's modules' own imports of them,
    return their tensor untouched inside."""
    holders = [nn.init, *(module for name, module in list(sys.modules.items()) if name.startswith("torch.nn.modules."))]
    saved = [(holder, name, getattr(holder, name)) for holder in holders for name in RANDOM_INITS
             if getattr(holder, name, None) is getattr(nn.init, name)]  # torch's modules that imported a draw by name too (MultiheadAttention)
    for holder, name, _ in saved:
        setattr(holder, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for holder, name, draw in saved:
            setattr(holder, name, draw)


def load_trained(name: str, path: Path | str | None, build: Callable[[dict], nn.Module], device: str = "cpu") -> nn.Module:
    """Load a model from ``assets/checkpoints/<name>.safetensors`` (default), another exported
    file, a folder of them, or a training run folder; ``build`` makes the module from the stored config."""
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
    with initial_weights_skipped():
        model = build(config)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)  # take the loaded tensors: no second copy
    if unexpected or any(not k.endswith(TRAINING_ONLY_BUFFERS) for k in missing):
        raise ValueError(f"{path} does not match the {name} config (missing {missing}, unexpected {unexpected})")
    return model.to(device).eval()


def config_without_preset(config: dict) -> dict:
    """A stored config as its model's dataclass takes it: the preset name is a record, not a field."""
    return {k: v for k, v in config.items() if k != "preset"}
