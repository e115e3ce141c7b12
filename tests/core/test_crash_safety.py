"""Kill -9 mid-run and resume; SIGTERM saves a checkpoint (the signals go to a real `ssl` process;
the runs that need none run `ssl` in this process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ARGS = ["-o", "toy_align", "--steps", "60", "--no-eval", "--set", "train.checkpoint_every=5",
        "--set", "objective_kwargs.sleep_s=0.05"]


def _start(out: Path, *extra: str, new_session: bool = False) -> subprocess.Popen:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    cmd = [sys.executable, "-c", "from ssl_core.cli import main; main()", "run", *ARGS, "--out", str(out), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=new_session)


def _wait_for_checkpoint(out: Path, min_step: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    ck = out / "checkpoints" / "last.pt"
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "process ended early"
        if ck.exists():
            try:
                if torch.load(ck, weights_only=False)["step"] >= min_step:
                    return
            except Exception:
                pass  # being replaced right now; the rename is atomic, so just retry
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared in time")


def _encoder(out: Path) -> dict:
    return torch.load(out / "encoder.pt", weights_only=False)["state_dict"]


def test_sigkill_then_resume_matches_uninterrupted(tmp_path: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    """Only the killed run needs a process of its own: the uninterrupted run and the resume run
    `ssl` in this process (the same code as the console script, without starting Python)."""
    full = ssl_cli("run", *ARGS, "--out", tmp_path / "full", "--set", "objective_kwargs.sleep_s=0")
    assert full.returncode == 0, full.stderr

    victim = _start(tmp_path / "killed")
    _wait_for_checkpoint(tmp_path / "killed", 15, victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    state = torch.load(tmp_path / "killed" / "checkpoints" / "last.pt", weights_only=False)
    assert 15 <= state["step"] < 60  # at most the steps since the last checkpoint are lost

    with pytest.warns(UserWarning, match="Took over the lock .* from a process that is no longer running"):
        resumed = ssl_cli("run", *ARGS, "--out", tmp_path / "killed", "--resume", "--set", "objective_kwargs.sleep_s=0")
    assert resumed.returncode == 0, resumed.stderr
    a, b = _encoder(tmp_path / "full"), _encoder(tmp_path / "killed")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [json.loads(x)["step"] for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 60


def test_sigterm_to_the_whole_job_with_loader_workers_still_checkpoints(tmp_path: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    """SLURM and `kill -TERM -PGID` signal every process, DataLoader workers included. The run
    checkpoints the last step it logged, says how to continue, and the workers go with it."""
    proc = _start(tmp_path / "run", "--set", "train.num_workers=2", new_session=True)
    _wait_for_checkpoint(tmp_path / "run", 10, proc)
    os.killpg(proc.pid, signal.SIGTERM)
    code = proc.wait(timeout=60)
    err = proc.stderr.read()
    assert code == 130, err
    assert "checkpoint saved" in err and "--resume" in err and "is killed by signal" not in err
    deadline = time.time() + 20
    while time.time() < deadline:  # the workers went away with the main process
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("DataLoader workers outlived the stopped run")
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert state["step"] == json.loads(lines[-1])["step"]  # nothing after the last logged step is lost
    resumed = ssl_cli("run", *ARGS, "--out", tmp_path / "run", "--resume", "--set", "train.num_workers=2",
                      "--set", "objective_kwargs.sleep_s=0")
    assert resumed.returncode == 0, resumed.stderr
