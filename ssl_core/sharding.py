"""Fully sharded data parallel (FSDP2, ``torch.distributed.fsdp.fully_shard``) for the Trainer.

Layout: every block inside an ``nn.ModuleList`` or ``nn.Sequential`` with at least
``min_params`` parameters is sharded as its own unit, so only one block's full weights exist
on a device at a time during forward and backward. Transformer layers and ResNet stages are
such blocks. The remaining parameters (embeddings, norms, small heads) are sharded with the
root, which wraps ``Objective.training_step``. They are gathered for the whole step, so
objectives may use them directly (tied embeddings, EMA teachers, logit scales).

Checkpoints hold *full* (unsharded) state dicts with the usual parameter names, written by
rank 0. A checkpoint written under FSDP therefore exports and evaluates like any other.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

PREFIX = "objective."  # the root wraps the objective as ``.objective`` (see trainer._StepModule)


def _fsdp() -> Any:
    from torch.distributed import fsdp

    return fsdp


def shard_step_module(root: nn.Module, min_params: int) -> nn.Module:
    """Shard qualifying blocks of ``root`` and then ``root`` itself; returns ``root``.

    Must run before the optimiser is built: sharding replaces every parameter with a DTensor.
    """
    fsdp = _fsdp()
    seen: set[int] = set()
    blocks: list[nn.Module] = []
    for module in root.modules():
        if isinstance(module, (nn.ModuleList, nn.Sequential)):
            for child in module.children():
                size = sum(p.numel() for p in child.parameters())
                if size >= min_params and id(child) not in seen:
                    seen.add(id(child))
                    blocks.append(child)
    # innermost blocks first: fully_shard on an outer module leaves already-sharded ones alone
    depth = {id(m): name.count(".") for name, m in root.named_modules()}
    for block in sorted(blocks, key=lambda m: -depth.get(id(m), 0)):
        fsdp.fully_shard(block)
    fsdp.fully_shard(root)
    return root


def sharded_modules(root: nn.Module) -> list[nn.Module]:
    """Every FSDP-managed module under (and including) ``root``."""
    fsdp = _fsdp()
    return [m for m in root.modules() if isinstance(m, fsdp.FSDPModule)]


def reshard_all(root: nn.Module) -> None:
    """Return every gathered parameter to its shard.

    Frozen modules such as EMA teachers never run a backward, so nothing else reshards them.
    Afterwards student and teacher parameters have the same DTensor layout, and the EMA update
    can combine them.
    """
    for module in sharded_modules(root):
        module.reshard()


def set_gradient_sync(root: nn.Module, sync: bool) -> None:
    """Skip (``False``) or perform the gradient reduce-scatter of the next backward."""
    root.set_requires_gradient_sync(sync)  # type: ignore[operator]


def _options(**kw: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def full_model_state(root: nn.Module) -> dict[str, torch.Tensor]:
    """The objective's full state dict on CPU (rank 0; other ranks get ``{}``). Collective."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = get_model_state_dict(root, options=_options(cpu_offload=True))
    return {k[len(PREFIX):] if k.startswith(PREFIX) else k: v for k, v in state.items()}


def full_optimizer_state(root: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimiser state keyed by parameter names, unsharded, on CPU (rank 0). Collective."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(root, optimizer, options=_options(cpu_offload=True))


def load_full_state(root: nn.Module, optimizer: torch.optim.Optimizer | None,
                    model_state: dict[str, torch.Tensor], optimizer_state: dict[str, Any] | None) -> None:
    """Shard full state dicts (every rank passes the same full dicts) back into ``root``."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    set_model_state_dict(root, {PREFIX + k: v for k, v in model_state.items()}, options=_options())
    if optimizer is not None and optimizer_state is not None:
        set_optimizer_state_dict(root, optimizer, optimizer_state, options=_options())
