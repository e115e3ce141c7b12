"""How the Trainer spreads one objective over processes: one interface, one module per way.

- :class:`~ssl_core.strategies.single.SingleProcess`: one process, one device (the default).
- :class:`~ssl_core.strategies.ddp.DDPStrategy`: a full copy per rank, gradients all-reduced
  (``torch.nn.parallel.DistributedDataParallel``).
- :class:`~ssl_core.strategies.fsdp.FSDPStrategy`: parameters, gradients and optimiser state
  sharded over ranks (FSDP2, see :mod:`ssl_core.sharding`).

:func:`make_strategy` picks one from the environment torchrun sets and ``train.strategy``. The
Trainer only talks to the :class:`~ssl_core.strategies.base.Strategy` interface, so its loop
has no per-strategy branches.
"""

from __future__ import annotations

import torch

from ssl_core import distributed as D
from ssl_core.config import TrainConfig
from ssl_core.strategies.base import Strategy, StepModule

__all__ = ["Strategy", "StepModule", "make_strategy"]


def make_strategy(config: TrainConfig, device: torch.device) -> Strategy:
    """Join the process group when launched by torchrun with WORLD_SIZE > 1 and return the
    strategy for ``config.strategy``; otherwise a single-process strategy on ``device``."""
    dist_device = D.init_from_env(device.type)
    if dist_device is None:
        from ssl_core.strategies.single import SingleProcess

        return SingleProcess(device)
    if config.strategy == "fsdp":
        from ssl_core.strategies.fsdp import FSDPStrategy

        return FSDPStrategy(dist_device, config)
    from ssl_core.strategies.ddp import DDPStrategy

    return DDPStrategy(dist_device, config)
