import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.evaluate.semantic import linear_probe, probe_labels
from engine.features import analyze, token_frames
from engine.nn.semantic import BaselineTokenizer, JointCodebook, SemanticConfig, SemanticModel, lagged, load_semantic
from engine.nn.transformer import TransformerConfig

ROOT = Path(__file__).resolve().parents[1]
TINY = SemanticConfig(encoder=TransformerConfig(dim=32, layers=3, heads=2, causal=False), target_clusters=8, token_layer=2, vocab=16,
                      context_seconds=4.0)


def _tiny_model(codebook: str = "flat") -> SemanticModel:
    torch.manual_seed(0)
    model = SemanticModel(SemanticConfig(**{**TINY.__dict__, "codebook": codebook})).eval()
    if codebook == "flat":
        model.centroids.copy_(torch.randn(16, 32))
    else:
        model.codebook.harmony_readout.copy_(torch.randn(33, 12))
        model.codebook.rhythm_readout.copy_(torch.randn(33, 13))
        model.codebook.centroids.copy_(torch.randn(16, 32 + 12 + 13))
    return model


def _noise(seconds: float) -> np.ndarray:
    return np.random.default_rng(1).normal(0, 0.1, int(seconds * 24_000)).astype(np.float32)


@pytest.mark.parametrize("codebook", ["flat", "joint"])
@pytest.mark.parametrize("seconds", [1.0, 10.0, 23.0])
def test_tokens_come_at_25_hz_and_are_deterministic(seconds, codebook):
    model = _tiny_model(codebook)
    tokens = model.tokenize(_noise(seconds))
    assert tokens.shape == (int(seconds * 25),) and tokens.dtype == torch.long
    assert int(tokens.max()) < 16
    assert torch.equal(tokens, model.tokenize(_noise(seconds)))


def test_windowed_features_match_one_pass_inside_a_window():
    model = _tiny_model()
    frames = analyze(torch.from_numpy(_noise(3.0)))
    whole = model.encoder(model.embed(frames[:, :64, :300]), upto=TINY.token_layer)  # tokens cover whole 4-frame groups
    assert torch.allclose(model.features(frames), whole, atol=1e-5)


