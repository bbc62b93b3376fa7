import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from engine.features import N_CHANNELS, analyze
from engine.nn.mulan import AudioPrior, MuLan, MuLanConfig, PriorConfig, load_mulan, load_prior
from engine.nn.quantization import ResidualVQ
from engine.nn.transformer import TransformerConfig
from engine.prompts import DYNAMICS_RANGES, TEMPO_RANGES, StatedTempo, stated_tempo
from engine.train.mulan import caption_variants

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
TINY = MuLanConfig(audio=TransformerConfig(dim=32, layers=1, heads=2, causal=False), rvq_levels=3, rvq_size=16, text_hidden=32)
RECORD = {
    "seed": 5, "caption": "A calm piano ballad.", "genre": "folk", "mood": "calm", "tempo": 90, "key": {"name": "D major"},
    "aspects": ["folk", "calm", "slow tempo", "90 bpm", "D major", "piano"],
    "instruments": [{"role": "lead", "program": 0, "is_drum": False}, {"role": "bass", "program": 32, "is_drum": False}],
}


def test_caption_variants_keep_the_original_and_vary_the_wording():
    variants = caption_variants(RECORD, 8)
    assert variants[0] == RECORD["caption"] and len(variants) == 8
    assert len(set(variants)) >= 5
    assert variants == caption_variants(RECORD, 8)  # deterministic
    assert variants != caption_variants(RECORD, 8, seed=1)


@pytest.mark.parametrize("seconds, windows", [(4.0, 1), (10.0, 1), (25.0, 16)])
def test_audio_embedding_is_a_unit_vector_over_10s_windows_at_1s_stride(seconds, windows):
    torch.manual_seed(0)
    model = MuLan(TINY).eval()
    audio = np.random.default_rng(0).normal(0, 0.1, int(seconds * 24_000)).astype(np.float32)
    frames = analyze(torch.from_numpy(audio))[0].numpy()
    assert frames.shape[0] == N_CHANNELS
    per_window = model.embed_frames(frames, per_window=True)
    assert per_window.shape == (windows, TINY.embed_dim)
    emb = model.embed_audio(audio)
    assert emb.shape == (TINY.embed_dim,) and abs(float(emb.norm()) - 1) < 1e-5
    assert torch.equal(emb, model.embed_audio(audio))


def test_rvq_fitted_offline_round_trips_embeddings():
    torch.manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(3000, 16) @ torch.randn(16, 16), dim=-1)
    rvq = ResidualVQ(levels=6, size=64, dim=16, dropout=0.0)
    rvq.fit(x, iters=10)
    codes = rvq.encode(x[:, :, None])
    assert codes.shape == (3000, 6, 1) and int(codes.max()) < 64
    recon = rvq.decode(codes)[:, :, 0]
    cosine = torch.nn.functional.cosine_similarity(x, recon, dim=-1).mean()
    coarse = torch.nn.functional.cosine_similarity(x, rvq.decode(codes[:, :1])[:, :, 0], dim=-1).mean()
    assert cosine > 0.95 and cosine > coarse


def test_conditioning_tokens_are_12_ids_per_embedding():
    model = MuLan(MuLanConfig()).eval()
    model.rvq.fit(torch.nn.functional.normalize(torch.randn(2048, 128), dim=-1), iters=2)
    tokens = model.tokens(torch.nn.functional.normalize(torch.randn(3, 128), dim=-1))
    assert tokens.shape == (3, 12) and tokens.dtype == torch.long and int(tokens.max()) < 1024


def _windows_bank(count: int = 50):
    """A small RVQ, ``count`` training windows' tokens under it and their decoded unit embeddings."""
    torch.manual_seed(0)
    rvq = ResidualVQ(levels=4, size=32, dim=16, dropout=0.0)
    rvq.fit(torch.nn.functional.normalize(torch.randn(2000, 16), dim=-1), iters=5)
    windows = rvq.encode(torch.nn.functional.normalize(torch.randn(count, 16), dim=-1)[:, :, None])[:, :, 0]
    return rvq, windows, torch.nn.functional.normalize(rvq.decode(windows[:, :, None])[:, :, 0], dim=-1)


