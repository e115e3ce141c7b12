"""Two gloo processes on CPU take the same optimiser steps as one process with the same global
batch, under DDP and under FSDP, and an FSDP run resumes exactly after a crash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = str(Path(__file__).with_name("_ddp_script.py"))
TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def _run(args: list[str], ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    res = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)
    if ok:
        assert res.returncode == 0, res.stderr[-3000:]
    return res


def _assert_same(a: dict, b: dict) -> None:
    assert a["losses"] == pytest.approx(b["losses"], rel=1e-4, abs=1e-5)
    assert set(a["state"]) == set(b["state"])
    for k in a["state"]:
        torch.testing.assert_close(a["state"][k], b["state"][k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.parametrize("mode,accum,strategy", [
    ("mse", 1, "ddp"), ("mse", 2, "ddp"), ("contrastive", 1, "ddp"),
    ("mse", 2, "fsdp"), ("contrastive", 1, "fsdp"), ("ema", 1, "fsdp"),
])
def test_two_processes_match_one(tmp_path: Path, mode: str, accum: int, strategy: str) -> None:
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    _run([SCRIPT, mode, str(one), str(accum), strategy])
    _run([*TORCHRUN, SCRIPT, mode, str(two), str(accum), strategy])
    a, b = torch.load(one), torch.load(two)
    assert a["world_size"] == 1 and b["world_size"] == 2
    assert b["sharded"] == (strategy == "fsdp")
    assert a["losses"][6] < a["losses"][1]
    _assert_same(a, b)
    if mode == "contrastive":  # the replicated 0-dim temperature learned the same value
        assert a["state"]["log_inv_t"].dim() == 0 and float(a["state"]["log_inv_t"]) != 0.7
    if mode == "ema":  # the teacher moved with the student, and is not the student
        s = a["state"]
        assert not torch.equal(s["teacher.net.0.weight"], s["encoder.net.0.weight"])


def test_fsdp_run_resumes_exactly_after_a_crash(tmp_path: Path) -> None:
    full, resumed = tmp_path / "full.pt", tmp_path / "resumed.pt"
    _run([*TORCHRUN, SCRIPT, "ema", str(full), "1", "fsdp", str(tmp_path / "a")])
    crashed = _run([*TORCHRUN, SCRIPT, "ema", str(resumed), "1", "fsdp", str(tmp_path / "b"), "4"], ok=False)
    assert crashed.returncode != 0 and "simulated crash after step 4" in crashed.stderr
    ckpt = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["step"] == 3 and ckpt["optimizer_format"] == "by_name"
    assert "encoder.net.0.weight" in ckpt["objective"]  # full tensors under their usual names
    assert ckpt["objective"]["encoder.net.0.weight"].shape == (32, 8)
    _run([*TORCHRUN, SCRIPT, "ema", str(resumed), "1", "fsdp", str(tmp_path / "b")])
    a, b = torch.load(full), torch.load(resumed)
    assert sorted(b["losses"]) == [4, 5, 6]  # only the steps after the checkpoint ran again
    assert all(b["losses"][s] == pytest.approx(a["losses"][s], rel=1e-5) for s in (4, 5, 6))
    for k in a["state"]:
        torch.testing.assert_close(a["state"][k], b["state"][k], rtol=1e-5, atol=1e-6, msg=k)


def test_fsdp_checkpoint_does_not_resume_as_a_single_process(tmp_path: Path) -> None:
    _run([*TORCHRUN, SCRIPT, "mse", str(tmp_path / "x.pt"), "1", "fsdp", str(tmp_path / "r"), "4"], ok=False)
    res = _run([SCRIPT, "mse", str(tmp_path / "y.pt"), "1", "ddp", str(tmp_path / "r")], ok=False)
    assert res.returncode != 0
    assert "written by a FSDP run" in res.stderr and "same train.strategy" in res.stderr


def test_two_processes_stream_shards_of_unequal_length_without_hanging(tmp_path: Path) -> None:
    """3 shards over 2 ranks: rank 1 runs dry first, and both ranks start the next epoch together."""
    _run([*TORCHRUN, SCRIPT, "stream", str(tmp_path / "s.pt")])
    b = torch.load(tmp_path / "s.pt")
    # 256 rows in 3 shards of ~85; 32 rows per rank per step; the 1-shard rank has 2 steps' worth
    assert b["epochs"] == [0, 0, 1, 1, 2, 2]
    assert all(v == v for v in b["losses"].values())


def test_gather_with_grad_is_identity_on_one_process() -> None:
    from ssl_core.distributed import gather_with_grad

    t = torch.randn(3, 2, requires_grad=True)
    out = gather_with_grad(t)
    out.sum().backward()
    assert out is t and torch.equal(t.grad, torch.ones(3, 2))
