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


def test_defaults_and_initialisation_are_the_papers():
    """wav2vec 2.0 Sec. 4.2 (G = 2 codebooks of V = 320 entries, 256-d codevectors) and fairseq's
    init (logit projection N(0, 1), zero bias); the Gumbel temperature starts at 2 (Sec. 4.2)."""
    q = GumbelVectorQuantizer(in_dim=256)
    assert (q.groups, q.entries, q.dim) == (2, 320, 256)
    assert q.codebook.shape == (2, 320, 128)
    w = q.weight_proj.weight.detach()
    assert abs(float(w.mean())) < 0.02 and float(w.std()) == pytest.approx(1.0, abs=0.02)
    assert torch.equal(q.weight_proj.bias.detach(), torch.zeros(640))

    small = GumbelVectorQuantizer(in_dim=4, groups=2, entries=4, dim=4).train()
    z, u = torch.randn(8, 4), torch.rand(8, 2, 4, generator=torch.Generator().manual_seed(0))

    def logit_grad(**kw: float) -> torch.Tensor:
        out = small(z, uniform=u, **kw)
        (g,) = torch.autograd.grad((out.q * torch.arange(32.0).view(8, 4)).sum(), [small.weight_proj.weight])
        return g

    torch.testing.assert_close(logit_grad(), logit_grad(temperature=2.0), rtol=0, atol=0)
    assert not torch.allclose(logit_grad(temperature=1.0), logit_grad(temperature=2.0))
    assert not torch.allclose(logit_grad(temperature=3.0), logit_grad(temperature=2.0))


def test_argument_checks_hold_at_their_boundaries():
    GumbelVectorQuantizer(4, groups=1, entries=2, dim=4)  # the smallest quantiser is allowed
    for groups, entries in [(0, 2), (1, 1), (0, 1), (-1, 4)]:
        with pytest.raises(ValueError, match="at least 1 group and 2 entries"):
            GumbelVectorQuantizer(4, groups=groups, entries=entries, dim=4)


def test_gumbel_noise_stays_finite_at_uniform_zero_and_one():
    """``u`` is clamped to [1e-9, largest float32 below 1] before ``-log(-log u)``, so noise
    drawn at (or given as) exactly 0 or 1 never makes the soft probabilities or their gradient NaN;
    the gradient matches the formula with that clamp."""
    torch.manual_seed(0)
    q = GumbelVectorQuantizer(in_dim=4, groups=2, entries=4, dim=4).train()
    z = torch.randn(6, 4)
    u = torch.rand(6, 2, 4, generator=torch.Generator().manual_seed(1))
    u[0] = 0.0  # every entry of frame 0 at 0: equal noise
    u[1] = 1.0  # every entry of frame 1 at 1
    u[2, 0, 1], u[3, 1, 2] = 1.0, 0.0  # one entry at an end, the others random
    tau = 10.0  # smooth soft probabilities, so the noise's value shows in the gradient
    out = q(z, temperature=tau, uniform=u)
    upstream = torch.randn(6, 4, generator=torch.Generator().manual_seed(2))
    (grad,) = torch.autograd.grad((out.q * upstream).sum(), [q.weight_proj.weight])
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0

    w, b = q.weight_proj.weight, q.weight_proj.bias
    largest_below_one = torch.nextafter(torch.tensor(1.0), torch.tensor(0.0))
    noise = -torch.log(-torch.log(u.clamp(1e-9, float(largest_below_one))))
    assert torch.isfinite(noise).all()
    soft = torch.softmax(((z @ w.T + b).view(6, 2, 4) + noise) / tau, dim=-1)
    soft_q = torch.einsum("ngv,gvd->ngd", soft, q.codebook.detach()).reshape(6, -1)
    (ref,) = torch.autograd.grad((soft_q * upstream).sum(), [w])
    torch.testing.assert_close(grad, ref, rtol=1e-5, atol=1e-7)


def test_one_frame_and_no_frames():
    """The batch average divides by the frame count: one frame is its own softmax; a process with
    no frames (under DDP, a rank whose batch masked nothing) adds zeros instead of NaN."""
    q = _identity_quantizer(groups=2, entries=4).train()
    z = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0]])
    out = q(z, generator=torch.Generator().manual_seed(0))
    probs = torch.softmax(10 * z.view(2, 4), dim=-1)  # the identity quantiser's logits
    ppl = sum(torch.exp(-(p * p.log()).sum()) for p in probs)
    assert float(out.diversity_loss.detach()) == pytest.approx(float((8 - ppl) / 8), rel=1e-5)

    for mode in (q.train(), q.eval()):
        none = mode(torch.zeros(0, 8), generator=torch.Generator().manual_seed(0))
        assert none.q.shape == (0, 8) and none.codes.shape == (0, 2)
        # an empty average is all zeros: entropy 0, perplexity 1 per group
        assert float(none.diversity_loss.detach()) == pytest.approx((8 - 2) / 8)


def test_temperature_progress_is_clamped_to_the_run():
    assert annealed_temperature(1.5, 0) == pytest.approx(0.5)  # past the end: the end temperature
    assert annealed_temperature(-0.5, 0) == pytest.approx(2.0)  # before the start: the start
    assert annealed_temperature(0.5, 0) == pytest.approx(2.0 * (0.5 / 2.0) ** 0.5)


def test_weighted_usage_statistics_equal_those_of_the_selected_rows() -> None:
    """Passing every frame with a 0/1 weight (the fixed-shape path) gives the diversity penalty and
    perplexities of the weighted rows alone, and the same gradient into the logits."""
    torch.manual_seed(0)
    q = GumbelVectorQuantizer(in_dim=8, groups=2, entries=6, dim=8).train()
    z = torch.randn(20, 8)
    keep = torch.rand(20, generator=torch.Generator().manual_seed(1)) < 0.4
    u = torch.rand(20, 2, 6, generator=torch.Generator().manual_seed(2))
    full = q(z, 1.5, uniform=u, weight=keep)
    full.diversity_loss.backward()
    g_full = q.weight_proj.weight.grad.clone()
    q.zero_grad()
    part = q(z[keep], 1.5, uniform=u[keep])
    part.diversity_loss.backward()
    for k in ("diversity_loss", "prob_perplexity", "code_perplexity"):
        torch.testing.assert_close(getattr(full, k), getattr(part, k), msg=k)
    torch.testing.assert_close(g_full, q.weight_proj.weight.grad)
    assert torch.equal(full.codes[keep], part.codes)
    unweighted = q(z, 1.5, uniform=u)
    assert not torch.allclose(unweighted.diversity_loss, full.diversity_loss)  # the weight matters
