"""The Trainer on a ResumableStream: every sample once per epoch, epochs roll over when the
stream runs dry, and a crashed run resumes mid-epoch exactly (with and without loader workers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from ssl_core.config import TrainConfig
from ssl_core.errors import ConfigError
from ssl_core.interfaces import DataModule
from ssl_core.trainer import Trainer
from sslkit_testplugins.toy import IndexStream


def _toy(seed: int = 0, **stream_kw: Any):  # type: ignore[no-untyped-def]
    from sslkit_testplugins.toy import AlignUniform, MLPEncoder, NoiseViews, gaussian_mixture

    torch.manual_seed(seed)
    x = gaussian_mixture().train.fields["x"]  # type: ignore[attr-defined]  # 256 rows
    data = DataModule(train=IndexStream(x, **stream_kw))
    return AlignUniform(MLPEncoder(), NoiseViews()), data


def _cfg(**kw: Any) -> TrainConfig:
    base = dict(steps=12, batch_size=64, lr=0.01, log_every=1, checkpoint_every=3, health_every=0, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def _record_indices(trainer: Trainer) -> list[list[int]]:
    seen: list[list[int]] = []
    step = trainer.objective.training_step

    def recording(batch, info):  # type: ignore[no-untyped-def]
        seen.append(batch["index"].tolist())
        return step(batch, info)

    trainer.objective.training_step = recording  # type: ignore[method-assign]
    trainer.step_fn = recording
    return seen


@pytest.mark.parametrize("workers", [0, 2])
def test_each_sample_once_per_epoch_and_epochs_roll_over(workers: int) -> None:
    obj, data = _toy()
    trainer = Trainer(obj, data, _cfg(steps=8, num_workers=workers))
    seen = _record_indices(trainer)
    result = trainer.fit()
    assert len(seen) == 8  # 256 samples / 64 = 4 steps per epoch, two epochs
    for epoch in (seen[:4], seen[4:]):
        assert sorted(i for batch in epoch for i in batch) == list(range(256))
    assert seen[:4] != seen[4:]  # the second epoch reads the shards in another order
    assert [r["epoch"] for r in result.history] == [0] * 4 + [1] * 4


@pytest.mark.parametrize("workers,crash_at", [(0, 8), (2, 8), (2, 5)])
def test_crashed_stream_run_resumes_exactly(tmp_path: Path, workers: int, crash_at: int) -> None:
    """Checkpoints every 3 steps: a crash at 8 resumes from 6 (mid epoch 1), at 5 from 3 (mid
    epoch 0, after an odd number of batches, so worker 1's batch is due first)."""
    obj_a, data = _toy()
    Trainer(obj_a, data, _cfg(num_workers=workers), tmp_path / "a").fit()

    class Crash(Exception):
        pass

    def crash(record: dict) -> None:
        if record["step"] == crash_at:
            raise Crash

    obj_b, data = _toy()
    with pytest.raises(Crash):
        Trainer(obj_b, data, _cfg(num_workers=workers), tmp_path / "b", callbacks=[crash]).fit()
    ckpt = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=False)
    saved = 6 if crash_at == 8 else 3
    assert ckpt["step"] == saved and ckpt["stream"]["epoch"] == saved // 4
    assert ckpt["stream"]["ranks"][0]["next_worker"] == (saved % 2 if workers else 0)

    obj_c, data = _toy(seed=7)  # a different init: everything must come from the checkpoint
    resumed = Trainer(obj_c, data, _cfg(num_workers=workers), tmp_path / "b")
    seen = _record_indices(resumed)
    resumed.fit(resume=True)
    assert len(seen) == 12 - saved
    losses = [[(r["step"], r["loss"]) for r in map(json.loads, (tmp_path / d / "metrics.jsonl").read_text().splitlines())]
              for d in ("a", "b")]
    assert losses[0] == losses[1]
    for (name, p), (_, q) in zip(obj_a.state_dict().items(), obj_c.state_dict().items()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)


def test_stream_without_length_needs_steps() -> None:
    obj, data = _toy()
    with pytest.raises(ConfigError, match="train.steps"):
        Trainer(obj, data, _cfg(steps=None, epochs=1))
    obj, data = _toy(length=True)  # a known samples_per_epoch turns epochs into steps
    assert Trainer(obj, data, _cfg(steps=None, epochs=2)).total_steps == 8


def test_resume_with_other_worker_count_is_refused(tmp_path: Path) -> None:
    obj, data = _toy()
    Trainer(obj, data, _cfg(steps=4), tmp_path).fit()
    obj, data = _toy()
    with pytest.raises(ConfigError, match="same --nproc-per-node and train.num_workers"):
        Trainer(obj, data, _cfg(steps=8, num_workers=2), tmp_path).fit(resume=True)

