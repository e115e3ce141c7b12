"""Clear errors, not tracebacks: full disks, damaged checkpoints, bad settings, resume mistakes,
batches too small to contrast, and a second stop signal."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ssl_core import checkpoint
from ssl_core.config import TrainConfig
from ssl_core.errors import ConfigError, WriteError
from ssl_core.trainer import Trainer

RUN = ["-o", "toy_align", "--steps", "4", "--no-eval", "--set", "train.checkpoint_every=2"]


def _no_traceback(res) -> None:  # type: ignore[no-untyped-def]
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "Aborted" not in res.stderr


# ---------------------------------------------------------------------- disk full
def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sslkit_testplugins.toy import AlignUniform, MLPEncoder, NoiseViews, gaussian_mixture

    real = checkpoint._write_and_sync
    writes = []

    def write(fd: int, data: bytes) -> None:
        writes.append(len(data))
        if len(writes) > 1:  # the first checkpoint fits, then the disk is full
            os.close(fd)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data)

    monkeypatch.setattr(checkpoint, "_write_and_sync", write)
    cfg = TrainConfig(steps=8, batch_size=32, checkpoint_every=2, health_every=0, progress=False)
    trainer = Trainer(AlignUniform(MLPEncoder(), NoiseViews()), gaussian_mixture(), cfg, tmp_path)
    with pytest.raises(WriteError) as err:
        trainer.fit()
    ck = tmp_path / "checkpoints" / "last.pt"
    msg = str(err.value)
    assert "Checkpoint of step 4 not written" in msg and f"Could not write {ck}" in msg
    assert "No space left on device" in msg and "free on the disk holding" in msg
    assert "The checkpoint of step 2" in msg and "--resume" in msg
    assert torch.load(ck, weights_only=True)["step"] == 2
    assert sorted(p.name for p in ck.parent.iterdir()) == ["last.pt"]  # no temporary file left


# ---------------------------------------------------------------------- damaged checkpoints
@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_damaged_checkpoint_is_a_clear_error(toy_run: Path, ssl_cli, damage: str) -> None:  # type: ignore[no-untyped-def]
    ck = toy_run / "checkpoints" / "last.pt"
    data = ck.read_bytes()
    ck.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": b"not a checkpoint" * 64}[damage])
    res = ssl_cli("run", "--resume", "--out", toy_run, "--steps", "6", "--no-eval")
    _no_traceback(res)
    assert f"The checkpoint {ck} is" in res.stderr
    assert ("empty (0 bytes)" if damage == "empty" else "damaged") in res.stderr


# ---------------------------------------------------------------------- settings
def test_unknown_objective_kwarg_is_refused_before_anything_runs(tmp_path: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    res = ssl_cli("run", *RUN, "--out", out, "--set", "objective_kwargs.tt=3")
    _no_traceback(res)
    assert "Unknown setting objective_kwargs.tt" in res.stderr and "Did you mean 'objective_kwargs.t'?" in res.stderr
    assert not out.exists()
    res = ssl_cli("run", *RUN, "--out", out, "--set", "objective_kwargs.t=warm")
    _no_traceback(res)
    assert "objective_kwargs.t" in res.stderr and "must be a number" in res.stderr
    res = ssl_cli("run", *RUN, "--out", out, "--set", "encoder_kwargs.in_dimm=3")
    _no_traceback(res)
    assert "Did you mean 'encoder_kwargs.in_dim'?" in res.stderr


def test_simclr_with_batch_size_one_is_refused_before_training() -> None:
    pytest.importorskip("ssl_vision")
    from ssl_core.runner import build_data, build_encoder, build_objective, resolve_config

    cfg = resolve_config("simclr", overrides={"train": {"steps": 1, "batch_size": 1}})
    data = build_data(cfg)
    objective = build_objective(cfg, build_encoder(cfg, data), data)
    with pytest.raises(ConfigError, match=r"needs at least 2 samples per micro-batch; this run has 1.*--batch-size 2"):
        Trainer(objective, data, cfg.train)


# ---------------------------------------------------------------------- resume mistakes
def test_resume_without_out(ssl_cli) -> None:  # type: ignore[no-untyped-def]
    res = ssl_cli("run", "-o", "toy_align", "--resume")
    _no_traceback(res)
    assert "--resume needs --out RUN_DIR" in res.stderr


def test_resume_of_a_finished_run_says_so(toy_run: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    config = (toy_run / "config.yaml").read_text()
    res = ssl_cli("run", "--resume", "--out", toy_run, "--no-eval")
    _no_traceback(res)
    assert f"The run in {toy_run} is finished" in res.stderr and "--steps 8" in res.stderr
    assert (toy_run / "config.yaml").read_text() == config


def test_resume_of_a_trained_but_unexported_run_finishes_the_export(toy_run: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    """Stopped after the last step but before export (e.g. killed during evaluation)."""
    (toy_run / "encoder.pt").unlink()
    res = ssl_cli("run", "--resume", "--out", toy_run, "--no-eval")
    assert res.returncode == 0, res.stderr
    assert (toy_run / "encoder.pt").exists()


def test_steps_below_the_checkpoint_are_refused(toy_run: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    config = (toy_run / "config.yaml").read_text()
    res = ssl_cli("run", "--resume", "--out", toy_run, "--steps", "3", "--no-eval")
    _no_traceback(res)
    assert "is at step 4, past this run's 3 total steps" in res.stderr and "--steps 5 or more" in res.stderr
    assert (toy_run / "config.yaml").read_text() == config  # the refused resume changed nothing


# ---------------------------------------------------------------------- second stop signal
_SIGNAL_TWICE = """
import os, signal, sys, time
from sslkit_testplugins import toy
step = toy.AlignUniform.training_step
def twice(self, batch, info):  # both signals arrive mid-step, one after the other
    if info.step == 6:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # let the first one be handled: two pending signals would merge into one
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
    return step(self, batch, info)
toy.AlignUniform.training_step = twice
from ssl_core.cli import main
main()
"""


def test_second_stop_signal_exits_cleanly_with_a_message(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "TQDM_DISABLE": "1"}
    res = subprocess.run([sys.executable, "-c", _SIGNAL_TWICE, "run", *RUN[:2], "--steps", "20", "--no-eval",
                          "--set", "train.checkpoint_every=5", "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 128 + signal.SIGTERM, res.stderr
    assert "Stopped at once by a second SIGTERM" in res.stderr and "--resume" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (out / "run.lock").exists()
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"] == 5  # whole, and the last one
