"""Exponential-moving-average teachers, shared by BYOL (Grill et al., 2020) and DINO (Caron et
al., 2021).

A teacher is a deep copy of a student module whose parameters never require gradients (so the
default ``Objective.param_groups`` leaves it out of the optimiser) and which is updated after
each optimiser step as ``xi <- tau * xi + (1 - tau) * theta``.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def cosine_momentum(progress: float, base: float = 0.996, final: float = 1.0) -> float:
    """EMA momentum at ``progress`` in [0, 1]: ``final - (final - base) * (cos(pi * progress) + 1) / 2``.

    BYOL, Sec. 3.2 (``tau = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2``) and DINO, Sec. 3.1: it
    starts at ``base`` and rises to ``final`` at the last step.
    """
    progress = min(1.0, max(0.0, progress))
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


def make_teacher(student: nn.Module) -> nn.Module:
    """A frozen deep copy of ``student``: same weights, ``requires_grad=False`` everywhere."""
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """Move ``teacher`` towards ``student``: parameters and float buffers (e.g. batch-norm
    running statistics) by EMA with ``momentum``; integer buffers are copied."""
    t_params = dict(teacher.named_parameters())
    s_params = dict(student.named_parameters())
    if t_params.keys() != s_params.keys():
        raise RuntimeError(
            "EMA teacher and student have different parameters; build the teacher with make_teacher(student)."
        )
    # one multi-tensor kernel per group of tensors instead of one launch per tensor
    names = list(s_params)
    _lerp_all([t_params[n] for n in names], [s_params[n].detach() for n in names], 1.0 - momentum)
    t_bufs = dict(teacher.named_buffers())
    floats: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
    for name, s_buf in student.named_buffers():
        t_buf = t_bufs[name]
        if t_buf.dtype.is_floating_point:
            floats[0].append(t_buf)
            floats[1].append(s_buf)
        else:
            t_buf.copy_(s_buf)
    _lerp_all(floats[0], floats[1], 1.0 - momentum)


def _lerp_all(targets: list[torch.Tensor], sources: list[torch.Tensor], weight: float) -> None:
    """``t.lerp_(s, weight)`` for every pair, with ``torch._foreach_lerp_`` where the tensors
    allow it (plain tensors of one device and dtype per call; DTensors and mixed lists fall back)."""
    if not targets:
        return
    plain = all(type(t) is torch.Tensor and type(s) is torch.Tensor for t, s in zip(targets, sources))
    if plain and len({(t.device, t.dtype) for t in targets + sources}) == 1:
        torch._foreach_lerp_(targets, sources, weight)
        return
    for t, s in zip(targets, sources):
        t.lerp_(s, weight)
