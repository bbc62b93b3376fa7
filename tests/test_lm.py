import pytest
import torch

from engine.nn.lm import LMConfig, Sampling, StageLayout, Stream, TokenLM, stage_layouts
from engine.nn.transformer import TransformerConfig

GREEDY = Sampling(temperature=0.0)


def tiny(name: str) -> TokenLM:
    layout = stage_layouts(0.1)[name]
    small = StageLayout(layout.name, Stream(layout.target.name, 32, layout.target.levels), layout.rate,
                        Stream("M", 16, 12) if layout.prefix else None,
                        tuple(Stream(s.name, 32, s.levels, s.frames_per_position, s.lookahead, s.dropout) for s in layout.aligned),
                        layout.delay, layout.crop_seconds, layout.sampling)
    torch.manual_seed(0)
    return TokenLM(LMConfig(small, TransformerConfig(dim=32, layers=2, heads=2))).eval()


def conditions(model: TokenLM, frames: int = 40):
    g = torch.Generator().manual_seed(1)
    lay = model.cfg.layout
    prefix = torch.randint(0, 16, (2, 12), generator=g) if lay.prefix else None
    aligned = {s.name: torch.randint(0, 32, (2, s.levels, int(frames * s.frames_per_position) + 1), generator=g) for s in lay.aligned}
    return prefix, aligned


@pytest.mark.parametrize("name", ["stage1", "stage2", "stage3"])
def test_cached_greedy_decoding_equals_full_recomputation(name):
    model = tiny(name)
    prefix, aligned = conditions(model)
    tokens = model.generate(20, prefix, aligned, GREEDY)
    assert tokens.shape == (2, model.cfg.layout.target.levels, 20)
    logits = model(tokens, prefix, aligned)  # teacher forcing on what was generated
    delayed = model.delayed(tokens)
    mask = delayed != model.cfg.layout.target.vocab
    assert torch.equal(logits.argmax(-1)[mask], delayed[mask])


@pytest.mark.parametrize("name", ["stage1", "stage2"])
def test_same_seed_same_tokens_different_seed_different_tokens(name):
    model = tiny(name)
    prefix, aligned = conditions(model)
    draw = lambda seed: model.generate(30, prefix, aligned, Sampling(1.0), torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))


@pytest.mark.parametrize("name", ["stage1", "stage2"])
def test_guidance_contrasts_with_the_prefix_and_the_optional_streams_dropped(name):
    """Guided greedy decoding equals teacher forcing under guide(conditional, unconditional), where
    the unconditional model has the null M and no melody (as conditioning dropout trained it) but
    keeps S, which is never dropped: a hum is guided along with the text."""
    from engine.nn.sampling import guide

    model = tiny(name)
    prefix, aligned = conditions(model)
    tokens = model.generate(20, prefix, aligned, Sampling(temperature=0.0, guidance=3.0))
    kept = {s.name: aligned[s.name] for s in model.cfg.layout.aligned if s.dropout == 0}
    assert len(kept) == len(aligned) - 1  # the melody is the dropped stream
    logits = guide(model(tokens, prefix, aligned), model(tokens, None, kept), 3.0)
    delayed = model.delayed(tokens)
    mask = delayed != model.cfg.layout.target.vocab
    assert torch.equal(logits.argmax(-1)[mask], delayed[mask])


def test_double_guidance_follows_the_anchor_and_what_the_full_condition_adds_each_at_its_own_scale():
    """A style's words (the anchor) and its words-and-clips blend (the prefix): guided greedy
    decoding equals teacher forcing under uncond + 3·(anchor − uncond) + 6·(cond − anchor); with
    the two scales equal it is plain CFG on the full condition, token for token."""
    from engine.nn.sampling import guide

    model = tiny("stage1")
    prefix, aligned = conditions(model)
    anchor = torch.randint(0, 16, prefix.shape, generator=torch.Generator().manual_seed(7))
    tokens = model.generate(20, prefix, aligned, Sampling(temperature=0.0, guidance=3.0, anchor_guidance=6.0), anchor=anchor)
    kept = {s.name: aligned[s.name] for s in model.cfg.layout.aligned if s.dropout == 0}
    logits = guide(model(tokens, prefix, aligned), model(tokens, None, kept), 3.0, model(tokens, anchor, aligned), 6.0)
    assert torch.equal(logits.argmax(-1), tokens)
    plain = model.generate(20, prefix, aligned, Sampling(temperature=0.0, guidance=3.0))
    assert torch.equal(model.generate(20, prefix, aligned, Sampling(temperature=0.0, guidance=3.0, anchor_guidance=3.0), anchor=anchor), plain)
    assert not torch.equal(tokens, plain)


