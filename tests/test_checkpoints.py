"""Shipped checkpoints load only as safetensors listed, with their SHA-256, in the folder's manifest."""
import json
import shutil

import pytest

from engine import CHECKPOINT_DIR
from engine.checkpoints import load_exported, model_set
from engine.integrity import MANIFEST


def test_every_shipped_file_is_in_the_manifest_with_its_hash():
    hashes = json.loads((CHECKPOINT_DIR / MANIFEST).read_text())
    shipped = {p.name for p in CHECKPOINT_DIR.iterdir() if p.suffix in (".json", ".safetensors") and p.name != MANIFEST}
    assert shipped == set(hashes)
    for name in ("codec", "mulan", "semantic", "stage1", "stage2", "stage3"):
        load_exported(CHECKPOINT_DIR / f"{name}.safetensors")  # verifies every shard's hash


def test_a_changed_or_unlisted_checkpoint_is_refused(tmp_path):
    for name in ("semantic.safetensors", "semantic.json", MANIFEST):
        shutil.copy(CHECKPOINT_DIR / name, tmp_path / name)
    load_exported(tmp_path / "semantic.safetensors")
    data = bytearray((tmp_path / "semantic.safetensors").read_bytes())
    data[-1] ^= 1  # one flipped bit in the weights
    (tmp_path / "semantic.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match its SHA-256"):
        load_exported(tmp_path / "semantic.safetensors")
    hashes = json.loads((tmp_path / MANIFEST).read_text())
    del hashes["semantic.json"]
    (tmp_path / MANIFEST).write_text(json.dumps(hashes))
    with pytest.raises(ValueError, match="not listed"):
        load_exported(tmp_path / "semantic.safetensors")


def test_a_folder_names_only_the_models_that_differ(tmp_path):
    (tmp_path / "stage2").mkdir()
    (tmp_path / "stage2" / "state.json").write_text("{}")  # a training run folder
    shutil.copy(CHECKPOINT_DIR / "codec.safetensors", tmp_path / "codec.safetensors")  # an exported file
    where = model_set(tmp_path)
    assert where["stage2"] == tmp_path / "stage2" and where["codec"] == tmp_path / "codec.safetensors"
    assert where["stage1"] == CHECKPOINT_DIR / "stage1.safetensors"  # the rest: the shipped ones
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no model"):
        model_set(tmp_path / "empty")


def test_a_file_hashed_ahead_is_still_checked_and_weights_built_unset_load_whole(tmp_path):
    import torch

    from engine.checkpoints import initial_weights_skipped
    from engine.integrity import hash_ahead, manifest_files
    from engine.nn.semantic import load_semantic

    for name in ("semantic.safetensors", "semantic.json", MANIFEST):
        shutil.copy(CHECKPOINT_DIR / name, tmp_path / name)
    data = bytearray((tmp_path / "semantic.safetensors").read_bytes())
    data[-1] ^= 1
    (tmp_path / "semantic.safetensors").write_bytes(bytes(data))
    hash_ahead(manifest_files(tmp_path / "semantic.safetensors"))  # what MusicLM.load starts while it builds the models
    with pytest.raises(ValueError, match="does not match its SHA-256"):
        load_exported(tmp_path / "semantic.safetensors")
    draw, attention_draw = torch.nn.init.normal_, torch.nn.modules.activation.xavier_uniform_
    with initial_weights_skipped():
        assert torch.nn.init.normal_ is not draw
        generator = torch.get_rng_state()
        torch.nn.MultiheadAttention(8, 2)  # it draws through its own import of xavier_uniform_
        assert torch.equal(torch.get_rng_state(), generator)  # nothing drawn
    assert torch.nn.init.normal_ is draw and torch.nn.modules.activation.xavier_uniform_ is attention_draw  # restored
    a, b = load_semantic(CHECKPOINT_DIR / "semantic.safetensors"), load_semantic(CHECKPOINT_DIR / "semantic.safetensors")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
