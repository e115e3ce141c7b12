"""EpochSampler: each rank's shard of an epoch is disjoint from the others', together they cover
the epoch, every rank reads the same number of batches, and the order depends only on
(seed, epoch) so a resumed or re-launched run reads the same samples."""

from __future__ import annotations

import pytest

from ssl_core.data import EpochSampler


def _shards(n: int, batch: int, world: int, seed: int = 0, epoch: int = 0) -> list[list[int]]:
    out = []
    for rank in range(world):
        s = EpochSampler(n, seed, batch, rank, world)
        s.epoch = epoch
        out.append(list(s))
    return out


@pytest.mark.parametrize("world", [1, 2, 3])
def test_rank_shards_are_disjoint_and_cover_the_epoch(world: int) -> None:
    n, batch = 48, 4  # divisible by world x batch: nothing is dropped
    shards = _shards(n, batch, world)
    flat = [i for s in shards for i in s]
    assert len(flat) == len(set(flat)) == n  # disjoint, and together every sample once
    assert sorted(flat) == list(range(n))
    assert all(len(s) == n // world for s in shards)


@pytest.mark.parametrize("n,batch,world", [(50, 4, 3), (37, 5, 2), (10, 3, 4)])
def test_uneven_data_gives_every_rank_the_same_number_of_full_batches(n: int, batch: int, world: int) -> None:
    shards = _shards(n, batch, world)
    per_rank = (n // world) // batch * batch
    assert all(len(s) == per_rank for s in shards)
    flat = [i for s in shards for i in s]
    assert len(flat) == len(set(flat)) and set(flat) <= set(range(n))
    assert n - len(flat) < world * batch + world  # only the incomplete tail is left out
    assert all(len(EpochSampler(n, 0, batch, r, world)) == per_rank for r in range(world))


def test_order_depends_only_on_seed_and_epoch() -> None:
    a = _shards(40, 4, 2, seed=3, epoch=5)
    assert a == _shards(40, 4, 2, seed=3, epoch=5)  # fresh samplers, same order
    assert a != _shards(40, 4, 2, seed=3, epoch=6)  # reshuffled every epoch
    assert a != _shards(40, 4, 2, seed=4, epoch=5)
    assert a[0] != sorted(a[0])  # shuffled, not in index order
    # each global micro-batch of 2 x 4 is rank 0's block of 4 then rank 1's: together, batch by
    # batch, the ranks read exactly the one-process shuffle
    one = _shards(40, 4, 1, seed=3, epoch=5)[0]
    joined = [i for b in range(0, len(a[0]), 4) for r in (0, 1) for i in a[r][b:b + 4]]
    assert joined == one


def test_start_resumes_mid_epoch() -> None:
    full = _shards(40, 4, 2, seed=1, epoch=2)[1]
    s = EpochSampler(40, 1, 4, rank=1, world_size=2)
    s.epoch, s.start = 2, 8
    assert list(s) == full[8:] and len(s) == len(full) - 8
