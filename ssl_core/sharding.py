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

PREFIX = "objective."  # the root wraps the objective as ``.objective`` (see strategies.base.StepModule)


def _fsdp() -> Any:
    from torch.distributed import fsdp

    return fsdp


def shard_units(root: nn.Module, min_params: int) -> list[nn.Module]:
    """The modules to shard as units, innermost first.

    A module that defines ``fsdp_units()`` names its own units, and the default rule is not
    applied inside it. Encoders need this when their code calls a block's children directly,
    e.g. ``block.conv(x)``: only a unit's own forward gathers its weights. Everywhere else the
    units are the children of ``nn.ModuleList``/``nn.Sequential`` with at least ``min_params``
    parameters.
    """
    units: list[nn.Module] = []
    claimed: set[int] = set()
    for module in root.modules():
        if id(module) in claimed or not callable(getattr(module, "fsdp_units", None)):
            continue
        claimed.update(id(m) for m in module.modules())
        units += list(module.fsdp_units())
    for module in root.modules():
        if id(module) in claimed or not isinstance(module, (nn.ModuleList, nn.Sequential)):
            continue
        for child in module.children():
            if sum(p.numel() for p in child.parameters()) >= min_params:
                units.append(child)
    unique = list({id(m): m for m in units}.values())
    depth = {id(m): name.count(".") for name, m in root.named_modules()}
    return sorted(unique, key=lambda m: -depth.get(id(m), 0))


def shard_step_module(root: nn.Module, min_params: int) -> list[nn.Parameter]:
    """Shard the units of ``root`` (see :func:`shard_units`), then ``root`` itself.

    Must run before the optimiser is built: sharding replaces every parameter with a DTensor.
    FSDP cannot shard 0-dimensional parameters (CLIP's logit scale, for example). Those stay
    replicated, and the returned list must have its gradients averaged with
    :func:`average_replicated_grads`.
    """
    fsdp = _fsdp()
    scalars = [p for p in root.parameters() if p.dim() == 0]
    ignored = set(scalars)
    for unit in shard_units(root, min_params):
        fsdp.fully_shard(unit, ignored_params=ignored & set(unit.parameters()) or None)
    fsdp.fully_shard(root, ignored_params=ignored or None)
    return scalars


def average_replicated_grads(params: list[nn.Parameter]) -> None:
    """Average the gradients of parameters FSDP left replicated (a collective on every rank)."""
    import torch.distributed as dist

    for p in params:
        if p.requires_grad:
            if p.grad is None:  # keep ranks in step even if one rank's step did not use it
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            p.grad.div_(dist.get_world_size())


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
