"""A Trainer callback that times each logged step (benchmarks run with ``log_every=1``)."""

from __future__ import annotations

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
