"""Two gloo processes on CPU take the same optimiser steps as one process with the same global
batch, under DDP and under FSDP, and an FSDP run resumes exactly after a crash.

All 2-process runs share one launch (``two``); the 1-process references run in this process.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from ssl_core.equivalence import run_ranks
from ssl_core.errors import ConfigError

SCRIPT = Path(__file__).with_name("_ddp_script.py")
CASES = [("mse", 1, "ddp"), ("mse", 2, "ddp"), ("contrastive", 1, "ddp"),
         ("mse", 2, "fsdp"), ("contrastive", 1, "fsdp"), ("ema", 1, "fsdp")]


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("_ddp_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every 2-process run of this file, in one launch of two gloo ranks (the runs go one after the
    other in the same group): the cases of ``CASES``, a stream of unequal shards, and an FSDP run
    that crashes after step 4 and is then resumed from its checkpoint by a new Trainer."""
    tmp = tmp_path_factory.mktemp("ddp")
    jobs = {f"{m}-{a}-{s}": {"mode": m, "accum": a, "strategy": s} for m, a, s in CASES}
    jobs["stream"] = {"mode": "stream"}
    crash_dir = str(tmp / "crash")
    jobs["crashed"] = {"mode": "ema", "strategy": "fsdp", "run_dir": crash_dir, "crash_at": 4}
    jobs["resumed"] = {"mode": "ema", "strategy": "fsdp", "run_dir": crash_dir}
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    run_ranks([str(SCRIPT), str(tmp / "jobs.json"), str(tmp / "out.pt")], nproc=2, timeout_s=600, check=True)
    return {**torch.load(tmp / "out.pt", weights_only=False), "crash_dir": Path(crash_dir)}


@pytest.fixture(scope="module")
def one() -> dict:
    """The 1-process references, trained in this process (no process group: the Trainer runs
    single-process whatever ``strategy`` says, so the FSDP cases share the DDP ones' reference)."""
    script = _script()
    return {(m, a): script.train(m, a) for m, a in {(m, a) for m, a, _ in CASES}}


def _assert_same(a: dict, b: dict) -> None:
    assert a["losses"] == pytest.approx(b["losses"], rel=1e-4, abs=1e-5)
    assert set(a["state"]) == set(b["state"])
    for k in a["state"]:
        torch.testing.assert_close(a["state"][k], b["state"][k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.parametrize("mode,accum,strategy", CASES)
def test_two_processes_match_one(one: dict, two: dict, mode: str, accum: int, strategy: str) -> None:
    a, b = one[(mode, accum)], two[f"{mode}-{accum}-{strategy}"]
    assert a["world_size"] == 1 and b["world_size"] == 2
    assert b["sharded"] == (strategy == "fsdp")
    assert a["losses"][6] < a["losses"][1]
    _assert_same(a, b)
    if mode == "contrastive":  # the replicated 0-dim temperature learned the same value
        assert a["state"]["log_inv_t"].dim() == 0 and float(a["state"]["log_inv_t"]) != 0.7
    if mode == "ema":  # the teacher moved with the student, and is not the student
        s = a["state"]
        assert not torch.equal(s["teacher.net.0.weight"], s["encoder.net.0.weight"])


def test_fsdp_run_resumes_exactly_after_a_crash(two: dict) -> None:
    """The crashed run left its step-3 checkpoint (full tensors under their usual names); a new
    Trainer resumed from it ends where the uninterrupted run (no checkpoints) ends."""
    crashed, full, resumed = two["crashed"], two["ema-1-fsdp"], two["resumed"]
    assert crashed["crashed"] == "simulated crash after step 4"
    ckpt = crashed["checkpoint"]
    assert ckpt["step"] == 3 and ckpt["optimizer_format"] == "by_name"
    assert ckpt["shapes"]["encoder.net.0.weight"] == (32, 8)  # full tensors under their usual names
    assert resumed["resumed"] and sorted(resumed["losses"]) == [4, 5, 6]  # only the steps after the checkpoint
    assert all(resumed["losses"][s] == pytest.approx(full["losses"][s], rel=1e-5) for s in (4, 5, 6))
    for k in full["state"]:
        torch.testing.assert_close(full["state"][k], resumed["state"][k], rtol=1e-5, atol=1e-6, msg=k)


def test_fsdp_checkpoint_does_not_resume_as_a_single_process(two: dict, tmp_path: Path) -> None:
    """The resumed FSDP run's last checkpoint, read by one process with train.strategy=ddp."""
    run_dir = tmp_path / "copy"
    shutil.copytree(two["crash_dir"], run_dir)
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["optimizer_format"] == "by_name"
    with pytest.raises(ConfigError, match="written by a FSDP run.*same train.strategy"):
        _script().train("ema", 1, "ddp", str(run_dir))


def test_two_processes_stream_shards_of_unequal_length_without_hanging(two: dict) -> None:
    """3 shards over 2 ranks: rank 1 runs dry first, and both ranks start the next epoch together."""
    b = two["stream"]
    # 256 rows in 3 shards of ~85; 32 rows per rank per step; the 1-shard rank has 2 steps' worth
    assert b["epochs"] == [0, 0, 1, 1, 2, 2]
    assert all(v == v for v in b["losses"].values())


def test_gather_with_grad_is_identity_on_one_process() -> None:
    from ssl_core.distributed import gather_with_grad

    t = torch.randn(3, 2, requires_grad=True)
    out = gather_with_grad(t)
    out.sum().backward()
    assert out is t and torch.equal(t.grad, torch.ones(3, 2))