def test_the_prior_moves_a_prompt_onto_the_training_windows_nearest_to_it():
    rvq, windows, bank = _windows_bank()
    nearest = AudioPrior(PriorConfig(neighbours=1), 50, 4)
    nearest.tokens.copy_(windows.to(torch.int16))
    text = torch.nn.functional.normalize(bank[[7, 31]] + 0.05 * torch.randn(2, 16), dim=-1)  # prompts near windows 7 and 31
    assert torch.allclose(nearest(text, rvq), bank[[7, 31]], atol=1e-5)
    blend = AudioPrior(PriorConfig(neighbours=3, temperature=1.0), 50, 4)
    blend.tokens.copy_(windows.to(torch.int16))
    top3 = (text @ bank.T).topk(3).indices
    mixed = blend(text, rvq)
    assert torch.allclose(mixed.norm(dim=-1), torch.ones(2))
    inside = torch.nn.functional.normalize(bank[top3].mean(1), dim=-1)  # soft weights near uniform at temperature 1
    assert (torch.nn.functional.cosine_similarity(mixed, inside) > 0.99).all()


def test_a_stated_tempo_keeps_the_prior_among_windows_played_at_that_tempo():
    rvq, windows, bank = _windows_bank()
    prior = AudioPrior(PriorConfig(neighbours=2, temperature=1e-3), 50, 4)
    prior.tokens.copy_(windows.to(torch.int16))
    prior.tempo.copy_(torch.tensor([80] * 25 + [140] * 24 + [100], dtype=torch.int16))
    text = bank[[7]]  # a prompt that sits on a window at 80 bpm
    assert torch.allclose(prior(text, rvq), bank[[7]], atol=1e-4)  # no tempo stated: the window itself
    fast = prior(text, rvq, tempo=stated_tempo("the same, 140 bpm", prior.cfg.tempo_tolerance).range)
    closest_fast = 25 + int((text @ bank[25:49].T).argmax())
    assert torch.allclose(fast, bank[[closest_fast]], atol=1e-4)  # the nearest window among those at 140 bpm
    assert torch.allclose(prior(text, rvq, tempo=stated_tempo("a slow one", 0.04).range), bank[[7]], atol=1e-4)
    only_one = prior(text, rvq, tempo=stated_tempo("at 100 bpm", 0.04).range)  # one window at 100 bpm, two neighbours asked for
    assert torch.allclose(only_one, bank[[7]], atol=1e-4)  # too few, and none at 50 or 200 bpm: the tempo is not enforced
    double = prior(text, rvq, tempo=stated_tempo("at 280 bpm", 0.04).range)  # no window at 280 bpm: those at its half, 140
    assert torch.allclose(double, bank[[closest_fast]], atol=1e-4)


def test_the_priors_alternative_readings_are_its_blend_then_the_nearest_windows_at_the_tempo():
    rvq, windows, bank = _windows_bank()
    prior = AudioPrior(PriorConfig(neighbours=2, temperature=1.0), 50, 4)
    prior.tokens.copy_(windows.to(torch.int16))
    prior.tempo.copy_(torch.tensor([80] * 25 + [140] * 22 + [100] * 3, dtype=torch.int16))
    text = bank[[7]]
    fast = stated_tempo("the same, 140 bpm", prior.cfg.tempo_tolerance).range
    readings = prior.alternatives(text, rvq, fast, 4)
    assert torch.allclose(readings[:1], prior(text, rvq, tempo=fast))  # first what the prior gives anyway
    nearest_fast = 25 + (text @ bank[25:47].T)[0].topk(3).indices
    assert torch.allclose(readings[1:], bank[nearest_fast], atol=1e-5)  # then single windows at 140 bpm, nearest first
    assert len(prior.alternatives(text, rvq, stated_tempo("at 100 bpm", 0.04).range, 6)) == 4  # only three windows play 100 bpm
    slow = stated_tempo("the same, 70 bpm", prior.cfg.tempo_tolerance).range  # no window at 70 bpm: the blend and the single windows at 140
    assert torch.allclose(prior.alternatives(text, rvq, slow, 4)[1:], bank[nearest_fast], atol=1e-5)
    at_80 = prior.alternatives(text, rvq, stated_tempo("the same, 160 bpm", prior.cfg.tempo_tolerance).range, 30)
    assert len(at_80) == 26 and torch.allclose(at_80[1:2], bank[[7]], atol=1e-5)  # the windows at half the tempo, nearest first


