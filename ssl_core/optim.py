"""Optimisers and schedules used by the trainer."""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch.optim import Optimizer

from ssl_core.config import TrainConfig


class LARS(Optimizer):
    """Layer-wise Adaptive Rate Scaling (You, Gitman & Ginsburg, 2017, arXiv:1708.03888).

    SGD with momentum where each parameter tensor's update is scaled by the trust ratio
    ``eta * ||w|| / (||g|| + wd * ||w||)``. As in SimCLR/BYOL, groups with ``apply_wd=False``
    (biases, norms) skip both weight decay and the trust ratio.

    Like PyTorch's fused optimisers it honours a ``found_inf`` attribute (a 0-dim tensor, 1 when
    the step's loss or gradients are not finite): the update is then skipped on the device,
    without reading the flag on the host.
    """

    _step_supports_found_inf = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
        eps: float = 1e-8,
    ) -> None:
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, eps=eps, apply_wd=True)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        """Perform one optimisation step."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        found_inf = getattr(self, "found_inf", None)
        ok = None if found_inf is None else found_inf.to(self.param_groups[0]["params"][0].device) == 0
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad if ok is None else torch.where(ok, p.grad, 0.0)
                if group["apply_wd"]:
                    wd = group["weight_decay"]
                    w_norm = torch.linalg.vector_norm(p)
                    g_norm = torch.linalg.vector_norm(grad)
                    trust = torch.where(
                        (w_norm > 0) & (g_norm > 0),
                        group["eta"] * w_norm / (g_norm + wd * w_norm + group["eps"]),
                        torch.ones_like(w_norm),
                    )
                    grad = (grad + wd * p) * trust
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(grad).detach()
                elif ok is None:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
                else:  # a skipped step leaves the momentum as it was
                    buf = state["momentum_buffer"]
                    buf.copy_(torch.where(ok, buf * group["momentum"] + grad, buf))
                p.add_(state["momentum_buffer"] if ok is None else torch.where(ok, state["momentum_buffer"], 0.0),
                       alpha=-group["lr"])
        return loss


def fused_supported(param_groups: list[dict[str, Any]]) -> bool:
    """Whether PyTorch's fused AdamW/SGD kernels can update these parameters (plain float
    tensors, all on one device type with fused kernels: CUDA, and CPU since PyTorch 2.4)."""
    try:  # a private helper of torch.optim; without it, stay with the default kernels
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:
        return False
    params = [p for g in param_groups for p in g["params"]]
    devices = {p.device.type for p in params}
    return (len(devices) == 1 and devices <= set(_get_fused_kernels_supported_devices())
            and all(type(p.data) is torch.Tensor and p.is_floating_point() for p in params))


def skips_on_device(optimizer: Optimizer) -> bool:
    """Whether ``optimizer.step()`` honours a ``found_inf`` tensor attribute (fused AdamW/SGD,
    :class:`LARS`), so a non-finite step can be skipped without a host-device sync."""
    if getattr(optimizer, "_step_supports_found_inf", False):
        return True
    return bool(optimizer.defaults.get("fused")) and isinstance(optimizer, (torch.optim.AdamW, torch.optim.SGD))


def build_optimizer(param_groups: list[dict[str, Any]], cfg: TrainConfig, fused: bool | None = None) -> Optimizer:
    """AdamW, LARS or SGD over the objective's parameter groups.

    AdamW and SGD use PyTorch's fused kernels where they can (``fused=None``: when
    :func:`fused_supported`): one kernel launch per parameter group instead of several per
    tensor, and a non-finite step skipped on the device (:func:`skips_on_device`).
    """
    if not param_groups:
        raise ValueError("The objective has no trainable parameters.")
    for g in param_groups:
        g.setdefault("weight_decay", cfg.weight_decay if g.get("apply_wd", True) else 0.0)
        g.setdefault("apply_wd", g["weight_decay"] > 0)
        g.setdefault("lr_scale", 1.0)
    if fused is None:
        fused = fused_supported(param_groups)
    fused_kw = {"fused": True} if fused else {}
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=tuple(cfg.betas), **fused_kw)  # type: ignore[arg-type]
    if cfg.optimizer == "lars":
        return LARS(param_groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum, **fused_kw)
    raise ValueError(f"Unknown optimizer '{cfg.optimizer}'; choose adamw, lars or sgd.")


def warmup_cosine(step: int, total: int, warmup: int, start: float, end: float) -> float:
    """Linear warm-up from 0 to ``start`` over ``warmup`` steps, then cosine decay to ``end``."""
    if warmup > 0 and step < warmup:
        return start * (step + 1) / warmup
    span = max(1, total - warmup - 1)
    t = min(1.0, max(0.0, (step - warmup) / span))
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * t))


def cosine(step: int, total: int, start: float, end: float) -> float:
    """Cosine interpolation from ``start`` (step 0) to ``end`` (last step)."""
    t = min(1.0, step / max(1, total - 1))
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * t))


def apply_schedules(optimizer: Optimizer, cfg: TrainConfig, step: int, total: int) -> tuple[float, float]:
    """Set each group's LR and weight decay for ``step``; return the (lr, wd) applied."""
    warmup = int(round(cfg.warmup_fraction * total))
    lr = warmup_cosine(step, total, warmup, cfg.lr, cfg.lr * cfg.min_lr_ratio)
    wd_end = cfg.weight_decay if cfg.weight_decay_end is None else cfg.weight_decay_end
    wd = cosine(step, total, cfg.weight_decay, wd_end)
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
        if g.get("apply_wd", True):
            g["weight_decay"] = wd
    return lr, wd
