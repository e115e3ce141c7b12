"""Training settings that must change what a step does: gradient clipping, ``max_bad_steps`` and
precision (``fp32``/``bf16`` resolution, a bf16 step on CPU, the fp16 + GradScaler path).

One deterministic objective (a dropout-free MLP regressing a fixed target) so a step's update
can be read off the parameters: with plain SGD (no momentum, no weight decay, no warm-up) the
update is exactly ``-lr * g`` for the gradient ``g`` the optimiser was given.
"""

from __future__ import annotations

import math

import pytest
import torch

from ssl_core.config import TrainConfig
from ssl_core.errors import ConfigError, NonFiniteLossError
from ssl_core.interfaces import Objective, StepInfo
from ssl_core.trainer import Trainer, resolve_precision


class Regression(Objective):
    """``mean (encoder(x) - 3 x[:, :16])^2``; NaN at the steps in ``bad_steps``; records the dtype
    of the encoder's output (a matmul) inside every step."""

    def __init__(self, bad_steps: tuple[int, ...] = ()) -> None:
        super().__init__()
        from sslkit_testplugins.toy import MLPEncoder

        self.encoder = MLPEncoder(dropout=0.0)
        self.bad_steps = set(bad_steps)
        self.matmul_dtypes: list[torch.dtype] = []

    def training_step(self, batch, step: StepInfo):  # type: ignore[no-untyped-def]
        x = batch["x"].float()
        out = self.encoder(x)
        self.matmul_dtypes.append(out.dtype)
        loss = (out.float() - 3 * x.repeat(1, 2)).pow(2).mean()
        if step.step in self.bad_steps:
            loss = loss * float("nan")
        return {"loss": loss}


def _data():  # type: ignore[no-untyped-def]
    from sslkit_testplugins.toy import gaussian_mixture

    return gaussian_mixture(n=256)


def _cfg(**kw) -> TrainConfig:  # type: ignore[no-untyped-def]
    base = dict(steps=1, batch_size=64, lr=0.05, optimizer="sgd", momentum=0.0, weight_decay=0.0,
                warmup_fraction=0.0, log_every=1, checkpoint_every=0, health_every=0, progress=False,
                device="cpu", precision="fp32")
    base.update(kw)
    return TrainConfig(**base)


def _applied_gradient(**kw) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    """The gradient the optimiser applied in one SGD step: ``(before - after) / lr``."""
    torch.manual_seed(0)
    obj = Regression()
    before = [p.detach().clone() for p in obj.parameters()]
    result = Trainer(obj, _data(), _cfg(**kw)).fit()
    lr = result.history[0]["lr"]
    assert lr == pytest.approx(0.05)
    return [(b - p.detach()) / lr for b, p in zip(before, obj.parameters())]


def _norm(grads: list[torch.Tensor]) -> float:
    return math.sqrt(sum(float(g.pow(2).sum()) for g in grads))


def test_clip_grad_clips_the_global_norm_and_changes_the_step() -> None:
    raw = _applied_gradient()
    raw_norm = _norm(raw)
    clip = 0.2 * raw_norm  # the raw gradient is 5x over the limit, so clipping has work to do
    clipped = _applied_gradient(clip_grad=clip)
    assert _norm(clipped) <= clip * (1 + 1e-4)
    assert _norm(clipped) == pytest.approx(clip, rel=1e-3)
    # the whole gradient is scaled by one factor (global norm), not clipped per tensor or per value
    for g, r in zip(clipped, raw):
        torch.testing.assert_close(g, r * clip / raw_norm, rtol=1e-3, atol=1e-6)
    # a limit above the norm leaves the step alone
    loose = _applied_gradient(clip_grad=2 * raw_norm)
    for g, r in zip(loose, raw):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-7)


def _fit_with_bad_steps(bad: tuple[int, ...], max_bad_steps: int, steps: int = 8) -> Trainer:
    torch.manual_seed(0)
    trainer = Trainer(Regression(bad_steps=bad), _data(), _cfg(steps=steps, max_bad_steps=max_bad_steps))
    trainer.fit()
    return trainer


