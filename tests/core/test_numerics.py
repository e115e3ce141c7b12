"""Numerics never poison state: skipped non-finite steps, non-finite checkpoints, step numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from ssl_core.config import TrainConfig
from ssl_core.errors import NonFiniteLossError
from ssl_core.interfaces import Encoder, Objective, StepInfo
from ssl_core.trainer import Trainer


class BNEncoder(Encoder):
    """Linear -> BatchNorm -> ReLU -> Linear: the forward changes BatchNorm's running statistics."""

    modality = "toy"
    input_key = "x"
    embed_dim = 8

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 8))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Blowup(Objective):
    """Regression onto a fixed random target; at the steps in ``bad`` the input is scaled by inf,
    so the loss and BatchNorm's batch statistics are NaN/inf (as after an fp16 overflow)."""

    def __init__(self, bad: set[int] = frozenset(), poison_after: int = -1) -> None:  # type: ignore[assignment]
        super().__init__()
        self.encoder = BNEncoder()
        self.bad, self.poison_after = set(bad), poison_after

    def training_step(self, batch, step: StepInfo):  # type: ignore[no-untyped-def]
        x = batch["x"].float()
        if step.step in self.bad:
            x = x * float("inf")
        target = torch.randn(x.shape[0], 8, generator=step.generator)
        return {"loss": (self.encoder(x) - target).pow(2).mean()}

    def on_after_optimizer_step(self, step: StepInfo) -> None:
        if step.step == self.poison_after:  # diverged with a finite loss: a weight is now NaN
            with torch.no_grad():
                self.encoder.net[0].weight[0, 0] = float("nan")


def _data():  # type: ignore[no-untyped-def]
    from sslkit_testplugins.toy import gaussian_mixture

    return gaussian_mixture()


def _cfg(**kw) -> TrainConfig:  # type: ignore[no-untyped-def]
    # a constant LR, so a run of 3 steps and the first 3 steps of a longer run are the same
    base = dict(steps=6, batch_size=32, lr=0.01, warmup_fraction=0.0, min_lr_ratio=1.0, log_every=100,
                checkpoint_every=1, health_every=0, progress=False)
    return TrainConfig(**{**base, **kw})


def _state(obj: Objective) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in obj.state_dict().items()}


def test_skipped_step_leaves_model_exactly_as_before_batchnorm_included(tmp_path: Path) -> None:
    torch.manual_seed(0)
    good = Blowup()
    torch.manual_seed(0)
    skipped = Blowup(bad={3, 4})
    Trainer(good, _data(), _cfg(steps=3)).fit()
    trainer = Trainer(skipped, _data(), _cfg(steps=5), tmp_path)
    result = trainer.fit()
    assert result.skipped_steps == 2
    a, b = _state(good), _state(skipped)
    assert "encoder.net.1.running_var" in b and "encoder.net.1.num_batches_tracked" in b
    for k in a:  # two skipped steps after three good ones: identical to three good ones
        assert torch.equal(a[k], b[k]), k
    # the checkpoints written during the NaN streak hold the good state, not inf statistics
    saved = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert saved["step"] == 5
    for k, v in saved["objective"].items():
        assert torch.equal(v, b[k]), k


def test_checkpoint_with_non_finite_weights_is_never_written(tmp_path: Path) -> None:
    obj = Blowup(poison_after=3)  # step index 3 is logged as step 4; its checkpoint is refused
    with pytest.raises(NonFiniteLossError) as err:
        Trainer(obj, _data(), _cfg(), tmp_path).fit()
    msg = str(err.value)
    assert "Not writing the checkpoint of step 4" in msg and "encoder.net.0.weight" in msg
    assert "The checkpoint of step 3" in msg and str(tmp_path / "checkpoints" / "last.pt") in msg
    saved = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert saved["step"] == 3
    assert all(torch.isfinite(v).all() for v in saved["objective"].values() if v.is_floating_point())


def _records(run: Path) -> dict[int, dict]:
    return {r["step"]: r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}


def test_stop_after_max_bad_steps_tolerated_and_step_numbers_match_metrics(tmp_path: Path) -> None:
    """max_bad_steps is how many consecutive non-finite steps are tolerated: 2 pass, the 3rd stops."""
    Trainer(Blowup(bad={2, 3}), _data(), _cfg(max_bad_steps=2, checkpoint_every=2), tmp_path / "ok").fit()
    records = _records(tmp_path / "ok")
    assert records[3]["skipped"] == 1.0 and records[4]["skipped"] == 1.0  # logged although log_every=100

    with pytest.raises(NonFiniteLossError) as err:
        Trainer(Blowup(bad={2, 3, 4}), _data(), _cfg(max_bad_steps=2, checkpoint_every=2), tmp_path / "stop").fit()
    msg = str(err.value)
    assert "steps 3-5 (3 in a row)" in msg and "max_bad_steps=2" in msg
    assert "checkpoint of step 4" in msg
    records = _records(tmp_path / "stop")
    assert records[3]["skipped"] == 1.0 and records[4]["skipped"] == 1.0 and 5 not in records
    assert torch.load(tmp_path / "stop" / "checkpoints" / "last.pt", weights_only=True)["step"] == 4


def test_skipped_step_under_ddp_is_skipped_on_every_rank_and_restores_global_batchnorm(tmp_path: Path) -> None:
    """Rank 1 alone sees a non-finite input at two steps; both ranks skip them, and the 2-process
    run (global-batch BatchNorm) ends exactly where a 2-process run without those steps does."""
    from ssl_core.equivalence import run_ranks

    script = str(Path(__file__).with_name("_nan_ddp_script.py"))
    run_ranks([script, str(tmp_path / "out.pt"), str(tmp_path), "good=3:", "skipped=5:3,4"],
              nproc=2, timeout_s=300, check=True)
    out = torch.load(tmp_path / "out.pt")
    good, skipped = out["good"], out["skipped"]
    assert good["skipped"] == [0, 0] and skipped["skipped"] == [2, 2]
    assert "encoder.net.1.running_var" in skipped["state"]
    for k, v in good["state"].items():
        assert torch.equal(v, skipped["state"][k]), k
    assert skipped["checkpoint_step"] == 5
    for k, v in skipped["checkpoint"].items():
        assert torch.equal(v, skipped["state"][k]), k
