"""A Trainer callback that times each logged step (benchmarks run with ``log_every=1``), and the
benchmarks' way to build a recipe's Trainer with one attached."""

from __future__ import annotations

import json
import time
from typing import Any

import torch


class StepTimer:
    """Appends the wall time since the previous call to :attr:`times`; syncs CUDA first."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: list[float] = []
        self._last = time.perf_counter()

    def __call__(self, record: dict[str, Any]) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.times.append(now - self._last)
        self._last = now

    def samples_per_s(self, batch_size: int, skip: int) -> float:
        """Throughput over the steps after the first ``skip`` (compilation, allocator warm-up)."""
        steady = self.times[skip:] or self.times
        return batch_size * len(steady) / sum(steady)


def timed_trainer(objective: str, overrides: dict[str, Any], train: dict[str, Any]) -> tuple[Any, Any, StepTimer]:
    """``objective``'s recipe with ``overrides`` (their ``train`` fields over the benchmark's base
    ``train``), built as ``ssl run`` builds it with seed 0, and a :class:`StepTimer` on its
    Trainer. Returns ``(config, trainer, timer)``; run with ``train["log_every"] = 1``."""
    from ssl_core.runner import build_data, build_encoder, build_objective, resolve_config
    from ssl_core.trainer import Trainer

    over = json.loads(json.dumps(overrides))  # a copy: the caller's overrides stay as they were
    over["train"] = {**train, **over.get("train", {})}
    cfg = resolve_config(objective, overrides=over)
    data = build_data(cfg)
    torch.manual_seed(0)
    trainer = Trainer(build_objective(cfg, build_encoder(cfg, data), data), data, cfg.train)
    timer = StepTimer(trainer.device)
    trainer.callbacks.append(timer)
    return cfg, trainer, timer