def test_max_bad_steps_tolerates_that_many_non_finite_steps_in_a_row() -> None:
    """``max_bad_steps`` = consecutive non-finite steps tolerated: the run stops at the first step
    that makes the streak longer than that, and a finite step starts the count again."""
    done = _fit_with_bad_steps((3, 4), max_bad_steps=2)
    assert done.step == 8 and done.skipped_steps == 2
    with pytest.raises(NonFiniteLossError):
        _fit_with_bad_steps((3, 4, 5), max_bad_steps=2)
    torch.manual_seed(0)
    stopped = Trainer(Regression(bad_steps=(3, 4, 5)), _data(), _cfg(steps=8, max_bad_steps=2))
    with pytest.raises(NonFiniteLossError):
        stopped.fit()
    assert stopped.step == 5 and stopped.skipped_steps == 3  # stopped on the third bad step, index 5
    interrupted = _fit_with_bad_steps((1, 2, 4, 5), max_bad_steps=2)  # two streaks of 2, a good step between
    assert interrupted.step == 8 and interrupted.skipped_steps == 4
    with pytest.raises(NonFiniteLossError):
        _fit_with_bad_steps((2,), max_bad_steps=0)


# --------------------------------------------------------------------------- precision
def test_explicit_precisions_resolve_and_fp16_needs_cuda() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    with pytest.raises(ConfigError, match="fp16.*CUDA"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ConfigError, match="fp16"):
        Trainer(Regression(), _data(), _cfg(precision="fp16"))
    with pytest.raises(ConfigError, match="auto, fp32, bf16 or fp16"):
        resolve_precision("fp8", cpu)


def test_auto_precision_resolves_to_a_supported_choice_on_cpu() -> None:
    """Today ``auto`` is full fp32 on a CPU. (A CPU with native bf16 may later get bf16 where it
    is faster; then this test names that rule instead.)"""
    assert resolve_precision("auto", torch.device("cpu")) is None


def test_bf16_step_on_cpu_runs_under_autocast_and_trains() -> None:
    torch.manual_seed(0)
    obj = Regression()
    before = [p.detach().clone() for p in obj.parameters()]
    result = Trainer(obj, _data(), _cfg(steps=3, precision="bf16")).fit()
    assert obj.matmul_dtypes == [torch.bfloat16] * 3  # the step's matmuls ran in bf16
    assert all(math.isfinite(r["loss"]) for r in result.history) and result.skipped_steps == 0
    assert all(p.dtype == torch.float32 for p in obj.parameters())  # master weights stay fp32
    assert all(not torch.equal(b, p) for b, p in zip(before, obj.parameters()))
    # the same run in fp32 never sees bf16, and lands close to (not exactly on) the bf16 weights
    torch.manual_seed(0)
    ref = Regression()
    Trainer(ref, _data(), _cfg(steps=3, precision="fp32")).fit()
    assert ref.matmul_dtypes == [torch.float32] * 3
    for p, q in zip(obj.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=0.05, atol=0.02)


def test_fp16_grad_scaler_path_gives_the_unscaled_clipped_step() -> None:
    """The fp16 path without a GPU: the trainer's own scaled backward, unscale-before-clip and
    scaler step, run with a CPU GradScaler and CPU fp16 autocast in place of the CUDA ones.
    The applied gradient must be the true (unscaled) one, clipped by its true norm."""
    raw = _applied_gradient()
    clip = 0.2 * _norm(raw)
    torch.manual_seed(0)
    obj = Regression()
    before = [p.detach().clone() for p in obj.parameters()]
    trainer = Trainer(obj, _data(), _cfg(clip_grad=clip))
    trainer.amp_dtype = torch.float16
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    result = trainer.fit()
    assert obj.matmul_dtypes == [torch.float16]
    assert trainer.scaler.get_scale() == 2.0**12  # finite gradients: the scale was kept
    applied = [(b - p.detach()) / result.history[0]["lr"] for b, p in zip(before, obj.parameters())]
    assert _norm(applied) == pytest.approx(clip, rel=1e-3)
    for g, r in zip(applied, raw):
        torch.testing.assert_close(g, r * clip / _norm(raw), rtol=0.02, atol=2e-3 * clip)
