import torch

from engine.nn.sampling import Sampling, draw, filter_logits, guide, sample


def test_guidance_scale_one_is_the_conditional_model():
    cond, uncond = torch.randn(3, 10), torch.randn(3, 10)
    assert torch.equal(guide(cond, uncond, 1.0), cond)
    guided = guide(cond, uncond, 3.0)
    assert torch.allclose(guided, uncond.log_softmax(-1) + 3 * (cond.log_softmax(-1) - uncond.log_softmax(-1)))
    anchor = torch.randn(3, 10)
    assert torch.allclose(guide(cond, uncond, 3.0, anchor, 3.0), guided, atol=1e-5)  # equal scales: the anchor cancels


def test_top_k_and_top_p_keep_only_the_likely_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)[0, 2:]).all()
    kept = ~torch.isinf(filter_logits(logits, top_p=0.7))
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 < 0.7, so the token crossing 0.7 stays


def test_same_seed_same_tokens_and_greedy_is_argmax():
    logits = torch.randn(4, 50)
    draw = lambda seed: sample(logits, Sampling(temperature=1.0, top_k=20), torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(1), draw(1))
    assert torch.equal(sample(logits, Sampling(temperature=0.0)), logits.argmax(-1))


def test_low_temperature_concentrates_on_the_mode():
    logits = torch.tensor([[2.0, 1.0, 0.0]]).repeat(2000, 1)
    tokens = sample(logits, Sampling(temperature=0.2), torch.Generator().manual_seed(0))
    assert float((tokens == 0).float().mean()) > 0.99


def test_draws_follow_the_distribution_and_never_pick_excluded_tokens():
    probs = torch.tensor([0.5, 0.0, 0.3, 0.2, 0.0]).repeat(20_000, 1)
    tokens = draw(probs, torch.Generator().manual_seed(0))
    counts = torch.bincount(tokens, minlength=5).float() / len(tokens)
    assert counts[1] == 0 and counts[4] == 0
    assert torch.allclose(counts, probs[0], atol=0.015)
    logits = torch.randn(500, 30)
    picked = sample(logits, Sampling(top_k=3), torch.Generator().manual_seed(1))
    assert (picked[:, None] == logits.topk(3, dim=-1).indices).any(-1).all()
