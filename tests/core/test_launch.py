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
from ssl_core.equivalence import run_ranks
from ssl_core.launch import rank_failures

RUN = ["run", "-o", "toy_align", "--nproc-per-node", "2", "--no-eval", "--set", "train.log_every=1"]


class _Job:
    """``ssl run ...`` in the background; its output goes to a file, so waiting for ``ssl`` does
    not wait for processes it may have left behind (they would keep a pipe open)."""

    def __init__(self, out: Path, *extra: str) -> None:
        env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-c", "from ssl_core.cli import main; main()", *RUN, "--out", str(out), *extra]
        self.log = out.parent / f"{out.name}-{time.monotonic_ns()}.log"
        with open(self.log, "w") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)

    def wait(self, timeout: float) -> tuple[int, str]:
        """(exit status, output); on a timeout the process is killed and the timeout re-raised."""
        try:
            status = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return status, self.log.read_text()


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


def _kill_all(out: Path) -> list[int]:
    """SIGKILL every process of this run that is still alive (so a failing test leaves none)."""
    left = _processes_mentioning(str(out))
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def _no_process_left(out: Path, grace_s: float = 10.0) -> None:
    deadline = time.monotonic() + grace_s
    while _processes_mentioning(str(out)) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _kill_all(out)
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
    job = _Job(out, "--steps", "40", "--set", "train.checkpoint_every=5",
               "--set", "objective_kwargs.fail_at_step=12", "--set", "objective_kwargs.fail_rank=1")
    try:
        status, log = job.wait(timeout=240)  # before the fix: the ranks waited 30 minutes
    finally:
        _no_process_left(out)
    assert status != 0
    assert "Rank 1 of 2 failed first: RuntimeError: toy_align: injected failure on rank 1 at step 12" in log, log[-3000:]
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 10  # the last good checkpoint is kept
    assert max(_metrics_steps(out)) <= 12


def test_sigterm_to_ssl_reaches_every_rank_which_checkpoint_then_resume(tmp_path: Path) -> None:
    out = tmp_path / "stopped"
    job = _Job(out, "--steps", "400", "--set", "train.checkpoint_every=1000", "--set", "objective_kwargs.sleep_s=0.05")
    deadline = time.monotonic() + 240
    while len(_metrics_steps(out)) < 3 and job.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    job.proc.send_signal(signal.SIGTERM)
    try:
        status, log = job.wait(timeout=90)
    finally:
        _no_process_left(out)  # before the fix: `ssl` exited 143 and both ranks kept training
    assert status == 130, log[-3000:]
    assert "SIGTERM passed on to all 2 ranks" in log
    stopped_at = load_checkpoint(out / "checkpoints" / "last.pt")["step"]
    assert 3 <= stopped_at < 400  # written on the signal (checkpoint_every is 1000)
    assert max(_metrics_steps(out)) == stopped_at

    # both ranks resume, as `ssl run --resume` does in each rank (the launch is tested above)
    jobs = [{"objective": None, "config_file": str(out / "config.yaml"), "resume": True, "evaluate": False,
             "overrides": {"out": str(out), "train": {"steps": stopped_at + 3}, "objective_kwargs": {"sleep_s": 0}}}]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    run_ranks([str(Path(__file__).with_name("_runs_script.py")), str(tmp_path / "jobs.json")], nproc=2,
              timeout_s=240, check=True)
    resumed = load_checkpoint(out / "checkpoints" / "last.pt")
    assert resumed["step"] == stopped_at + 3 and resumed["world_size"] == 2
    assert sorted(set(_metrics_steps(out))) == _metrics_steps(out)  # no step logged twice


def test_rank_failures_orders_by_time_and_skips_damaged_files(tmp_path: Path) -> None:
    for rank, stamp, text in ((0, 20, "RuntimeError: Connection closed by peer"), (1, 10, "ValueError: bad")):
        d = tmp_path / "run_x" / "attempt_0" / str(rank)
        d.mkdir(parents=True)
        (d / "error.json").write_text(json.dumps({"message": {"message": text, "extraInfo": {"timestamp": str(stamp)}}}))
    (tmp_path / "run_x" / "attempt_0" / "2").mkdir()
    (tmp_path / "run_x" / "attempt_0" / "2" / "error.json").write_text('{"message": ')
    assert rank_failures(tmp_path) == [(1, "ValueError: bad"), (0, "RuntimeError: Connection closed by peer")]