def test_continuation_keeps_the_prompt_context_and_matches_teacher_forcing():
    model = tiny("stage2")
    prefix, aligned = conditions(model)
    prompt = model.generate(10, prefix, aligned, Sampling(1.0), torch.Generator().manual_seed(0))
    more = model.generate(10, prefix, aligned, GREEDY, prompt=prompt)
    assert more.shape == (2, 4, 10)
    whole = torch.cat([prompt, more], 2)
    logits, delayed = model(whole, prefix, aligned), model.delayed(whole)
    new = torch.zeros_like(delayed, dtype=torch.bool)
    for k in range(4):
        new[:, k, 10 + k:20 + k] = True
    assert torch.equal(logits.argmax(-1)[new], delayed[new])


def test_guidance_runs_with_a_negative_prompt_and_scale_one_is_unguided():
    model = tiny("stage1")
    prefix, _ = conditions(model)
    negative = torch.zeros_like(prefix)
    plain = model.generate(15, prefix, sampling=GREEDY)
    scale_one = model.generate(15, prefix, sampling=Sampling(temperature=0.0, guidance=1.0), negative=negative)
    assert torch.equal(plain, scale_one)
    guided = model.generate(15, prefix, sampling=Sampling(temperature=0.0, guidance=3.0), negative=negative)
    assert guided.shape == plain.shape


def test_delay_pattern_shifts_level_k_by_k_and_pads_the_holes():
    model = tiny("stage3")
    tokens = torch.randint(0, 32, (1, 8, 6))
    delayed = model.delayed(tokens)
    assert delayed.shape == (1, 8, 13)
    for k in range(8):
        assert torch.equal(delayed[:, k, k:k + 6], tokens[:, k])
        assert (delayed[:, k, :k] == 32).all() and (delayed[:, k, k + 6:] == 32).all()


def test_one_step_inputs_equal_the_teacher_forced_inputs():
    """The decode loop's fused gather reads the same tables at the same frames as training does,
    including aligned frames past the end of a stream (pad) and an optional stream left out."""
    for stage in ("stage1", "stage2", "stage3"):
        model = tiny(stage)
        _, aligned = conditions(model)
        previous = torch.randint(0, 32, (2, model.cfg.layout.target.levels, 1))
        embed = model.step_embedder(2)
        for given in (aligned, {k: v for k, v in aligned.items() if k != "melody"}):
            for position in (0, 7, 200):
                expected = model.embed_positions(previous, given, position)
                assert torch.allclose(embed(previous[:, :, 0], given, position), expected, atol=1e-6), (stage, position)


def test_training_loss_drops_prefix_for_guidance_and_is_finite():
    model = tiny("stage2").train()
    prefix, aligned = conditions(model)
    target = torch.randint(0, 32, (2, 4, 40))
    loss, metrics = model.loss(target, prefix, aligned)
    loss.backward()
    assert torch.isfinite(loss) and model.null_prefix.grad is not None or model.prefix_embed.weight.grad is not None
    assert "level1" in metrics


def test_the_optional_melody_stream_conditions_stage1_and_drops_out_in_training():
    model = tiny("stage1")
    melody = next(st for st in model.cfg.layout.aligned if st.name == "melody")
    assert melody.dropout > 0 and melody.lookahead == 1
    prefix, aligned = conditions(model)
    target = torch.randint(0, 32, (2, 1, 40))
    with_hum, without = model(target, prefix, aligned), model(target, prefix, {})
    assert not torch.allclose(with_hum, without)  # the hum reaches the logits …
    padded = {"melody": torch.full_like(aligned["melody"], melody.vocab)}
    assert torch.allclose(without, model(target, prefix, padded))  # … and "no hum" is the pad id everywhere
    frames = torch.randint(0, 32, (4000, 1, 5))
    dropped = (model.without(melody, frames) == melody.vocab).all(-1).all(-1).float().mean()
    assert abs(float(dropped) - melody.dropout) < 0.05


def test_fine_tuning_starts_from_a_text_only_stage1_and_adds_the_melody_table(tmp_path):
    """``train stage1 --init``: every weight of a stage 1 trained before melody conditioning
    existed is copied; only the new melody table starts fresh."""
    from dataclasses import replace

    from safetensors.torch import save_file

    from engine.train.stages import start_from

    hums = tiny("stage1")
    text_only = TokenLM(replace(hums.cfg, layout=replace(hums.cfg.layout, aligned=())))
    (tmp_path / "run").mkdir()
    save_file({k: v.contiguous() for k, v in text_only.state_dict().items()}, str(tmp_path / "run" / "model.safetensors"))
    start_from(hums, tmp_path / "run")
    theirs = text_only.state_dict()
    for name, value in hums.state_dict().items():
        if name.startswith("aligned_embed.melody"):
            assert name not in theirs
        else:
            assert torch.equal(value, theirs[name]), name
