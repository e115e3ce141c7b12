"""Data plumbing shared by all modalities: collation, device moves, a resumable sampler."""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler


def default_collate(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack tensor/number fields of sample dicts; keep other fields (e.g. strings) as lists.

    A batch that a dataset already assembled with ``__getitems__`` (a dict) passes through.
    """
    if isinstance(samples, Mapping):
        return dict(samples)
    if not samples:
        return {}
    out: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        first = values[0]
        if isinstance(first, Tensor):
            out[key] = torch.stack(values)
        elif isinstance(first, (int, float, bool)):
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    return out


def move_to_device(batch: Mapping[str, Any], device: torch.device, non_blocking: bool = False) -> dict[str, Any]:
    """Move every tensor in a (possibly nested) batch dict to ``device``."""
    out: dict[str, Any] = {}
    for k, v in batch.items():
        if isinstance(v, Tensor):
            out[k] = v.to(device, non_blocking=non_blocking)
        elif isinstance(v, Mapping):
            out[k] = move_to_device(v, device, non_blocking)
        else:
            out[k] = v
    return out


class TensorDictDataset(Dataset):
    """A dataset of equally long tensors, returned as one sample dict per index."""

    def __init__(self, **fields: Tensor) -> None:
        lengths = {len(v) for v in fields.values()}
        if len(lengths) != 1:
            raise ValueError(f"All fields must have the same length, got {({k: len(v) for k, v in fields.items()})}")
        self.fields = fields
        self.length = lengths.pop()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[i] for k, v in self.fields.items()}

    def __getitems__(self, indices: list[int]) -> dict[str, Tensor]:
        """A whole batch with one indexing op per field (DataLoader uses this when present)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {k: v[idx] for k, v in self.fields.items()}


class EpochSampler(Sampler[int]):
    """Shuffles with a permutation that depends only on (seed, epoch), and can start mid-epoch.

    The trainer sets :attr:`epoch` and :attr:`start` before each pass, so a resumed run reads
    exactly the samples an uninterrupted run would have read. With ``world_size > 1`` each rank
    takes an interleaved shard of the same permutation.
    """

    def __init__(self, length: int, seed: int, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.length, self.seed, self.batch_size = length, seed, batch_size
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.start = 0  # index into this rank's shard at which to begin

    def batches_per_epoch(self) -> int:
        """Full batches one rank reads per epoch (incomplete final batches are dropped)."""
        return (self.length // self.world_size) // self.batch_size

    def _indices(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.length, generator=g).tolist()
        per_rank = self.length // self.world_size
        return perm[self.rank: per_rank * self.world_size: self.world_size]

    def __iter__(self) -> Iterator[int]:
        usable = self.batches_per_epoch() * self.batch_size
        yield from self._indices()[self.start:usable]

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() * self.batch_size - self.start)