def test_a_stated_loudness_keeps_the_prior_among_windows_that_loud_within_the_tempo():
    rvq, windows, bank = _windows_bank()
    prior = AudioPrior(PriorConfig(neighbours=2, temperature=1e-3), 50, 4)
    prior.tokens.copy_(windows.to(torch.int16))
    prior.tempo.copy_(torch.tensor([80] * 25 + [140] * 25, dtype=torch.int16))
    prior.loudness.copy_(torch.tensor(([-30.0] * 5 + [-18.0] * 20) * 2))  # five soft windows at each tempo
    text = bank[[7]]  # a prompt that sits on a window at 80 bpm, -18 LUFS
    soft = DYNAMICS_RANGES["soft"]
    assert torch.allclose(prior(text, rvq), bank[[7]], atol=1e-4)
    closest_soft = int((text @ bank[:5].T).argmax())
    assert torch.allclose(prior(text, rvq, loudness=soft), bank[[closest_soft]], atol=1e-4)
    fast = stated_tempo("140 bpm", prior.cfg.tempo_tolerance).range
    closest_soft_fast = 25 + int((text @ bank[25:30].T).argmax())
    assert torch.allclose(prior(text, rvq, fast, soft), bank[[closest_soft_fast]], atol=1e-4)  # both conditions
    loud = prior(text, rvq, fast, DYNAMICS_RANGES["loud"])  # no window is loud: the tempo alone still holds
    assert torch.allclose(loud, prior(text, rvq, fast), atol=1e-6)
    readings = prior.alternatives(text, rvq, None, 4, soft)
    assert torch.allclose(readings[:1], prior(text, rvq, loudness=soft))
    assert set((readings[1:] @ bank.T).argmax(-1).tolist()) <= {0, 1, 2, 3, 4, 25, 26, 27, 28, 29}  # soft windows only


def test_a_prompt_that_states_no_loudness_keeps_to_the_levelled_windows():
    """The bank holds every window twice: as rendered (soft or loud) and levelled; a prompt
    without a loudness gets the levelled, one with a loudness only windows rendered that loud."""
    rvq, windows, bank = _windows_bank()
    prior = AudioPrior(PriorConfig(neighbours=2, temperature=1e-3), 50, 4)
    prior.tokens.copy_(windows.to(torch.int16))
    prior.loudness.copy_(torch.tensor([-30.0] * 10 + [-18.0] * 40))
    prior.levelled[25:] = True  # windows 25–49 are levelled (-18 LUFS); 0–9 rendered soft, 10–24 at -18
    text = bank[[7]]  # a prompt that sits on a soft, unlevelled window
    closest_levelled = 25 + int((text @ bank[25:].T).argmax())
    assert torch.allclose(prior(text, rvq), bank[[closest_levelled]], atol=1e-4)
    assert torch.allclose(prior(text, rvq, loudness=DYNAMICS_RANGES["soft"]), bank[[7]], atol=1e-4)
    assert set((prior.alternatives(text, rvq, None, 6)[1:] @ bank.T).argmax(-1).tolist()) <= set(range(25, 50))
    prior.levelled.zero_()  # a bank with no levelled window (one corpus, as rendered): every window
    assert torch.allclose(prior(text, rvq), bank[[7]], atol=1e-4)


def test_a_prior_built_before_loudness_was_known_loads_and_ignores_a_stated_loudness():
    rvq, windows, bank = _windows_bank()
    old = AudioPrior(PriorConfig(neighbours=2, temperature=1e-3), 50, 4)
    old.tokens.copy_(windows.to(torch.int16))
    state = {k: v for k, v in old.state_dict().items() if k not in ("loudness", "levelled")}
    prior = AudioPrior(PriorConfig(neighbours=2, temperature=1e-3), 50, 4)
    prior.load_state_dict(state)
    assert prior.loudness.isnan().all() and prior.levelled.all()  # built on the levelled corpus
    assert torch.allclose(prior(bank[[7]], rvq, loudness=DYNAMICS_RANGES["soft"]), prior(bank[[7]], rvq))


