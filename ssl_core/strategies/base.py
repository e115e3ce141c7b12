"""The interface every strategy implements, and the module that exposes a training step to
DDP/FSDP wrappers."""

from __future__ import annotations

import abc
import contextlib
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ssl_core import distributed as D
from ssl_core.interfaces import Objective, StepInfo

StepFn = Callable[[dict[str, Any], StepInfo], dict[str, Tensor]]


class StepModule(nn.Module):
    """Exposes ``objective.training_step`` as ``forward`` so DDP or FSDP can wrap it."""

    def __init__(self, objective: Objective) -> None:
        super().__init__()
        self.objective = objective

    def forward(self, batch: dict[str, Any], info: StepInfo) -> dict[str, Tensor]:
        return self.objective.training_step(batch, info)


class Strategy(abc.ABC):
    """Where an objective lives and how its gradients and state are combined across processes.

    Life cycle, as the Trainer drives it::

        strategy = make_strategy(cfg, device)      # joins the process group under torchrun
        strategy.setup(objective)                  # before the optimiser is built
        for each micro-batch:
            with strategy.gradient_sync(last):     # all-reduce only on the last micro-batch
                out = strategy.step_fn(batch, info); backward
        strategy.after_backward()
        loss, stop = strategy.agree(loss, stop)    # agree on non-finite losses and stop signals
        ... optimiser step ...
        strategy.model_state() / optimizer_state() / load_state()   # checkpoints
        strategy.close(); or strategy.abandon() after an error

    Every method that is a collective says so; all ranks must call it in the same order.
    """

    name: str = ""
    rank: int = 0
    world_size: int = 1
    optimizer_format: str = "torch"
    """How checkpoints store the optimiser state (``torch``: ``optimizer.state_dict()``)."""
    evaluates_in_loop: bool = True
    """False when the encoder's weights are not whole on any rank (in-loop health and probes
    are then skipped)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.step_fn: StepFn | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs, checkpoints and exports."""
        return self.rank == 0

    @property
    def sharded_module(self) -> nn.Module | None:
        """The FSDP root when parameters are sharded, else ``None``."""
        return None

    @abc.abstractmethod
    def setup(self, objective: Objective) -> None:
        """Move ``objective`` to the device and wrap it; sets :attr:`step_fn`. Runs before the
        optimiser is built (sharding replaces parameters)."""

    def gradient_sync(self, sync: bool) -> contextlib.AbstractContextManager[Any]:
        """Context for one micro-batch's forward and backward: ``sync=False`` skips the
        cross-rank gradient reduction (all but the last micro-batch of a step)."""
        return contextlib.nullcontext()

    def after_backward(self) -> None:
        """Called once per step after the last backward (collective under FSDP)."""

    def sum_over_ranks(self, t: Tensor) -> Tensor:
        """Sum of ``t`` over ranks (collective; ``t`` itself on one process)."""
        return t

    def agree(self, loss: Tensor, stop_requested: bool) -> tuple[float, bool]:
        """(mean of ``loss`` over ranks, whether any rank asked to stop), read to the host in
        one copy (collective). Every rank then skips a non-finite step, or stops, together."""
        return float(loss), stop_requested

    def any_rank(self, flag: bool) -> bool:
        """True when ``flag`` is true on any rank (collective)."""
        return flag

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (collective)."""
        return [obj]

    def barrier(self) -> None:
        """Wait for every rank (no-op on one process)."""
        D.barrier()

    def model_state(self, objective: Objective) -> dict[str, Tensor]:
        """The objective's full state dict (collective under FSDP; only rank 0 gets the tensors)."""
        return objective.state_dict()

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The optimiser's state in :attr:`optimizer_format` (collective under FSDP)."""
        return optimizer.state_dict()

    @property
    def checkpoint_map_location(self) -> torch.device | str:
        """Where checkpoint tensors are loaded before :meth:`load_state`."""
        return self.device

    def load_state(self, objective: Objective, optimizer: torch.optim.Optimizer,
                   model_state: dict[str, Tensor], optimizer_state: dict[str, Any]) -> None:
        """Restore full state dicts (as :meth:`model_state`/:meth:`optimizer_state` wrote them)."""
        objective.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)

    def close(self) -> None:
        """End a run every rank finished: a barrier. The process group stays joined for the next
        run in this process and is left at exit (:func:`ssl_core.distributed.end_of_run`)."""
        D.end_of_run()

    def abandon(self) -> None:
        """After an error on this rank: no barrier, since the other ranks may never reach one, and
        the group is not left at exit either. The process is about to exit; the launcher then
        stops the other ranks."""


class MultiProcess(Strategy):
    """What DDP and FSDP share: rank queries, collectives on the default process group, and
    BatchNorm layers whose statistics cover the global batch (``train.sync_batchnorm``)."""

    def __init__(self, device: torch.device, sync_batchnorm: bool) -> None:
        super().__init__(device)
        self.rank, self.world_size = D.rank(), D.world_size()
        self.sync_batchnorm = sync_batchnorm

    def _prepare(self, objective: Objective) -> None:
        if self.sync_batchnorm:
            from ssl_core.batchnorm import convert_batchnorm

            convert_batchnorm(objective, self.device)
        objective.to(self.device)

    def sum_over_ranks(self, t: Tensor) -> Tensor:
        t = t.clone()
        torch.distributed.all_reduce(t)
        return t

    def any_rank(self, flag: bool) -> bool:
        return bool(self.sum_over_ranks(torch.tensor(float(flag), device=self.device)).item() > 0)

    def agree(self, loss: Tensor, stop_requested: bool) -> tuple[float, bool]:
        flags = torch.stack([loss.detach().float().reshape(()), torch.tensor(float(stop_requested), device=loss.device)])
        total, stops = self.sum_over_ranks(flags).tolist()
        return total / self.world_size, stops > 0

    def gather_objects(self, obj: Any) -> list[Any]:
        every: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(every, obj)
        return every

    def abandon(self) -> None:
        D.forget_group()  # see Strategy.abandon: exiting without a barrier is the point
