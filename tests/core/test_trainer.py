"""The shared training loop: resume equality, accumulation, NaN policy, data errors, logging."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from ssl_core.config import TrainConfig
from ssl_core.errors import DataError, NonFiniteLossError
from ssl_core.trainer import Trainer


def _toy(seed: int = 0, **obj_kwargs):  # type: ignore[no-untyped-def]
    from sslkit_testplugins.toy import AlignUniform, MLPEncoder, NoiseViews, gaussian_mixture

    torch.manual_seed(seed)
    data = gaussian_mixture()
    return AlignUniform(MLPEncoder(), NoiseViews(), **obj_kwargs), data


def _cfg(**kw) -> TrainConfig:  # type: ignore[no-untyped-def]
    base = dict(steps=24, batch_size=64, lr=0.01, log_every=1, checkpoint_every=8, health_every=0, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def _losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]


def test_loss_decreases(tmp_path: Path) -> None:
    obj, data = _toy()
    result = Trainer(obj, data, _cfg(steps=60), tmp_path).fit()
    first = sum(r["loss"] for r in result.history[:5]) / 5
    last = sum(r["loss"] for r in result.history[-5:]) / 5
    assert last < first - 0.1


def test_resumed_run_matches_uninterrupted(tmp_path: Path) -> None:
    obj_a, data = _toy()
    Trainer(obj_a, data, _cfg(), tmp_path / "a").fit()

    # interrupted after 16 steps (two checkpoints), then resumed in a fresh process-like setup
    obj_b, data = _toy()
    Trainer(obj_b, data, _cfg(steps=16), tmp_path / "b").fit()  # total differs: schedules would too
    obj_c, data = _toy(seed=123)  # different init: everything must come from the checkpoint
    trainer = Trainer(obj_c, data, _cfg(), tmp_path / "c")
    state = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=False)
    assert state["step"] == 16

    # a proper interruption: same config, stopped by a callback after step 12 via checkpoint at 8
    obj_d, data = _toy()
    stopper = Trainer(obj_d, data, _cfg(), tmp_path / "d")

    class Stop(Exception):
        pass

    def stop_at_12(record):  # type: ignore[no-untyped-def]
        if record["step"] == 12:
            raise Stop

    stopper.callbacks.append(stop_at_12)
    with pytest.raises(Stop):
        stopper.fit()
    obj_e, data = _toy(seed=999)
    resumed = Trainer(obj_e, data, _cfg(), tmp_path / "d")
    resumed.fit(resume=True)
    assert resumed.step == 24
    assert _losses(tmp_path / "d") == _losses(tmp_path / "a")  # identical loss curve, no duplicates
    for (n, p), (_, q) in zip(obj_a.state_dict().items(), obj_e.state_dict().items()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=n)
    del trainer


def test_grad_accumulation_matches_full_batch() -> None:
    # without batch-dependent layers, 2 x 32 accumulated equals one batch of 64
    from sslkit_testplugins.toy import MLPEncoder, NoiseViews

    from ssl_core.interfaces import Objective

    class MSE(Objective):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = MLPEncoder(dropout=0.0)

        def training_step(self, batch, step):  # type: ignore[no-untyped-def]
            return {"loss": self.encoder(batch["x"]).pow(2).mean()}

    _, data = _toy()
    torch.manual_seed(0)
    a = MSE()
    b = MSE()
    b.load_state_dict(a.state_dict())
    Trainer(a, data, _cfg(steps=3, grad_accum=1, optimizer="sgd")).fit()
    Trainer(b, data, _cfg(steps=3, grad_accum=2, optimizer="sgd")).fit()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    del NoiseViews


def test_nan_step_is_skipped_and_reported(tmp_path: Path) -> None:
    obj, data = _toy(nan_at_step=3)
    before = {k: v.clone() for k, v in obj.state_dict().items()}
    trainer = Trainer(obj, data, _cfg(steps=6), tmp_path)
    result = trainer.fit()
    assert result.skipped_steps == 1
    records = {r["step"]: r for r in result.history}
    assert records[4].get("skipped") == 1.0  # step index 3 is the 4th step
    assert all(torch.isfinite(v).all() for v in obj.state_dict().values() if v.is_floating_point())
    assert any(not torch.equal(before[k], v) for k, v in obj.state_dict().items())
    # metrics.jsonl stays standard JSON: the skipped step's NaN loss is written as null
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    strict = [json.loads(line, parse_constant=lambda token: pytest.fail(f"bare {token} in metrics.jsonl")) for line in lines]
    assert [r["loss"] for r in strict if r["step"] == 4] == [None]
    from ssl_core.report import read_metrics

    loss = {r["step"]: r["loss"] for r in read_metrics(tmp_path)}
    assert math.isnan(loss[4]) and math.isfinite(loss[5])


def test_nan_policy_stop_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    obj, data = _toy(nan_at_step=10)
    # step index 10 is the 11th step, logged as step 11 in metrics.jsonl
    with pytest.raises(NonFiniteLossError, match=r"at step 11 \(step numbers as in metrics.jsonl\).*checkpoint of step 8"):
        Trainer(obj, data, _cfg(nan_policy="stop"), tmp_path).fit()
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)
    assert state["step"] == 8


def test_batch_larger_than_data_is_a_clear_error() -> None:
    obj, data = _toy()
    with pytest.raises(DataError, match=r"batch_size \(1000\) is larger than the training data \(256 samples\)"):
        Trainer(obj, data, _cfg(batch_size=1000))


def test_epochs_define_total_steps_and_metrics_are_logged(tmp_path: Path) -> None:
    obj, data = _toy()
    trainer = Trainer(obj, data, _cfg(steps=None, epochs=2, batch_size=64, health_every=4), tmp_path)
    assert trainer.steps_per_epoch == 4 and trainer.total_steps == 8
    result = trainer.fit()
    last = result.history[-1]
    assert {"loss", "lr", "samples_per_s", "health/effective_rank", "align"} <= set(last)
    assert last["epoch"] == 1
    assert (tmp_path / "checkpoints" / "last.pt").exists()
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))  # atomic writes leave no temp files


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ssl_core import checkpoint

    path = tmp_path / "ck.pt"
    checkpoint.atomic_torch_save({"v": 1}, path)

    def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.os, "replace", boom)
    with pytest.raises(OSError):
        checkpoint.atomic_torch_save({"v": 2}, path)
    assert torch.load(path)["v"] == 1  # the previous good file survives
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]
