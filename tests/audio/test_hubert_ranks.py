"""HuBERT's k-means targets are fitted once, by rank 0, and sent to the other ranks."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from ssl_audio.data import InMemoryAudioDataset
from ssl_audio.encoders import Wav2Vec2Encoder

# noise bursts of different lengths: k-means has frames to fit, no generated speech is needed
SCRIPT = textwrap.dedent("""
    import os, sys
    import torch, torch.distributed as dist
    import ssl_audio.hubert as H
    from ssl_audio.data import InMemoryAudioDataset
    from ssl_audio.encoders import Wav2Vec2Encoder
    g = torch.Generator().manual_seed(0)
    clips = InMemoryAudioDataset([torch.randn(4000 + 800 * i, generator=g) for i in range(12)])
    fits = []
    real_fit = H.KMeans.fit
    H.KMeans.fit = classmethod(lambda cls, *a, **k: fits.append(1) or real_fit.__func__(cls, *a, **k))
    torch.manual_seed(0)
    obj = H.HuBERT(Wav2Vec2Encoder(size="tiny"), target_dataset=clips, num_clusters=8, final_dim=16)
    before = obj.targets.kmeans.centroids.clone()
    dist.init_process_group("gloo")
    obj._receive_targets()
    rows = [torch.zeros_like(obj.targets.kmeans.centroids) for _ in range(2)]
    dist.all_gather(rows, obj.targets.kmeans.centroids)
    assert torch.equal(rows[0], rows[1]), "ranks hold different centroids"
    assert rows[0].abs().sum() > 0, "rank 0 sent empty centroids"
    rank = dist.get_rank()
    print(f"rank {rank} fits={len(fits)} placeholder={bool((before == 0).all())} ok", flush=True)
    dist.destroy_process_group()
""")


def test_only_rank_0_fits_and_every_rank_trains_on_its_centroids(tmp_path: Path) -> None:
    from ssl_core.equivalence import run_ranks

    script = tmp_path / "ranks.py"
    script.write_text(SCRIPT)
    ranks, _ = run_ranks([str(script)], nproc=2, timeout_s=300, check=True)
    assert "rank 0 fits=1 placeholder=False ok" in ranks[0].stdout, ranks[0].stdout
    assert "rank 1 fits=0 placeholder=True ok" in ranks[1].stdout, ranks[1].stdout


def test_a_rank_without_a_process_group_says_where_its_targets_should_come_from(monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl_audio.hubert as H

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(H, "collect_frames", lambda *a, **k: pytest.fail("rank 1 must not read frames for k-means"))
    clips = InMemoryAudioDataset([torch.randn(6000) for _ in range(4)])
    obj = H.HuBERT(Wav2Vec2Encoder(size="tiny"), target_dataset=clips, num_clusters=8, final_dim=16)
    assert obj.targets.kmeans.centroids.shape == (8, 39)
    with pytest.raises(RuntimeError, match="rank 1 has no k-means targets"):
        obj._receive_targets()
