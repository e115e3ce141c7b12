"""Random draws that belong to samples, not to processes.

The Trainer seeds one generator per optimiser step from ``(seed, step)`` only, so every rank
holds the same generator state. :class:`StepGenerator` also knows which rows of the global
(micro-)batch this process holds (:class:`BatchShard`). Augmenters and maskers draw through the
helpers below, and sample ``i`` of a global batch then gets the same views and masks
whether one process or eight share that batch, and whether the run was resumed or not.

- :func:`sample_rand`: uniform values with a fixed shape per sample (crop boxes, flip coins,
  colour factors, MAE's patch noise); :func:`sample_randn` the same as normal values (jitter).
  Drawn for the global batch, then sliced: each rank draws ``world_size`` times its own share
  of these few numbers, which is cheap.
- :func:`sample_keys` + :func:`keyed_uniform`: values whose count per sample depends on the
  data (one per token of a padded text row, per audio frame, per masked frame). Each sample
  gets an integer key from the generator (drawn like :func:`sample_rand`), and value ``j`` of
  sample ``i`` is a hash of ``(key_i, j)``. It depends neither on how wide the padded batch is
  on this rank nor on which other samples share the batch, and each rank computes only its own
  values, so large per-element noise (wav2vec 2.0's Gumbel noise) costs no more than before.

Draws made with a plain ``torch.Generator`` (no shard attached, e.g. in unit tests) behave as
``torch.rand`` on the local batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor


@dataclass(frozen=True)
class BatchShard:
    """This process's rows of the global micro-batch: ``offset`` of its first sample, ``size``
    samples, ``total`` samples over all processes."""

    offset: int
    size: int
    total: int

    @property
    def whole(self) -> bool:
        """True when this process holds the whole batch (one process)."""
        return self.size == self.total


class StepGenerator(torch.Generator):
    """A ``torch.Generator`` that carries the :class:`BatchShard` of the process using it."""

    def __new__(cls, device: torch.device | str = "cpu", shard: BatchShard | None = None) -> "StepGenerator":
        return super().__new__(cls, device)  # type: ignore[call-arg]

    def __init__(self, device: torch.device | str = "cpu", shard: BatchShard | None = None) -> None:
        self.shard = shard


def _groups(generator: torch.Generator | None, rows: int) -> tuple[BatchShard, int] | None:
    """(shard, k) when ``rows`` local rows are ``k`` groups of this process's slice of a larger
    batch; ``None`` when draws are local (no shard, or one process)."""
    shard = getattr(generator, "shard", None)
    if shard is None or shard.whole:
        return None
    if rows % shard.size:
        raise ValueError(
            f"A per-sample draw for {rows} rows, but this process holds {shard.size} samples of the batch: "
            "draw one row per sample (or a whole multiple, e.g. for x.repeat(k, ...))."
        )
    return shard, rows // shard.size


def _global_then_slice(generator: torch.Generator | None, shape: Sequence[int], draw) -> Tensor:  # type: ignore[no-untyped-def]
    shape = tuple(int(s) for s in shape)
    split = _groups(generator, shape[0])
    if split is None:
        return draw(shape)
    shard, k = split
    full = draw((k, shard.total, *shape[1:]))
    return full[:, shard.offset: shard.offset + shard.size].reshape(shape)


def sample_rand(generator: torch.Generator | None, shape: Sequence[int], device: torch.device | str | None = None,
                dtype: torch.dtype = torch.float32) -> Tensor:
    """Uniform ``[0, 1)`` values of ``shape``, one row per sample (``shape[0]``).

    ``shape[0]`` may be ``k`` times this process's batch size, laid out as ``k`` consecutive
    copies of the batch (``x.repeat(k, ...)``, as multi-crop does). Sample ``i`` of the global
    batch gets the same values however many processes share it.
    """
    return _global_then_slice(
        generator, shape, lambda s: torch.rand(s, generator=generator, device=device, dtype=dtype))


def sample_randn(generator: torch.Generator | None, shape: Sequence[int], device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normal values of ``shape``, one row per sample, like :func:`sample_rand` (whose
    uniforms it turns into normals with the Box-Muller transform, Box & Muller 1958)."""
    u = sample_rand(generator, (*shape, 2), device, torch.float64 if dtype == torch.float64 else torch.float32)
    radius = torch.sqrt(-2.0 * torch.log1p(-u[..., 0]))  # 1 - u is in (0, 1]: the log is finite
    return (radius * torch.cos(2 * torch.pi * u[..., 1])).to(dtype)


def sample_keys(generator: torch.Generator | None, rows: int, device: torch.device | str | None = None) -> Tensor:
    """One integer key per sample (``[rows]``, int64 in ``[0, 2**31)``) for :func:`keyed_uniform`."""
    return _global_then_slice(
        generator, (rows,), lambda s: torch.randint(0, 2**31 - 1, s, generator=generator, device=device))


_MASK32 = 0xFFFFFFFF


def _mul32(x: Tensor, c: int) -> Tensor:
    """``(x * c) mod 2**32`` for ``x`` in ``[0, 2**32)`` without overflowing int64."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _MASK32


def _fmix32(h: Tensor) -> Tensor:
    """MurmurHash3's 32-bit finaliser (Appleby): every input bit flips each output bit with
    probability about 1/2."""
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def keyed_uniform(keys: Tensor, counters: Tensor) -> Tensor:
    """Uniform ``[0, 1)`` float32 values ``u[...] = hash(keys[...], counters[...])`` (broadcast).

    Deterministic integer arithmetic: the same on every device and in every process, for any
    batch layout. Use distinct counters (or fresh keys) for independent draws.
    """
    k = _fmix32(keys.long() & _MASK32)
    c = _mul32(counters.long() & _MASK32, 0x9E3779B1)
    h = _fmix32(_fmix32(k ^ c) ^ k)
    return (h >> 8).to(torch.float32) * (1.0 / (1 << 24))
