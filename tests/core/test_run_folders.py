"""One run, one folder: no fresh run mixes into an old one, and one process writes a run at a time."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ssl_core.errors import ConfigError, RunDirError
from ssl_core.rundir import LOCK_FILE, RunLock, check_fresh_run_dir

RUN = ["-o", "toy_align", "--steps", "4", "--no-eval", "--set", "train.log_every=1"]


def _metrics(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_fresh_run_into_a_run_folder_is_refused(tmp_path: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    assert ssl_cli("run", *RUN, "--out", out).returncode == 0
    config, metrics = (out / "config.yaml").read_text(), (out / "metrics.jsonl").read_text()
    res = ssl_cli("run", *RUN, "--out", out, "--seed", "3")
    assert res.returncode == 2
    assert f"{out} already holds a run" in res.stderr and "--resume" in res.stderr and "--overwrite" in res.stderr
    assert (out / "config.yaml").read_text() == config and (out / "metrics.jsonl").read_text() == metrics


def test_overwrite_clears_the_old_run(tmp_path: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    assert ssl_cli("run", *RUN, "--out", out).returncode == 0
    (out / "eval.json").write_text("{}")  # left-overs of the old run must not survive
    (out / "nn_grid.png").write_bytes(b"old picture")
    res = ssl_cli("run", *RUN, "--out", out, "--overwrite", "--steps", "3")
    assert res.returncode == 0, res.stderr
    assert _metrics(out) == [1, 2, 3]
    assert not (out / "eval.json").exists() and not (out / "nn_grid.png").exists()
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["steps"] == 3
    assert not (out / LOCK_FILE).exists()  # released at the end


def test_a_folder_that_is_not_a_run_is_never_cleared(tmp_path: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "holiday.jpg").write_bytes(b"precious")
    res = ssl_cli("run", *RUN, "--out", tmp_path, "--overwrite")
    assert res.returncode == 2 and "does not hold an sslkit run (holiday.jpg)" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["holiday.jpg"]
    for overwrite in (False, True):
        with pytest.raises(RunDirError, match="does not hold an sslkit run"):
            check_fresh_run_dir(tmp_path, overwrite=overwrite)
    assert (tmp_path / "holiday.jpg").read_bytes() == b"precious"
    with pytest.raises(ConfigError, match="pass only one"):
        check_fresh_run_dir(tmp_path, resume=True, overwrite=True)


def test_a_saved_config_does_not_reuse_its_run_folder(tmp_path: Path, ssl_cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    first = Path("runs/first")
    assert ssl_cli("run", *RUN, "--out", first).returncode == 0
    before = (first / "metrics.jsonl").read_text()
    res = ssl_cli("run", "--config", first / "config.yaml", "--no-eval")
    assert res.returncode == 0, res.stderr
    assert (first / "metrics.jsonl").read_text() == before
    new = [p for p in Path("runs").iterdir() if p.name != "first"]
    assert len(new) == 1 and (new[0] / "encoder.pt").exists() and str(new[0]) in res.stderr
    # a hand-written config's out is honoured
    (tmp_path / "mine.yaml").write_text("objective: toy_align\nout: runs/mine\ntrain:\n  steps: 2\n")
    assert ssl_cli("run", "--config", tmp_path / "mine.yaml", "--no-eval").returncode == 0
    assert (tmp_path / "runs/mine/encoder.pt").exists()


def _hold_lock_in_another_process(run: Path) -> subprocess.Popen:
    code = ("import sys, time; from ssl_core.rundir import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('locked', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_process_cannot_write_a_locked_run_and_a_dead_holder_is_taken_over(tmp_path: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    holder = _hold_lock_in_another_process(out)
    try:
        res = ssl_cli("run", *RUN, "--out", out)
        assert res.returncode == 2
        assert f"pid {holder.pid} on host {socket.gethostname()}" in res.stderr and "in use" in res.stderr
        assert not (out / "config.yaml").exists()
        assert ssl_cli("eval", out).returncode == 2  # nor evaluate it meanwhile
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding it: the lock file stays behind
        holder.wait()
    assert (out / LOCK_FILE).exists()
    with pytest.warns(UserWarning, match=f"no longer running \\(pid {holder.pid} on host"):
        res = ssl_cli("run", *RUN, "--out", out)
    assert res.returncode == 0, res.stderr
    assert not (out / LOCK_FILE).exists()


def test_lock_is_released_when_the_run_fails(tmp_path: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    res = ssl_cli("run", *RUN, "--out", out, "--batch-size", "100000")
    assert res.returncode == 2 and "larger than the training data" in res.stderr
    assert not out.exists()  # nothing was written: no empty folder or lock file is left behind
    with RunLock(out):
        pass  # and it can be taken again


def test_only_rank_zero_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun the other ranks must not contend for (or be blocked by) rank 0's lock."""
    from ssl_core import runner

    ran: list[bool] = []
    monkeypatch.setattr(runner, "_run", lambda *a, **k: ran.append(True))
    cfg = runner.resolve_config("toy_align", overrides={"out": str(tmp_path)})
    with RunLock(tmp_path):  # rank 0 holds it
        monkeypatch.setenv("RANK", "1")
        runner.run_experiment(cfg)
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(RunDirError, match="in use"):
            runner.run_experiment(cfg)
    assert ran == [True]


