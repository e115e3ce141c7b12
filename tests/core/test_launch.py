"""`ssl run --nproc-per-node 2` (two gloo ranks under torchrun): a failing rank ends the job
within seconds and is named; SIGTERM to `ssl` reaches every rank, which checkpoint and stop, and
the run resumes. Nothing is left running afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ssl_core.checkpoint import load_checkpoint
from ssl_core.launch import rank_failures

RUN = ["run", "-o", "toy_align", "--nproc-per-node", "2", "--no-eval", "--set", "train.log_every=1"]


def _ssl(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", "from ssl_core.cli import main; main()", *RUN, "--out", str(out), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (the run's unique --out path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _no_process_left(out: Path, grace_s: float = 10.0) -> None:
    deadline = time.monotonic() + grace_s
    while _processes_mentioning(str(out)) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _processes_mentioning(str(out))
    for pid in left:  # don't leave them running if the assertion below fails
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes still running after the job ended: {left}"


def _metrics_steps(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    steps = []
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue
    return steps


def test_a_failing_rank_ends_the_job_and_is_named(tmp_path: Path) -> None:
    out = tmp_path / "failing"
    proc = _ssl(out, "--steps", "40", "--set", "train.checkpoint_every=5",
                "--set", "objective_kwargs.fail_at_step=12", "--set", "objective_kwargs.fail_rank=1")
    try:
        _, err = proc.communicate(timeout=240)  # before the fix: the ranks waited 30 minutes
    finally:
        if proc.poll() is None:
            proc.kill()
    _no_process_left(out)
    assert proc.returncode not in (0, None)
    assert "Rank 1 of 2 failed first: RuntimeError: toy_align: injected failure on rank 1 at step 12" in err, err[-3000:]
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 10  # the last good checkpoint is kept
    assert max(_metrics_steps(out)) <= 12


def test_sigterm_to_ssl_reaches_every_rank_which_checkpoint_then_resume(tmp_path: Path) -> None:
    out = tmp_path / "stopped"
    proc = _ssl(out, "--steps", "400", "--set", "train.checkpoint_every=1000",
                "--set", "objective_kwargs.sleep_s=0.05")
    deadline = time.monotonic() + 240
    while len(_metrics_steps(out)) < 3:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "training did not start in time"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    _no_process_left(out)  # before the fix: `ssl` exited 143 and both ranks kept training
    assert proc.returncode == 130, err[-3000:]
    assert "SIGTERM passed on to all 2 ranks" in err
    stopped_at = load_checkpoint(out / "checkpoints" / "last.pt")["step"]
    assert 3 <= stopped_at < 400  # written on the signal (checkpoint_every is 1000)
    assert max(_metrics_steps(out)) == stopped_at

    resumed = _ssl(out, "--resume", "--steps", str(stopped_at + 3), "--set", "objective_kwargs.sleep_s=0")
    _, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err[-3000:]
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == stopped_at + 3
    assert sorted(set(_metrics_steps(out))) == _metrics_steps(out)  # no step logged twice


def test_rank_failures_orders_by_time_and_skips_damaged_files(tmp_path: Path) -> None:
    for rank, stamp, text in ((0, 20, "RuntimeError: Connection closed by peer"), (1, 10, "ValueError: bad")):
        d = tmp_path / "run_x" / "attempt_0" / str(rank)
        d.mkdir(parents=True)
        (d / "error.json").write_text(json.dumps({"message": {"message": text, "extraInfo": {"timestamp": str(stamp)}}}))
    (tmp_path / "run_x" / "attempt_0" / "2").mkdir()
    (tmp_path / "run_x" / "attempt_0" / "2" / "error.json").write_text('{"message": ')
    assert rank_failures(tmp_path) == [(1, "ValueError: bad"), (0, "RuntimeError: Connection closed by peer")]
