"""Two gloo processes on CPU take the same optimiser steps as one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = str(Path(__file__).with_name("_ddp_script.py"))


def _run(args: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    res = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.mark.parametrize("mode,accum", [("mse", 1), ("mse", 2), ("contrastive", 1)])
def test_two_processes_match_one(tmp_path: Path, mode: str, accum: int) -> None:
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    _run([SCRIPT, mode, str(one), str(accum)])
    _run(["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", SCRIPT, mode, str(two), str(accum)])
    a, b = torch.load(one), torch.load(two)
    assert a["world_size"] == 1 and b["world_size"] == 2
    assert a["losses"] == pytest.approx(b["losses"], rel=1e-4, abs=1e-5)
    assert a["losses"][-1] < a["losses"][0]
    for k in a["state"]:
        torch.testing.assert_close(a["state"][k], b["state"][k], rtol=1e-4, atol=1e-5, msg=k)


def test_gather_with_grad_is_identity_on_one_process() -> None:
    from ssl_core.distributed import gather_with_grad

    t = torch.randn(3, 2, requires_grad=True)
    out = gather_with_grad(t)
    out.sum().backward()
    assert out is t and torch.equal(t.grad, torch.ones(3, 2))
