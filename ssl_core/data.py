"""Data plumbing shared by all modalities: collation, device moves, a resumable sampler."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset, Sampler, get_worker_info

if TYPE_CHECKING:
    import numpy as np


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
    exactly the samples an uninterrupted run would have read. With ``world_size > 1`` the
    permutation is cut into global micro-batches of ``world_size * batch_size`` samples and rank
    ``r`` takes block ``r`` of each: the ranks together read, micro-batch by micro-batch, exactly
    the samples one process would, and rank ``r``'s rows start at ``r * batch_size`` of the
    global micro-batch (which per-sample random draws rely on).
    """

    def __init__(self, length: int, seed: int, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.length, self.seed, self.batch_size = length, seed, batch_size
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.start = 0  # index into this rank's shard at which to begin

    def batches_per_epoch(self) -> int:
        """Full batches one rank reads per epoch (incomplete final batches are dropped)."""
        return self.length // (self.world_size * self.batch_size)

    def _indices(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.length, generator=g).tolist()
        block, chunk = self.batch_size, self.batch_size * self.world_size
        usable = (self.length // chunk) * chunk
        first = self.rank * block
        return [i for start in range(0, usable, chunk) for i in perm[start + first: start + first + block]]

    def __iter__(self) -> Iterator[int]:
        usable = self.batches_per_epoch() * self.batch_size
        yield from self._indices()[self.start:usable]

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() * self.batch_size - self.start)


WORKER_KEY = "__stream_worker__"
"""Sample field a :class:`ResumableStream` adds: which DataLoader worker produced the sample."""
POSITION_KEY = "__stream_position__"
"""Sample field a :class:`ResumableStream` adds: how many raw items its worker has read so far."""


class ResumableStream(IterableDataset):
    """An iterable dataset (data read as a stream, never all at once) the Trainer can split
    over ranks and DataLoader workers and resume mid-epoch.

    Subclasses implement :meth:`iter_raw` (cheap, undecoded items for one slot in one epoch, in a
    deterministic order) and :meth:`decode`. The Trainer calls :meth:`set_state` before each pass.
    ``skip[w]`` is how many raw items worker ``w`` had read when its last consumed sample was
    produced. Those items are read again and dropped without decoding, so a resumed run sees
    exactly the samples an uninterrupted run would have seen. Each yielded sample carries
    :data:`WORKER_KEY` and :data:`POSITION_KEY`; the Trainer removes both and keeps the
    position for its checkpoint.
    """

    def __init__(self) -> None:
        super().__init__()
        self.epoch, self.rank, self.world_size = 0, 0, 1
        self.skip: dict[int, int] = {}
        self.first_worker = 0

    def set_state(self, epoch: int, rank: int = 0, world_size: int = 1, skip: Mapping[int, int] | None = None,
                  first_worker: int = 0) -> None:
        """Select the epoch, this process's rank, and how much each worker already delivered.

        A DataLoader takes batches from its workers in turn, starting with worker 0. After a
        resume the next batch is due from worker ``first_worker``. Loader worker ``i`` therefore
        plays logical worker ``(i + first_worker) % num_workers``, and the batch order continues
        exactly where the interrupted run stopped.
        """
        self.epoch, self.rank, self.world_size = epoch, rank, world_size
        self.skip = dict(skip or {})
        self.first_worker = first_worker

    def iter_raw(self, slot: int, num_slots: int, epoch: int) -> Iterator[Any]:
        """Undecoded items of slot ``slot`` out of ``num_slots`` (= ranks x workers) for ``epoch``.

        Slots must be disjoint and together cover the epoch's data.
        """
        raise NotImplementedError

    def decode(self, raw: Any) -> dict[str, Any] | None:
        """Turn one raw item into a sample dict (``None``: unreadable, skip it after warning)."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        worker = (worker + self.first_worker) % num_workers
        slot = self.rank * num_workers + worker
        raw = self.iter_raw(slot, self.world_size * num_workers, self.epoch)
        start = self.skip.get(worker, 0)
        for position, item in enumerate(itertools.islice(raw, start, None), start=start + 1):
            sample = self.decode(item)
            if sample is None:  # unreadable item: decode() warned, and the position moves on
                continue
            sample[WORKER_KEY] = worker
            sample[POSITION_KEY] = position
            yield sample


def stratified_split(labels: "np.ndarray | Sequence[int]", test_fraction: float, seed: int,
                     both_sides: bool = False) -> "tuple[np.ndarray, np.ndarray]":
    """Split indices into (train, test) so each class keeps about ``test_fraction`` of its samples
    in test; reproducible for a given ``seed``. Both arrays are sorted.

    With ``both_sides=True`` every class with at least two samples puts at least one on each
    side. Small user folders then still give every class a probe example and a test example.
    """
    import numpy as np

    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train: list[int] = []
    test: list[int] = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(len(idx) * test_fraction))
        if both_sides and len(idx) > 1:
            k = min(max(k, 1), len(idx) - 1)
        test += idx[:k].tolist()
        train += idx[k:].tolist()
    return np.sort(np.asarray(train, dtype=int)), np.sort(np.asarray(test, dtype=int))