def test_multi_process_launcher_checks_but_does_not_take_the_lock(tmp_path: Path, ssl_cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """`ssl run --nproc-per-node N` relaunches itself under torchrun; rank 0 of that launch must
    find the folder unlocked, and a folder in use or holding a run is refused before launching."""
    from ssl_core import launch

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    launched: list[list[str]] = []

    def fake_launch(nproc_per_node: int, argv: list[str]) -> int:
        launched.append(argv)
        assert not (tmp_path / "run" / LOCK_FILE).exists()  # the ranks would find it free
        return 0

    monkeypatch.setattr(launch, "launch", fake_launch)
    out = tmp_path / "run"
    assert ssl_cli("run", *RUN, "--nproc-per-node", "2", "--out", out).returncode == 0
    assert len(launched) == 1
    out.mkdir()
    (out / "config.yaml").write_text("objective: toy_align\n")  # as the ranks would have written
    with RunLock(out):
        res = ssl_cli("run", *RUN, "--nproc-per-node", "2", "--out", out, "--resume")
    assert res.returncode == 2 and "in use" in res.stderr and len(launched) == 1
    res = ssl_cli("run", *RUN, "--nproc-per-node", "2", "--out", out)
    assert res.returncode == 2 and "already holds a run" in res.stderr and len(launched) == 1


def test_compare_never_overwrites_silently(tmp_path: Path, ssl_cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):
        assert ssl_cli("run", *RUN, "--out", f"runs/{name}").returncode == 0
    out = tmp_path / "cmp"
    assert ssl_cli("compare", "runs/a", "runs/b", "--out", out).returncode == 0
    page = (out / "index.html").read_text()
    res = ssl_cli("compare", "runs/b", "runs/a", "--out", out)
    assert res.returncode == 2 and "--overwrite" in res.stderr
    assert (out / "index.html").read_text() == page
    assert ssl_cli("compare", "runs/b", "runs/a", "--out", out, "--overwrite").returncode == 0
    # without --out each comparison gets a folder of its own, named by the time (to the second):
    # the command's clock is made to tick a second between the calls instead of sleeping
    import datetime as dt
    import types

    from ssl_core.cli import report_cmd

    ticks = iter([dt.datetime(2026, 1, 2, 3, 4, 5), dt.datetime(2026, 1, 2, 3, 4, 6)])
    clock = types.SimpleNamespace(now=lambda *a, **k: next(ticks))
    monkeypatch.setattr(report_cmd, "_dt", types.SimpleNamespace(datetime=clock))
    assert ssl_cli("compare", "runs/a", "runs/b").returncode == 0
    assert ssl_cli("compare", "runs/a", "runs/b").returncode == 0
    assert sorted(p.name for p in Path("runs").glob("compare-*")) == ["compare-20260102-030405",
                                                                    "compare-20260102-030406"]


def test_experiment_follows_the_same_rules(tmp_path: Path) -> None:
    from sslkit_testplugins.toy import AlignUniform, MLPEncoder, NoiseViews, gaussian_mixture

    from ssl_core.experiment import Experiment

    def exp() -> Experiment:
        e = Experiment(train={"steps": 2, "batch_size": 32, "progress": False}, out=tmp_path / "exp")
        e.add_data("x", gaussian_mixture())
        e.add_objective("align", AlignUniform(MLPEncoder(), NoiseViews()), data="x")
        return e

    exp().fit()
    with pytest.raises(RunDirError, match="already holds a run"):
        exp().fit()
    assert exp().fit(overwrite=True).steps == 2
    assert not (tmp_path / "exp" / LOCK_FILE).exists()
    assert os.listdir(tmp_path / "exp")