def _purity(tokens: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of frames whose label is their token's most common one: 1 when tokens tell the labels apart."""
    return sum(int(torch.bincount(labels[tokens == t]).max()) for t in tokens.unique()) / len(tokens)


def _music(dim: int = 32):
    """Synthetic token-layer features of 4 timbres (held 240 frames each, 3× louder than the
    rest), 4 chords (changing every 10 frames) and an attack every 4 frames, each written into
    the features linearly; with the handcrafted chroma and onset the read-outs are fitted to."""
    g = torch.Generator().manual_seed(0)
    n = 960
    chords = torch.zeros(4, 12)
    for i, root in enumerate((0, 2, 5, 7)):
        chords[i, [root, (root + 4) % 12, (root + 7) % 12]] = 1.0
    chord, timbre, phase = torch.arange(4).repeat_interleave(10).repeat(24), torch.arange(4).repeat_interleave(240), torch.arange(n) % 4
    onset = (phase == 0).float()
    feats = (chords[chord] @ torch.randn(12, dim, generator=g) + lagged(onset, 6) @ torch.randn(13, dim, generator=g)
             + 3 * torch.randn(4, dim, generator=g)[timbre] + 0.05 * torch.randn(n, dim, generator=g))
    return feats, chords[chord], onset, {"chord": chord, "timbre": timbre, "phase": phase}


@pytest.mark.parametrize("weights, follows", [((0.0, 0.0), "timbre"), ((3.0, 0.0), "chord"), ((0.0, 3.0), "phase")])
def test_the_joint_codebook_gives_the_read_outs_their_share_of_the_vocabulary(weights, follows):
    """Four tokens for frames where timbre dominates the variance: plain k-means (weights 0)
    spends them on timbre; a heavy harmony or rhythm read-out spends them on the chords or on
    where the frame sits between attacks."""
    feats, chroma, onset, labels = _music()
    book = JointCodebook(32, vocab=4, harmony_weight=weights[0], rhythm_weight=weights[1], rhythm_lags=6)
    book.fit([feats], [chroma], [onset], per_clip=len(feats), seed=0)
    tokens = book.assign(feats)
    purity = {name: _purity(tokens, label) for name, label in labels.items()}
    assert purity[follows] > 0.9, purity
    assert all(v < 0.75 for name, v in purity.items() if name != follows), purity
    assert torch.allclose(book.rhythm_view(feats).pow(2).sum(1).mean(), torch.tensor(1.0), atol=1e-3)  # unit RMS norm


def test_a_rhythm_codebooks_tokens_say_where_the_attacks_fall():
    """``onset_per_token`` along a token sequence is an onset envelope: with the rhythm read-out
    weighted in, the frames on an attack get the tokens that read the strongest onset."""
    feats, chroma, onset, _ = _music()
    book = JointCodebook(32, vocab=4, harmony_weight=0.0, rhythm_weight=3.0, rhythm_lags=6)
    book.fit([feats], [chroma], [onset], per_clip=len(feats), seed=0)
    envelope = book.onset_per_token()[book.assign(feats)]
    assert envelope.shape == onset.shape
    assert float(envelope[onset == 1].min()) > float(envelope[onset == 0].max())


def test_lagged_frames_repeat_the_edges():
    x = torch.arange(5.0)
    out = lagged(x, 2)
    assert out.shape == (5, 5) and torch.equal(out[:, 2], x)
    assert torch.equal(out[0], torch.tensor([0.0, 0.0, 0.0, 1.0, 2.0])) and torch.equal(out[4], torch.tensor([2.0, 3.0, 4.0, 4.0, 4.0]))


def test_an_unknown_codebook_is_refused():
    with pytest.raises(ValueError, match="unknown codebook"):
        SemanticModel(SemanticConfig(**{**TINY.__dict__, "codebook": "lattice"}))


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


@pytest.mark.slow
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


def test_init_with_zero_steps_refits_only_the_codebook(smoke_corpus, tmp_path):
    """The shipped encoder, its weights kept, gets a codebook of the other kind fitted afresh."""
    corpus, _ = smoke_corpus
    shipped = ROOT / "assets" / "checkpoints" / "semantic.safetensors"
    run = tmp_path / "refit"
    proc = subprocess.run([sys.executable, "-m", "engine", "train", "semantic", "--corpus", str(corpus), "--run-dir", str(run),
                           "--init", str(shipped), "--steps", "0", "--codebook", "flat", "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    before, after = load_semantic(shipped), load_semantic(run)
    assert after.cfg.codebook == "flat" and before.cfg.codebook == "joint"
    assert all(torch.equal(v, after.state_dict()[k]) for k, v in before.state_dict().items() if not k.startswith("codebook."))
    assert float(after.centroids.abs().sum()) > 0 and after.tokenize(_noise(2.0)).shape == (50,)


def test_a_codebook_for_another_model_is_refused(smoke_corpus):
    corpus, _ = smoke_corpus
    proc = subprocess.run([sys.executable, "-m", "engine", "train", "stage1", "--corpus", str(corpus), "--codebook", "joint"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "--codebook applies to semantic only" in proc.stderr + proc.stdout


def test_semantic_tokens_say_which_note_sounds_with_no_audio_decoded():
    """pitch_classes: the joint codebook's harmony read-out of each token (how eval melody follows a
    hum into S). Steady harmonic tones on the shipped model read as their own pitch class."""
    from engine.evaluate.tones import tone
    from engine.nn.semantic import load_semantic

    model = load_semantic()
    right = 0
    for midi in range(60, 72):
        read = model.pitch_classes(model.tokenize(tone(440.0 * 2 ** ((midi - 69) / 12), partials=6, seconds=3.0))).numpy()
        right += np.mean(read[5:-5] == midi % 12) > 0.5
    assert right >= 8  # of 12
