"""Details of the vision maths that the formula checks in test_losses.py leave open: absolute
values of the MAE loss, the paper defaults, argument checks at their boundaries, DINO with a
single crop pair, inputs with extra leading dimensions, and the EMA momentum schedule. Each was
a surviving mutant of benchmarks/mutation.py (see benchmarks/results/mutation.md)."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_vision.ema import cosine_momentum
from ssl_vision.losses import DINOLoss, NTXentLoss, byol_regression_loss, masked_patch_mse


def test_masked_patch_mse_is_the_mean_squared_error_over_masked_patches() -> None:
    g = torch.Generator().manual_seed(4)
    pred, target = torch.randn(2, 5, 6, generator=g), torch.randn(2, 5, 6, generator=g)
    mask = torch.tensor([[1.0, 0, 1, 0, 0], [0, 0, 0, 1, 0]])
    errs = [float(((pred[b, i] - target[b, i]) ** 2).mean()) for b in range(2) for i in range(5) if mask[b, i]]
    loss = masked_patch_mse(pred, target, mask, norm_pix=False)
    assert loss.item() == pytest.approx(sum(errs) / len(errs), rel=1e-6)
    one = torch.zeros(2, 5)
    one[1, 2] = 1  # a single masked patch: its error, not half of it
    assert masked_patch_mse(pred, target, one, norm_pix=False).item() == pytest.approx(
        float(((pred[1, 2] - target[1, 2]) ** 2).mean()), rel=1e-6)
    assert masked_patch_mse(pred, target, torch.zeros(2, 5)).item() == 0.0  # nothing masked: 0, not NaN


def test_masked_patch_mse_normalises_a_flat_patch_to_zero_not_nan() -> None:
    pred = torch.randn(1, 1, 9)
    flat = torch.full((1, 1, 9), 0.5)  # zero variance: the epsilon keeps the target finite (= 0)
    loss = masked_patch_mse(pred, flat, torch.ones(1, 1))
    assert loss.item() == pytest.approx(float((pred ** 2).mean()), rel=1e-6)


def test_defaults_are_the_papers() -> None:
    assert NTXentLoss().temperature == 0.5  # SimCLR, Appendix B.9 (batch 256-512)
    dino = DINOLoss(4)
    assert (dino.student_temp, dino.center_momentum) == (0.1, 0.9)  # DINO, Sec. 3.1 / Appendix


def test_argument_checks_hold_at_their_boundaries() -> None:
    for bad in (0.0, -0.1):
        with pytest.raises(ValueError, match="temperature"):
            NTXentLoss(bad)
        with pytest.raises(ValueError, match="student_temp"):
            DINOLoss(4, student_temp=bad)
    for bad in (1.0, -0.5):
        with pytest.raises(ValueError, match="center_momentum"):
            DINOLoss(4, center_momentum=bad)
    assert DINOLoss(4, center_momentum=0.0).center_momentum == 0.0  # 0 is allowed: no memory


def test_dino_with_one_teacher_crop_and_one_other_student_crop_is_that_one_cross_entropy() -> None:
    g = torch.Generator().manual_seed(5)
    s0, s1, t0 = (torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(3))
    crit = DINOLoss(4, student_temp=0.2).double()
    loss = crit([s0, s1], [t0], teacher_temp=0.05)  # one pair: (teacher crop 0, student crop 1)
    expected = -(torch.softmax(t0 / 0.05, -1) * torch.log_softmax(s1 / 0.2, -1)).sum(-1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)  # computed in float32


def test_byol_loss_normalises_the_feature_dimension_of_any_batch_shape() -> None:
    g = torch.Generator().manual_seed(6)
    p, z = torch.randn(2, 3, 5, generator=g), torch.randn(2, 3, 5, generator=g)
    assert byol_regression_loss(p, z).item() == pytest.approx(
        byol_regression_loss(p.reshape(6, 5), z.reshape(6, 5)).item(), rel=1e-6)


def test_ema_momentum_follows_the_byol_cosine_from_base_to_final_and_clamps() -> None:
    tau = lambda k, K, base=0.996: 1 - (1 - base) * (math.cos(math.pi * k / K) + 1) / 2  # BYOL Sec. 3.2
    for k in range(0, 11):
        assert cosine_momentum(k / 10) == pytest.approx(tau(k, 10), abs=1e-12)
        assert cosine_momentum(k / 10, base=0.9) == pytest.approx(tau(k, 10, 0.9), abs=1e-12)
    assert cosine_momentum(0.0) == pytest.approx(0.996) and cosine_momentum(1.0) == 1.0
    assert cosine_momentum(0.5, base=0.5, final=0.7) == pytest.approx(0.6)
    assert cosine_momentum(-3.0) == cosine_momentum(0.0) and cosine_momentum(7.0) == cosine_momentum(1.0)
