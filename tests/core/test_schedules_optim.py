"""LR / weight-decay schedules, parameter groups and LARS."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ssl_core.config import TrainConfig
from ssl_core.optim import LARS, apply_schedules, build_optimizer, cosine, warmup_cosine


def test_warmup_then_cosine() -> None:
    total, warm, peak, end = 100, 10, 1.0, 0.1
    values = [warmup_cosine(s, total, warm, peak, end) for s in range(total)]
    assert values[0] == pytest.approx(0.1)  # (0+1)/10 of the peak
    assert values[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(values[:10], values[1:10]))  # rising during warm-up
    assert all(a >= b for a, b in zip(values[10:], values[11:]))  # then never rising
    assert values[-1] == pytest.approx(end)
    mid = warm + (total - warm - 1) / 2
    assert warmup_cosine(int(mid), total, warm, peak, end) == pytest.approx((peak + end) / 2, abs=0.02)


def test_cosine_endpoints() -> None:
    assert cosine(0, 50, 0.04, 0.4) == pytest.approx(0.04)
    assert cosine(49, 50, 0.04, 0.4) == pytest.approx(0.4)


def test_norm_and_bias_params_get_no_weight_decay() -> None:
    from sslkit_testplugins.toy import AlignUniform, MLPEncoder, NoiseViews

    obj = AlignUniform(MLPEncoder(), NoiseViews())
    obj.register_module("bn", nn.BatchNorm1d(4))
    groups = obj.param_groups(0.05)
    decay = {id(p) for g in groups if g["apply_wd"] for p in g["params"]}
    for name, p in obj.named_parameters():
        assert (id(p) in decay) == (p.ndim > 1), name


def test_frozen_params_are_left_out_of_the_optimiser() -> None:
    from sslkit_testplugins.toy import AlignUniform, MLPEncoder, NoiseViews

    obj = AlignUniform(MLPEncoder(), NoiseViews())
    obj.register_module("teacher", nn.Linear(3, 3).requires_grad_(False))
    in_groups = {id(p) for g in obj.param_groups(0.1) for p in g["params"]}
    assert not any(id(p) in in_groups for p in obj.teacher.parameters())


def test_apply_schedules_sets_lr_and_wd_per_group() -> None:
    cfg = TrainConfig(lr=0.2, weight_decay=0.04, weight_decay_end=0.4, warmup_fraction=0.1)
    w, b = nn.Parameter(torch.ones(2, 2)), nn.Parameter(torch.ones(2))
    opt = build_optimizer([{"params": [w], "apply_wd": True}, {"params": [b], "apply_wd": False, "weight_decay": 0.0,
                           "lr_scale": 0.5}], cfg)
    lr, wd = apply_schedules(opt, cfg, 99, 100)
    assert wd == pytest.approx(0.4) and lr == pytest.approx(0.0, abs=1e-9)
    lr, wd = apply_schedules(opt, cfg, 9, 100)
    assert lr == pytest.approx(0.2)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2) and opt.param_groups[1]["lr"] == pytest.approx(0.1)
    assert opt.param_groups[1]["weight_decay"] == 0.0


def test_lars_trust_ratio_matches_formula() -> None:
    torch.manual_seed(0)
    w0 = torch.randn(4, 3)
    g = torch.randn(4, 3)
    p = nn.Parameter(w0.clone())
    p.grad = g.clone()
    lr, wd, eta = 0.5, 0.01, 0.001
    LARS([{"params": [p], "apply_wd": True, "weight_decay": wd}], lr=lr, eta=eta, momentum=0.9).step()
    trust = eta * w0.norm() / (g.norm() + wd * w0.norm())
    expected = w0 - lr * trust * (g + wd * w0)
    torch.testing.assert_close(p.data, expected, rtol=1e-5, atol=1e-6)
    # biases / norms (apply_wd=False): plain momentum SGD, no trust ratio
    q = nn.Parameter(w0.clone())
    q.grad = g.clone()
    LARS([{"params": [q], "apply_wd": False, "weight_decay": 0.0}], lr=lr, eta=eta).step()
    torch.testing.assert_close(q.data, w0 - lr * g)
