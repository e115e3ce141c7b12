"""torch.distributed helpers: process-group setup from torchrun's environment, rank queries,
collectives that keep gradients (contrastive negatives and batch statistics across ranks), and
means over the global batch."""

from __future__ import annotations

import atexit
import datetime
import os
import time

import torch
import torch.distributed as dist
from torch import Tensor


def env_world_size() -> int:
    """WORLD_SIZE set by torchrun (1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    """True when a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank 0 writes logs, checkpoints and exports."""
    return rank() == 0


def init_from_env(device_type: str) -> torch.device | None:
    """Initialise the default process group when launched by torchrun with WORLD_SIZE > 1.

    Uses NCCL on CUDA and gloo on CPU. Returns this rank's device (``cuda:LOCAL_RANK`` on GPUs),
    or ``None`` when not distributed.
    """
    if env_world_size() <= 1 or not dist.is_available():
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_type == "cuda" and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=datetime.timedelta(minutes=30))
        _mark_joined()
    if use_cuda:
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


def all_reduce_mean(t: Tensor) -> Tensor:
    """Mean of ``t`` over ranks (returns ``t`` unchanged when not distributed)."""
    if not is_distributed():
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t / world_size()


def gather_with_grad(t: Tensor) -> Tensor:
    """Concatenate ``t`` [B, ...] from every rank along dim 0, with gradients flowing back to
    each rank's own slice (so contrastive losses see negatives from the global batch)."""
    if not is_distributed():
        return t
    import torch.distributed.nn.functional as dist_fn

    return torch.cat(dist_fn.all_gather(t), dim=0)


def all_reduce_with_grad(t: Tensor) -> Tensor:
    """Sum of ``t`` over ranks, differentiable: the gradient reaching each rank's ``t`` is the sum
    of every rank's gradient of the result (use for batch statistics inside a loss, e.g.
    codebook usage averaged over the global batch). ``t`` itself when not distributed."""
    if not is_distributed():
        return t
    import torch.distributed.nn.functional as dist_fn

    return dist_fn.all_reduce(t)


def global_mean_share(total: Tensor, count: Tensor) -> Tensor:
    """This rank's share of a mean over the global batch: ``world_size * total / sum(count)``.

    For losses averaged over a number of items that differs between ranks (masked tokens,
    masked frames, valid positions). ``total`` is the sum of this rank's per-item losses and
    ``count`` its number of items (no gradient flows through it). The trainer averages the
    loss, and DDP the gradients, over ranks, so the run optimises the mean over every rank's
    items, as one process holding the whole batch would. On one process: ``total / count``.
    A zero global count gives 0 instead of NaN.
    """
    count = count.detach().to(total.dtype)
    if is_distributed():
        count = count.clone()
        dist.all_reduce(count)
        return total * world_size() / count.clamp_min(1)
    return total / count.clamp_min(1)


_joined_here = False
"""Whether :func:`init_from_env` joined the default group: a group the caller created is theirs
to leave."""


def _mark_joined() -> None:
    global _joined_here
    _joined_here = True
    atexit.unregister(_leave_at_exit)  # one registration, however often a group is joined
    atexit.register(_leave_at_exit)


def end_of_run() -> None:
    """A run every rank finished: wait for all of them (a barrier), so each is past the run's
    last collective, and stay in the group.

    The group is kept for the next run in the same process (several ``run_experiment`` calls in
    one torchrun launch): leaving it and joining a new one on the same address at once races
    between ranks. The group is left when the process exits (:func:`_leave_at_exit`)."""
    barrier()


def forget_group() -> None:
    """After an error on this rank: leave nothing for the exit hook to do. The other ranks may
    be waiting in a collective this rank will never join; the launcher stops them."""
    global _joined_here
    _joined_here = False


def _leave_at_exit(settle_s: float = 0.5) -> None:
    """Leave the group this module joined, at interpreter exit, while Python is still whole.

    Every rank has passed a barrier at the end of its last run (:func:`end_of_run`), so no
    barrier here: rank 0 may still be evaluating when the others exit. The sleep lets gloo's
    worker threads drop what they hold from the last collective (see :func:`shutdown`)."""
    if _joined_here and dist.is_available() and dist.is_initialized():
        _leave(settle_s)


def shutdown(settle_s: float = 0.5) -> None:
    """Leave the process group so the process can exit without aborting.

    gloo's worker threads release each finished collective after ``wait()`` has already returned.
    That release decrements Python objects and so needs the GIL. If the interpreter is already
    finalising, CPython ends the thread and libstdc++ aborts the process ("terminate called
    without an active exception", exit -6). We saw this on about one rank exit in fifteen on a
    loaded 2-core machine. A barrier puts every rank past its last collective. The short sleep
    releases the GIL so the workers can drop what they still hold. Only then is the group
    destroyed. Safe to call when no group is initialised.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    barrier()
    _leave(settle_s)


def _leave(settle_s: float) -> None:
    """Destroy the group after ``settle_s`` seconds without the GIL (see :func:`shutdown`), and
    leave nothing for the exit hook."""
    global _joined_here
    _joined_here = False
    time.sleep(settle_s)
    dist.destroy_process_group()
