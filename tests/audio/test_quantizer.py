"""Gumbel product quantiser: code use, diversity loss, straight-through gradients, temperature."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_audio.quantizer import GumbelVectorQuantizer, annealed_temperature, perplexity


def _identity_quantizer(groups: int = 2, entries: int = 8) -> GumbelVectorQuantizer:
    """A quantiser whose logits are 10 * the input, so inputs pick the codes directly."""
    q = GumbelVectorQuantizer(in_dim=groups * entries, groups=groups, entries=entries, dim=groups * 4)
    with torch.no_grad():
        q.weight_proj.weight.copy_(10 * torch.eye(groups * entries))
        q.weight_proj.bias.zero_()
    return q


def test_diversity_loss_is_lower_when_codes_are_used_evenly():
    q = _identity_quantizer().eval()
    even = torch.zeros(64, 16)  # every entry of both groups equally often
    rows = torch.arange(64)
    even[rows, rows % 8] = 1
    even[rows, 8 + rows // 8] = 1
    collapsed = torch.zeros(64, 16)
    collapsed[:, 0] = 1
    collapsed[:, 8] = 1  # entry 0 in both groups, always
    out_even, out_coll = q(even), q(collapsed)
    assert out_even.diversity_loss < 0.05
    assert out_coll.diversity_loss > 0.8
    assert out_even.code_perplexity.item() == pytest.approx(16.0, rel=1e-4)
    assert out_coll.code_perplexity.item() == pytest.approx(2.0, rel=1e-4)  # one code per group


def test_quantizer_uses_many_codes_on_varied_input_and_outputs_codebook_vectors():
    torch.manual_seed(0)
    q = GumbelVectorQuantizer(in_dim=32, groups=2, entries=16, dim=64).train()
    z = torch.randn(256, 32)
    out = q(z, temperature=2.0, generator=torch.Generator().manual_seed(0))
    assert out.q.shape == (256, 64)
    assert out.code_perplexity > 4
    assert len(torch.unique(out.codes[:, 0])) > 1
    # the forward value is exactly the chosen codebook entries (hard choice)
    g0 = q.codebook[0][out.codes[:, 0]]
    assert torch.allclose(out.q[:, :32], g0, atol=1e-6)


def test_straight_through_gradients_reach_logits_and_codebook():
    q = GumbelVectorQuantizer(in_dim=8, groups=2, entries=4, dim=8).train()
    z = torch.randn(32, 8, requires_grad=True)
    out = q(z, temperature=1.0, generator=torch.Generator().manual_seed(0))
    out.q.pow(2).sum().backward()  # no diversity term: the logits learn only through straight-through
    assert q.weight_proj.weight.grad.abs().sum() > 0
    assert q.codebook.grad.abs().sum() > 0
    assert z.grad.abs().sum() > 0


def test_eval_mode_is_deterministic_argmax():
    q = GumbelVectorQuantizer(in_dim=8, groups=2, entries=4, dim=8).eval()
    z = torch.randn(10, 8)
    a, b = q(z), q(z)
    assert torch.equal(a.codes, b.codes)
    assert torch.equal(a.codes, q.logits(z).argmax(-1))


def test_perplexity_of_uniform_and_one_hot():
    assert perplexity(torch.full((2, 5), 0.2)).item() == pytest.approx(10.0, rel=1e-5)
    assert perplexity(torch.tensor([[1.0, 0.0, 0.0]])).item() == pytest.approx(1.0, rel=1e-5)


def test_temperature_anneals_from_start_to_end():
    temps = [annealed_temperature(p / 10, p) for p in range(11)]
    assert temps[0] == pytest.approx(2.0) and temps[-1] == pytest.approx(0.5)
    assert all(a > b for a, b in zip(temps, temps[1:]))
    # the paper's per-update decay: 2 * 0.999995^k, floored at 0.5
    assert annealed_temperature(0.0, 100_000, decay=0.999995) == pytest.approx(2 * math.exp(100_000 * math.log(0.999995)))
    assert annealed_temperature(0.0, 10**7, decay=0.999995) == 0.5


def test_bad_shapes_are_reported():
    with pytest.raises(ValueError, match="divisible"):
        GumbelVectorQuantizer(8, groups=3, entries=4, dim=8)
