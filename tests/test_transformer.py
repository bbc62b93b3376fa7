import torch

from engine.nn.transformer import Transformer, TransformerConfig


def test_kv_cache_decoding_equals_full_recomputation():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(dim=32, layers=2, heads=4, causal=True)).eval()
    x = torch.randn(2, 11, 32)
    full = model(x)
    cache = model.new_cache()
    steps = [model(x[:, :4], cache=cache)]  # a prompt, then one position at a time
    steps += [model(x[:, t:t + 1], cache=cache) for t in range(4, 11)]
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)
    assert cache.length == 11


def test_causal_outputs_ignore_the_future_and_encoders_do_not():
    torch.manual_seed(0)
    x = torch.randn(1, 8, 32)
    y = x.clone()
    y[:, 5:] = torch.randn(1, 3, 32)
    causal = Transformer(TransformerConfig(dim=32, layers=2, heads=4, causal=True)).eval()
    assert torch.allclose(causal(x)[:, :5], causal(y)[:, :5], atol=1e-6)
    encoder = Transformer(TransformerConfig(dim=32, layers=2, heads=4, causal=False)).eval()
    assert not torch.allclose(encoder(x)[:, :5], encoder(y)[:, :5], atol=1e-4)


def test_cache_crop_forgets_later_positions():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(dim=16, layers=1, heads=2)).eval()
    x = torch.randn(1, 6, 16)
    cache = model.new_cache()
    model(x[:, :4], cache=cache)
    cache.crop(2)
    assert cache.length == 2
    assert torch.allclose(model(x[:, 2:4], cache=cache), model(x[:, :4])[:, 2:4], atol=1e-5)


def test_cache_and_rotary_tables_grow_past_their_first_allocation():
    """Decoding far beyond the preallocated cache (64) and rotary table (256) stays exact."""
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(dim=16, layers=2, heads=2)).eval()
    x = torch.randn(1, 300, 16)
    cache = model.new_cache()
    steps = [model(x[:, :40], cache=cache)] + [model(x[:, t:t + 1], cache=cache) for t in range(40, 300)]
    assert torch.allclose(torch.cat(steps, 1), model(x), atol=1e-4)
