"""Each loss against a direct, loop-based implementation of the paper's formula."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_vision.losses import DINOLoss, NTXentLoss, byol_regression_loss, masked_patch_mse


def _loop_nt_xent(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    """SimCLR Eq. 1, one anchor at a time: l(i, j) = -log exp(s_ij/T) / sum_{k != i} exp(s_ik/T),
    L = 1/2N sum_k [l(2k-1, 2k) + l(2k, 2k-1)]."""
    z = [*z1, *z2]
    n = len(z1)

    def sim(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(a @ b) / (float(a.norm()) * float(b.norm()))

    def l(i: int, j: int) -> float:
        num = math.exp(sim(z[i], z[j]) / t)
        den = sum(math.exp(sim(z[i], z[k]) / t) for k in range(2 * n) if k != i)
        return -math.log(num / den)

    return sum(l(k, k + n) + l(k + n, k) for k in range(n)) / (2 * n)


@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
def test_nt_xent_matches_loop_formula(t: float) -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(7, 5, generator=g, dtype=torch.float64), torch.randn(7, 5, generator=g, dtype=torch.float64)
    assert NTXentLoss(t)(z1, z2).item() == pytest.approx(_loop_nt_xent(z1, z2, t), rel=1e-5)


def test_nt_xent_rewards_aligned_views() -> None:
    z1 = torch.randn(16, 8)
    assert NTXentLoss(0.2)(z1, z1 + 0.01 * torch.randn(16, 8)) < NTXentLoss(0.2)(z1, torch.randn(16, 8))
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(0.0)


def test_byol_loss_is_normalised_mse_and_stops_target_gradient() -> None:
    g = torch.Generator().manual_seed(1)
    p = torch.randn(6, 4, generator=g, requires_grad=True)
    z = torch.randn(6, 4, generator=g, requires_grad=True)
    pd, zd = p.detach(), z.detach()
    loop = sum(float(((pd[i] / pd[i].norm() - zd[i] / zd[i].norm()) ** 2).sum()) for i in range(6)) / 6
    loss = byol_regression_loss(p, z)
    assert loss.item() == pytest.approx(loop, rel=1e-5)
    loss.backward()
    assert p.grad is not None and z.grad is None
    assert byol_regression_loss(z.detach() * 3, z.detach()).item() == pytest.approx(0.0, abs=1e-6)


def _loop_dino(student: list[torch.Tensor], teacher: list[torch.Tensor], center: torch.Tensor,
               ts: float, tt: float) -> float:
    """DINO Algorithm 1: H(t, s) = -sum softmax((t - C)/tt) * log softmax(s/ts), over pairs of
    different crops, teacher on global crops only, averaged over pairs and samples."""
    total, terms = 0.0, 0
    for iq, t in enumerate(teacher):
        for v, s in enumerate(student):
            if v == iq:
                continue
            for b in range(t.shape[0]):
                pt = [math.exp((t[b, k] - center[0, k]) / tt) for k in range(t.shape[1])]
                zt = sum(pt)
                ls = [float(s[b, k]) / ts for k in range(s.shape[1])]
                lse = math.log(sum(math.exp(x) for x in ls))
                total += -sum(pt[k] / zt * (ls[k] - lse) for k in range(t.shape[1])) / t.shape[0]
            terms += 1
    return total / terms


def test_dino_loss_matches_loop_and_updates_center() -> None:
    g = torch.Generator().manual_seed(2)
    k, b = 6, 4
    student = [torch.randn(b, k, generator=g, dtype=torch.float64) for _ in range(5)]  # 2 global + 3 local
    teacher = [torch.randn(b, k, generator=g, dtype=torch.float64) for _ in range(2)]
    crit = DINOLoss(k, student_temp=0.1, center_momentum=0.9).double()
    crit.center.copy_(torch.randn(1, k, generator=g, dtype=torch.float64))
    c0 = crit.center.clone()
    loss = crit(student, teacher, teacher_temp=0.04)
    assert loss.item() == pytest.approx(_loop_dino(student, teacher, c0, 0.1, 0.04), rel=1e-6)
    expected_center = 0.9 * c0 + 0.1 * torch.cat(teacher).mean(0, keepdim=True)
    assert torch.allclose(crit.center, expected_center)


def test_masked_patch_mse_counts_only_masked_patches() -> None:
    g = torch.Generator().manual_seed(3)
    pred, target = torch.randn(2, 8, 12, generator=g), torch.randn(2, 8, 12, generator=g)
    mask = torch.zeros(2, 8)
    mask[:, :6] = 1
    base = masked_patch_mse(pred, target, mask)
    changed = pred.clone()
    changed[:, 6:] += 5.0  # visible patches: no effect on the loss
    assert masked_patch_mse(changed, target, mask).item() == pytest.approx(base.item())
    changed[:, :6] += 1.0
    assert masked_patch_mse(changed, target, mask).item() != pytest.approx(base.item())
    # the normalised-pixel target: per-patch zero mean, unit variance
    t = target[0, 0]
    norm = (t - t.mean()) / (t.var() + 1e-6).sqrt()
    one = torch.zeros(1, 1)
    one[0, 0] = 1
    assert masked_patch_mse(norm.view(1, 1, -1), t.view(1, 1, -1), one).item() == pytest.approx(0.0, abs=1e-10)
    assert masked_patch_mse(t.view(1, 1, -1), t.view(1, 1, -1), one, norm_pix=False).item() == 0.0
