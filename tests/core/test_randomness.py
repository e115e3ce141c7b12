"""Per-sample random draws and the sampler's blocks: what lets N processes see the samples and
views one process sees (checked here in one process, by simulating the ranks' shards)."""

from __future__ import annotations

import pytest
import torch

from ssl_core.data import EpochSampler
from ssl_core.randomness import BatchShard, StepGenerator, keyed_uniform, sample_keys, sample_rand, sample_randn


def _ranks(world: int, per_rank: int, seed: int = 3) -> list[StepGenerator]:
    gens = []
    for r in range(world):
        g = StepGenerator("cpu", BatchShard(r * per_rank, per_rank, world * per_rank))
        g.manual_seed(seed)
        gens.append(g)
    return gens


@pytest.mark.parametrize("world", [2, 4])
def test_sample_rand_gives_each_sample_its_one_process_draws(world: int) -> None:
    one = torch.Generator().manual_seed(3)
    groups, batch = 3, 8  # e.g. multi-crop draws for x.repeat(3, ...)
    full = [torch.rand(groups * batch, 2, generator=one), torch.rand(batch, generator=one)]
    per = batch // world
    parts = [[sample_rand(g, (groups * per, 2)), sample_rand(g, (per,))] for g in _ranks(world, per)]
    first = torch.cat([p[0].view(groups, per, 2) for p in parts], dim=1).reshape(groups * batch, 2)
    assert torch.equal(first, full[0])
    assert torch.equal(torch.cat([p[1] for p in parts]), full[1])  # generators stay in step


def test_sample_randn_is_per_sample_and_standard_normal() -> None:
    one = StepGenerator("cpu", BatchShard(0, 8, 8))
    one.manual_seed(3)
    full = sample_randn(one, (8, 3))
    assert torch.equal(torch.cat([sample_randn(g, (4, 3)) for g in _ranks(2, 4)]), full)
    z = sample_randn(torch.Generator().manual_seed(0), (20_000,))
    assert torch.isfinite(z).all() and abs(float(z.mean())) < 0.03 and abs(float(z.std()) - 1) < 0.03
    assert 0.66 < float((z.abs() < 1).float().mean()) < 0.70  # 68% within one standard deviation


def test_sample_rand_refuses_rows_that_are_not_per_sample() -> None:
    g = _ranks(2, 4)[0]
    with pytest.raises(ValueError, match="holds 4 samples"):
        sample_rand(g, (6,))


def test_plain_generators_draw_locally() -> None:
    a, b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(sample_rand(a, (5, 3)), torch.rand(5, 3, generator=b))


def test_keyed_uniform_ignores_padding_and_batch_layout() -> None:
    one = StepGenerator("cpu", BatchShard(0, 4, 4)).manual_seed(9)
    keys = sample_keys(one, 4)
    wide = keyed_uniform(keys[:, None], torch.arange(30)[None, :])
    narrow = [keyed_uniform(sample_keys(g, 2)[:, None], torch.arange(12)[None, :]) for g in _ranks(2, 2, 9)]
    assert torch.equal(torch.cat(narrow)[:, :12], wide[:, :12])  # same values at the same positions


def test_keyed_uniform_looks_uniform_and_independent() -> None:
    keys = torch.randint(0, 2**31 - 1, (1000,), generator=torch.Generator().manual_seed(0))
    u = keyed_uniform(keys[:, None], torch.arange(200)[None, :])
    assert u.min() >= 0 and u.max() < 1
    assert abs(float(u.mean()) - 0.5) < 0.005 and abs(float(u.var()) - 1 / 12) < 0.002
    hist = torch.histc(u, bins=20, min=0, max=1)
    assert float(hist.min() / hist.mean()) > 0.95 and float(hist.max() / hist.mean()) < 1.05
    pairs = torch.stack([u[:, :-1].flatten(), u[:, 1:].flatten()])
    assert abs(float(torch.corrcoef(pairs)[0, 1])) < 0.01  # neighbouring positions
    other = keyed_uniform(keys[:, None] + 1, torch.arange(200)[None, :])
    assert abs(float(torch.corrcoef(torch.stack([u.flatten(), other.flatten()]))[0, 1])) < 0.01  # neighbouring keys


@pytest.mark.parametrize("world", [2, 3])
def test_sampler_ranks_read_contiguous_blocks_of_the_one_process_batches(world: int) -> None:
    micro = 4
    one = list(EpochSampler(50, seed=1, batch_size=world * micro))
    ranks = [list(EpochSampler(50, seed=1, batch_size=micro, rank=r, world_size=world)) for r in range(world)]
    assert all(len(r) == len(one) // world for r in ranks)
    for b in range(len(one) // (world * micro)):
        together = [i for r in ranks for i in r[b * micro:(b + 1) * micro]]
        assert together == one[b * world * micro:(b + 1) * world * micro]
