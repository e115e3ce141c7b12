"""Distributed data parallel: a full copy of the objective per rank; DDP all-reduces gradients."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from ssl_core.config import TrainConfig
from ssl_core.interfaces import Objective
from ssl_core.strategies.base import MultiProcess, StepModule


class DDPStrategy(MultiProcess):
    """``torch.nn.parallel.DistributedDataParallel`` around the objective's training step.

    Gradients are averaged once per optimiser step: micro-batches before the last one of a
    gradient-accumulation step run under ``no_sync``.
    """

    name = "ddp"

    def __init__(self, device: torch.device, config: TrainConfig) -> None:
        super().__init__(device, config.sync_batchnorm)
        self.find_unused_parameters = config.find_unused_parameters
        self.ddp: torch.nn.parallel.DistributedDataParallel | None = None

    def setup(self, objective: Objective) -> None:
        self._prepare(objective)
        self.ddp = torch.nn.parallel.DistributedDataParallel(
            StepModule(objective),
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=self.find_unused_parameters,
        )
        self.step_fn = self.ddp

    def gradient_sync(self, sync: bool) -> contextlib.AbstractContextManager[Any]:
        if sync or self.ddp is None:
            return contextlib.nullcontext()
        return self.ddp.no_sync()
