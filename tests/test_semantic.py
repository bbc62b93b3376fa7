import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.evaluation import linear_probe, probe_labels
from engine.features import analyze, token_frames
from engine.semantic import BaselineTokenizer, SemanticConfig, SemanticModel, load_semantic
from engine.transformer import TransformerConfig

ROOT = Path(__file__).resolve().parents[1]
TINY = SemanticConfig(encoder=TransformerConfig(dim=32, layers=3, heads=2, causal=False), target_clusters=8, token_layer=2, vocab=16,
                      context_seconds=4.0)


def _tiny_model() -> SemanticModel:
    torch.manual_seed(0)
    model = SemanticModel(TINY).eval()
    model.centroids.copy_(torch.randn(16, 32))
    return model


def _noise(seconds: float) -> np.ndarray:
    return np.random.default_rng(1).normal(0, 0.1, int(seconds * 24_000)).astype(np.float32)


@pytest.mark.parametrize("seconds", [1.0, 10.0, 23.0])
def test_tokens_come_at_25_hz_and_are_deterministic(seconds):
    model = _tiny_model()
    tokens = model.tokenize(_noise(seconds))
    assert tokens.shape == (int(seconds * 25),) and tokens.dtype == torch.long
    assert int(tokens.max()) < 16
    assert torch.equal(tokens, model.tokenize(_noise(seconds)))


def test_windowed_features_match_one_pass_inside_a_window():
    model = _tiny_model()
    frames = analyze(torch.from_numpy(_noise(3.0)))
    whole = model.encoder(model.embed(frames[:, :64, :300]), upto=TINY.token_layer)  # tokens cover whole 4-frame groups
    assert torch.allclose(model.features(frames), whole, atol=1e-5)


def test_span_masks_hide_about_a_third_of_the_frames():
    model = _tiny_model()
    mask = model.span_mask(64, 250, torch.Generator().manual_seed(0))
    assert 0.25 < float(mask.float().mean()) < 0.45


def test_masked_prediction_loss_is_finite_and_has_gradients():
    model = _tiny_model().train()
    frames = analyze(torch.from_numpy(_noise(4.0)))
    model.targets.fit(token_frames(frames)[0])
    loss, metrics = model.loss(frames.repeat(2, 1, 1))
    loss.backward()
    assert torch.isfinite(loss) and model.stem.conv.weight.grad is not None
    assert {"harmony_loss", "timbre_loss", "chroma_loss"} <= set(metrics)


def test_baseline_tokenizer_uses_the_same_frame_rate():
    frames = analyze(torch.from_numpy(_noise(6.0)))
    baseline = BaselineTokenizer(vocab=16)
    baseline.fit(token_frames(frames)[0])
    assert baseline.tokenize_frames(frames).shape == (1, 150)


def test_probe_labels_follow_the_ground_truth():
    record = {
        "chords": [{"start": 0.0, "end": 1.0, "root": 2}, {"start": 1.0, "end": 2.0, "root": 7}],
        "melody": [{"onset": 0.5, "duration": 0.5, "pitch": 64}],
        "beats": [0.0, 0.5, 1.0, 1.5, 2.0],
        "instruments": [{"role": "lead", "program": 73, "is_drum": False}],
    }
    labels = probe_labels(record, 50, 25.0)
    assert labels["chord_root"][0] == 2 and labels["chord_root"][30] == 7
    assert labels["melody_pitch_class"][15] == 4 and labels["melody_pitch_class"][5] == -1
    assert labels["beat_phase"][0] == 0 and labels["beat_phase"][3] == 1 and labels["beat_phase"][11] == 3
    assert labels["instrument_family"][15] == 9 and labels["instrument_family"][5] == -1


def test_linear_probe_learns_what_is_linearly_there_and_not_more():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 5, generator=g)
    y = (x[:, 0] > 0).long()
    assert linear_probe(x[:1500], y[:1500], x[1500:], y[1500:]) > 0.95
    tokens = torch.randint(0, 20, (2000,), generator=g)
    assert linear_probe(tokens[:1500], (tokens[:1500] % 2), tokens[1500:], tokens[1500:] % 2) > 0.99
    noise = torch.randint(0, 2, (2000,), generator=g)
    assert linear_probe(x[:1500], noise[:1500], x[1500:], noise[1500:]) < 0.6


def test_train_then_eval_semantic_on_the_smoke_corpus(smoke_corpus, tmp_path):
    corpus, _ = smoke_corpus
    run = tmp_path / "semantic"
    cmd = [sys.executable, "-m", "engine"]
    proc = subprocess.run(cmd + ["train", "semantic", "--corpus", str(corpus), "--run-dir", str(run), "--steps", "2", "--batch-size", "2", "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = subprocess.run(cmd + ["eval", "semantic", "--corpus", str(corpus), "--checkpoint", str(run), "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    assert set(report["probes"]) == {"chord_root", "melody_pitch_class", "beat_phase", "instrument_family"}
    assert 0 < report["semantic_codes"]["perplexity"] <= 1024
    model = load_semantic(run)
    assert model.tokenize(_noise(2.0)).shape == (50,)