def test_a_window_on_a_bucket_edge_answers_one_tempo_word_only():
    """85 bpm is where "slow" ends and "medium" begins (``tempo_bucket``): retrieval must agree."""
    rvq, windows, bank = _windows_bank()
    prior = AudioPrior(PriorConfig(neighbours=2, temperature=1e-3), 50, 4)
    prior.tokens.copy_(windows.to(torch.int16))
    prior.tempo.copy_(torch.tensor([85] * 25 + [60] * 25, dtype=torch.int16))
    text = bank[[7]]  # a prompt that sits on a window at 85 bpm
    assert torch.allclose(prior(text, rvq, tempo=TEMPO_RANGES["medium"]), bank[[7]], atol=1e-4)
    closest_slow = 25 + int((text @ bank[25:].T).argmax())
    assert torch.allclose(prior(text, rvq, tempo=TEMPO_RANGES["slow"]), bank[[closest_slow]], atol=1e-4)


def test_stated_tempo_reads_a_bpm_or_a_tempo_word():
    bpm = stated_tempo("calm violin melody, 90 BPM, slow", 0.05)  # the bpm wins
    assert bpm.bpm == 90 and bpm.range == pytest.approx((85.5, 94.5))
    assert stated_tempo("tender solo piano, leisurely tempo", 0.05) == StatedTempo(None, TEMPO_RANGES["slow"])
    assert stated_tempo("Brisk chiptune", 0.05) == StatedTempo(None, TEMPO_RANGES["fast"])
    assert stated_tempo("metal with pounding drums", 0.05) is None
    assert stated_tempo("steady slowness", 0.05) is None  # whole words only


def test_the_shipped_prior_gives_m_whose_first_levels_the_stages_were_trained_on():
    prior, mulan = load_prior(), load_mulan()
    assert prior.tokens.shape[1] == 12 and prior.tokens.shape[0] > 1000 and int(prior.tokens.max()) < 1024
    windows = prior.tokens[::40].long()  # prompts that sit exactly on training windows come back with those windows' M
    text = torch.nn.functional.normalize(mulan.rvq.decode(windows[:, :, None])[:, :, 0], dim=-1)
    m = mulan.tokens(prior(text, mulan.rvq))
    assert (m[:, :2] == windows[:, :2]).float().mean() > 0.95
    assert 50 <= int(prior.tempo.min()) and int(prior.tempo.max()) <= 200  # every window knows its clip's tempo


def test_missing_checkpoint_names_the_training_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m engine train mulan"):
        load_mulan(tmp_path / "none.safetensors")


def _engine(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_train_then_eval_mulan_on_the_smoke_corpus(smoke_corpus, tmp_path):
    corpus, _ = smoke_corpus
    run = tmp_path / "mulan"
    proc = _engine("train", "mulan", "--corpus", corpus, "--run-dir", run, "--steps", 2, "--batch-size", 4, "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.splitlines()[-1])["step"] == 2
    proc = _engine("eval", "mulan", "--corpus", corpus, "--checkpoint", run, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["clips"] == 1 and 0 <= report["text_to_audio"]["recall@10"] <= 1
    assert set(report["rvq_cosine"]) == {"audio_clip", "audio_window", "text"}
    model = load_mulan(run)
    text = model.embed_text(["a calm piano ballad", "metal with distorted guitars"])
    assert text.shape == (2, 128) and model.tokens(text).shape == (2, 12)


def test_eval_mulan_without_a_checkpoint_is_one_clear_line(smoke_corpus, tmp_path):
    corpus, _ = smoke_corpus
    proc = _engine("eval", "mulan", "--corpus", corpus, "--checkpoint", tmp_path / "missing.safetensors")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "train mulan" in proc.stderr


def test_analysis_filters_first_built_in_inference_mode_still_serve_a_training_step():
    """MuLan embeds audio in inference mode; a codec fine-tune in the same process then takes
    gradients through the same cached filters."""
    from engine.features import _filters, analyze

    _filters.cache_clear()
    with torch.inference_mode():
        analyze(torch.randn(4_800))
    wav = torch.randn(1, 4_800, requires_grad=True)
    analyze(wav).sum().backward()
    assert wav.grad is not None and torch.isfinite(wav.grad).all()
