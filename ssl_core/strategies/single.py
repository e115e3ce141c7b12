"""One process on one device: the objective is used as it is."""

from __future__ import annotations

import torch

from ssl_core.interfaces import Objective
from ssl_core.strategies.base import Strategy


class SingleProcess(Strategy):
    """The default: no process group, no wrapper, nothing to synchronise."""

    name = "single"

    def __init__(self, device: torch.device) -> None:
        super().__init__(device)

    def setup(self, objective: Objective) -> None:
        objective.to(self.device)
        self.step_fn = objective.training_step

    def close(self) -> None:
        pass
