"""Fully sharded data parallel (FSDP2): parameters, gradients and optimiser state sharded over
ranks. The layout and the state-dict helpers live in :mod:`ssl_core.sharding`."""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from ssl_core import sharding
from ssl_core.config import TrainConfig
from ssl_core.interfaces import Objective
from ssl_core.strategies.base import MultiProcess, StepModule


class FSDPStrategy(MultiProcess):
    """Shards the objective's blocks (see :func:`ssl_core.sharding.shard_units`) and the root.

    Checkpoints hold full state dicts; the optimiser state is keyed by parameter name, so an
    FSDP checkpoint resumes only under FSDP. In-loop health and probes are skipped because no
    rank holds the encoder's whole weights; the evaluation after training gathers them.
    """

    name = "fsdp"
    optimizer_format = "by_name"
    evaluates_in_loop = False

    def __init__(self, device: torch.device, config: TrainConfig) -> None:
        super().__init__(device, config.sync_batchnorm)
        self.min_params = config.fsdp_min_params
        self.root: nn.Module | None = None
        self.replicated: list[nn.Parameter] = []  # parameters FSDP cannot shard (0-dim)
        if config.probe_every and self.is_main:
            warnings.warn("train.probe_every is not run during FSDP training (the encoder's weights are "
                          "sharded); the evaluation after training runs on the gathered weights.")

    @property
    def sharded_module(self) -> nn.Module | None:
        return self.root

    def setup(self, objective: Objective) -> None:
        self._prepare(objective)
        self.root = StepModule(objective)
        self.replicated = sharding.shard_step_module(self.root, self.min_params)
        self.step_fn = self.root

    def _root(self) -> nn.Module:
        assert self.root is not None, "FSDPStrategy.setup() has not run"
        return self.root

    def gradient_sync(self, sync: bool) -> contextlib.AbstractContextManager[Any]:
        sharding.set_gradient_sync(self._root(), sync)
        return contextlib.nullcontext()

    def after_backward(self) -> None:
        sharding.reshard_all(self._root())  # frozen teachers stay gathered otherwise
        sharding.average_replicated_grads(self.replicated)

    def model_state(self, objective: Objective) -> dict[str, Tensor]:
        return sharding.full_model_state(self._root())

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        return sharding.full_optimizer_state(self._root(), optimizer)

    @property
    def checkpoint_map_location(self) -> torch.device | str:
        return "cpu"  # every rank reads the full tensors, then keeps its shard

    def load_state(self, objective: Objective, optimizer: torch.optim.Optimizer,
                   model_state: dict[str, Tensor], optimizer_state: dict[str, Any]) -> None:
        sharding.load_full_state(self._root(), optimizer, model_state, optimizer_state)
