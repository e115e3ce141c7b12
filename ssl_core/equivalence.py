"""Distributed equivalence: an objective on N processes at global batch B takes the steps it
takes on one process at B.

Used by :func:`ssl_core.testing.check_distributed_equivalence` (plugin authors) and by sslkit's
own tests over every built-in objective. :func:`run_equivalence` starts ``nproc`` fresh Python
processes that join one gloo process group on this machine (CPU only, no GPU needed). For each
case every process builds the objective from its registry recipe, exactly as ``ssl run`` would,
with the same seed. Then:

1. Rank 0, before the group exists, runs the reference: ``steps`` optimiser steps on the whole
   batch of the first B training samples (plain SGD, so differences are not amplified), keeping
   the loss and every gradient of each step and the final state dict (parameters and buffers:
   EMA teachers, centres, BatchNorm statistics), and a short :class:`~ssl_core.trainer.Trainer`
   run of the recipe's own training settings.
2. All ranks then do the same under the Trainer's DDP strategy, each on its contiguous slice of
   the batch (collated on its own, as the Trainer's sampler deals it), and the same Trainer run.

Rank 0 compares and reports, per case, the per-step losses, the worst relative gradient error
``|g_N - g_1| / |g_1|`` over parameters and steps (with a floor for gradients that are only
rounding noise: :data:`GRAD_FLOOR`), the worst relative state error, and the
Trainer's losses. What cannot match by design: draws from the global RNG inside the network
(dropout, stochastic depth), which differ between ranks on purpose. Run the check with dropout 0.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

LOSS_RTOL = 1e-4
"""Stated tolerance on each step's loss: ``|l_N - l_1| <= LOSS_RTOL * max(1, |l_1|)``."""
GRAD_RTOL = 2e-3
"""Stated tolerance on each parameter's gradient: ``|g_N - g_1| <= GRAD_RTOL * (|g_1| +
GRAD_FLOOR * |G_1|)``, Frobenius norms, ``G_1`` the whole one-process gradient of the step."""
GRAD_FLOOR = 5e-3
"""Floor of the gradient tolerance, as a fraction of the whole gradient: the check allows an
absolute difference of ``GRAD_RTOL * GRAD_FLOOR = 1e-5`` of ``|G_1|`` (about 80 float32 rounding
units) on every parameter. A gradient that is zero in exact arithmetic, such as a conv bias
before BatchNorm, holds only rounding noise, which differs between 1 and N processes by
1e-7 to 3e-7 of ``|G_1|`` (measured on the example time-series CNN); its relative error is
100%, and means nothing. A parameter this small moves training by nothing either."""
RELATIVE_FLOOR = 1e-4
"""Floor of the state tolerance, as a fraction of the whole state dict's norm."""
STATE_RTOL = 2e-3
"""Stated tolerance on each tensor of the final state dict: ``|s_N - s_1| <= STATE_RTOL * (|s_1| +
RELATIVE_FLOOR * |S_1|)`` (integer buffers must be equal)."""
TRAINER_FIRST_LOSS_RTOL = 1e-4
"""The Trainer's first-step loss (before any update) must match as tightly as a plain step."""


@dataclass
class EquivalenceCase:
    """One objective to check: its registry name, config overrides and global batch size."""

    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = 8
    steps: int = 2
    """Plain optimiser steps compared tensor by tensor (2: the second shows state kept in sync)."""
    lr: float = 0.01
    trainer_steps: int = 3
    """Steps of the recipe's own Trainer run on 1 and on N processes (0: skip)."""


@dataclass
class EquivalenceResult:
    """What one case measured (one process vs ``nproc`` processes)."""

    name: str
    nproc: int
    losses_one: list[float] = field(default_factory=list)
    losses_many: list[float] = field(default_factory=list)
    grad_error: float = float("nan")
    """Worst ``|g_N - g_1| / (|g_1| + GRAD_FLOOR * |G_1|)`` over parameters and steps."""
    grad_worst: str = ""
    state_error: float = float("nan")
    state_worst: str = ""
    mismatched: list[str] = field(default_factory=list)
    """Parameters with a gradient on one side only, or state keys present on one side only."""
    trainer_losses_one: list[float] = field(default_factory=list)
    trainer_losses_many: list[float] = field(default_factory=list)
    error: str | None = None

    def problems(self, loss_rtol: float = LOSS_RTOL, grad_rtol: float = GRAD_RTOL,
                 state_rtol: float = STATE_RTOL) -> list[str]:
        """Human-readable reasons the case fails the stated tolerances (empty when it passes)."""
        if self.error:
            return [f"raised on {self.nproc} processes or on one: {self.error}"]
        out = []
        for step, (a, b) in enumerate(zip(self.losses_one, self.losses_many)):
            if not abs(a - b) <= loss_rtol * max(1.0, abs(a)):
                out.append(f"step {step} loss {b:.6g} on {self.nproc} processes vs {a:.6g} on one")
        if not self.grad_error <= grad_rtol:
            out.append(f"gradient of '{self.grad_worst}' differs by {self.grad_error:.3g} (relative)")
        if not self.state_error <= state_rtol:
            out.append(f"state '{self.state_worst}' differs by {self.state_error:.3g} (relative) after "
                       f"{len(self.losses_one)} steps")
        if self.mismatched:
            out.append("present on one side only: " + ", ".join(self.mismatched[:5]))
        if self.trainer_losses_one and self.trainer_losses_many:
            a, b = self.trainer_losses_one[0], self.trainer_losses_many[0]
            if not abs(a - b) <= TRAINER_FIRST_LOSS_RTOL * max(1.0, abs(a)):
                out.append(f"Trainer's first-step loss {b:.6g} on {self.nproc} processes vs {a:.6g} on one")
        if any(v != v for v in self.trainer_losses_many):
            out.append(f"Trainer run on {self.nproc} processes gave a NaN loss: {self.trainer_losses_many}")
        return out


# ------------------------------------------------------------------------------- launching
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_ranks(args: Sequence[str], nproc: int = 2, timeout_s: float = 1200.0,
              env: Mapping[str, str] | None = None, check: bool = False,
              ) -> tuple[list[subprocess.CompletedProcess], bool]:
    """Run ``python ARGS`` as ``nproc`` ranks of one process group on this machine and wait.

    Each process gets the environment torchrun would give it (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``/``MASTER_PORT`` of a free local port), without torchrun's own process. When a
    rank fails or ``timeout_s`` passes, the others are killed: a rank left waiting for a failed
    peer would wait for its collective timeout (30 minutes). Returns each rank's result (exit
    status, stdout and stderr merged into ``stdout``) and whether the time ran out; with ``check``,
    raises ``RuntimeError`` with the end of every rank's output instead when a rank failed or
    the time ran out.
    """
    base = {**os.environ, **(env or {}), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
            "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "TQDM_DISABLE": "1"}
    cmd = [sys.executable, *args]
    with tempfile.TemporaryDirectory(prefix="sslkit-ranks-") as tmp:
        logs = [open(Path(tmp) / f"rank{r}.log", "w+", encoding="utf-8") for r in range(nproc)]
        procs = [subprocess.Popen(cmd, env={**base, "RANK": str(r), "LOCAL_RANK": str(r)},
                                  stdout=logs[r], stderr=subprocess.STDOUT)
                 for r in range(nproc)]
        deadline = time.monotonic() + timeout_s
        timed_out = False
        try:
            while any(p.poll() is None for p in procs):
                if any(p.returncode not in (None, 0) for p in procs):
                    break
                if time.monotonic() > deadline:
                    timed_out = True
                    break
                time.sleep(0.1)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        results = []
        for r, log in enumerate(logs):
            log.seek(0)
            results.append(subprocess.CompletedProcess(cmd, procs[r].returncode, log.read(), ""))
            log.close()
    if check and (timed_out or any(r.returncode != 0 for r in results)):
        raise RuntimeError(_ranks_failed(results, timed_out))
    return results, timed_out


def _ranks_failed(ranks: Sequence[subprocess.CompletedProcess], timed_out: bool) -> str:
    tails = [f"--- rank {i} (exit {r.returncode}) ---\n{r.stdout[-3000:]}" for i, r in enumerate(ranks)]
    return f"The processes {'timed out' if timed_out else 'failed'}:\n" + "\n".join(tails)


def run_equivalence(cases: Sequence[EquivalenceCase], nproc: int = 2, timeout_s: float = 1200.0,
                    seed: int = 0) -> list[EquivalenceResult]:
    """Run every case on ``nproc`` gloo processes (one launch) and return rank 0's measurements.

    The processes are fresh interpreters: objectives must be registered through an installed
    plugin (entry point). Raises ``RuntimeError`` with the processes' output when they fail.
    """
    with tempfile.TemporaryDirectory(prefix="sslkit-equivalence-") as tmp:
        spec, out = Path(tmp) / "cases.json", Path(tmp) / "results.json"
        spec.write_text(json.dumps({"seed": seed, "cases": [asdict(c) for c in cases]}))
        ranks, timed_out = run_ranks(["-m", "ssl_core.equivalence", str(spec), str(out)], nproc, timeout_s)
        if any(r.returncode != 0 for r in ranks) or not out.exists():
            raise RuntimeError("distributed equivalence: " + _ranks_failed(ranks, timed_out))
        return [EquivalenceResult(**r) for r in json.loads(out.read_text())]


# ------------------------------------------------------------------------------- one process
def _relative_errors(ref: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor],
                     result: EquivalenceResult, kind: str, floor_frac: float) -> tuple[float, str]:
    """Worst ``|b - a| / (|a| + floor_frac * |A|)`` over tensors (``A``: all of ``ref``'s float
    tensors); tensors on one side only, or of different shapes, are listed in ``result.mismatched``."""
    floats = [v.detach().double().norm() for v in ref.values() if v.is_floating_point()]
    floor = floor_frac * float(torch.stack(floats).norm()) if floats else 0.0
    worst, where = 0.0, ""
    for name in sorted(set(ref) | set(got)):
        if name not in ref or name not in got:
            result.mismatched.append(f"{kind} '{name}'")
            continue
        a, b = ref[name].detach().double().cpu(), got[name].detach().double().cpu()
        if a.shape != b.shape:
            result.mismatched.append(f"{kind} '{name}' shape {tuple(b.shape)} vs {tuple(a.shape)}")
            continue
        if a.is_floating_point():
            # the floor: a tensor that is zero in exact arithmetic holds rounding noise, whose
            # relative error means nothing (see GRAD_FLOOR)
            err = float((a - b).norm() / (a.norm() + floor + 1e-12))
        else:
            err = float(not torch.equal(a, b))
        if err > worst or not where:
            worst, where = err, name
    return worst, where


def _batch(data: Any, first: int, count: int) -> dict[str, Any]:
    from ssl_core.data import default_collate

    return (data.collate or default_collate)([data.train[i] for i in range(first, first + count)])


def _plain_steps(objective: Any, strategy: Any, batch: dict[str, Any], case: EquivalenceCase, seed: int,
                 rank: int, shard: Any) -> tuple[list[float], list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """``case.steps`` SGD steps through ``strategy``; (mean losses, gradients per step, final state)."""
    from ssl_core.interfaces import StepInfo
    from ssl_core.randomness import StepGenerator
    from ssl_core.trainer import step_seed

    strategy.setup(objective)
    objective.train()
    params = [p for g in objective.param_groups(0.0) for p in g["params"]]
    opt = torch.optim.SGD(params, lr=case.lr)
    gen = StepGenerator("cpu", shard)
    losses, grads = [], []
    for step in range(case.steps):
        gen.manual_seed(step_seed(seed, step))
        torch.manual_seed(step_seed(seed, step, rank))
        info = StepInfo(step, 100, 0, gen, torch.device("cpu"))
        out = strategy.step_fn(batch, info)
        out["loss"].backward()
        strategy.after_backward()
        losses.append(float(strategy.sum_over_ranks(out["loss"].detach().float()) / strategy.world_size))
        grads.append({n: p.grad.detach().clone() for n, p in objective.named_parameters() if p.grad is not None})
        objective.on_before_optimizer_step(info)
        opt.step()
        opt.zero_grad(set_to_none=True)
        objective.on_after_optimizer_step(info)
    state = {k: v.detach().clone() for k, v in objective.state_dict().items()}
    return losses, grads, state


def _trainer_losses(objective: Any, data: Any, cfg: Any, case: EquivalenceCase, strategy: Any) -> list[float]:
    from ssl_core.trainer import Trainer

    train = copy.deepcopy(cfg.train)
    train.steps, train.epochs, train.batch_size = case.trainer_steps, None, case.batch_size
    train.log_every, train.health_every, train.probe_every, train.checkpoint_every = 1, 0, 0, 0
    train.progress, train.num_workers, train.device, train.precision = False, 0, "cpu", "fp32"
    result = Trainer(objective, data, train, run_dir=None, strategy=strategy).fit()
    return [float(r["loss"]) for r in result.history]


def _worker(spec_path: str, out_path: str) -> None:
    import torch.distributed as dist

    from ssl_core import distributed as D
    from ssl_core.randomness import BatchShard
    from ssl_core.strategies.single import SingleProcess
    from ssl_core.testing import ObjectiveHarness

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    spec = json.loads(Path(spec_path).read_text())
    seed = int(spec["seed"])
    cases = [EquivalenceCase(**c) for c in spec["cases"]]
    built: list[Any] = []
    results = [EquivalenceResult(c.name, world) for c in cases]
    refs: list[Any] = [None] * len(cases)
    for i, case in enumerate(cases):
        try:
            h = ObjectiveHarness(case.name, case.overrides, case.batch_size)
            one = h.build(seed)
            originals = (copy.deepcopy(one.objective), copy.deepcopy(one.objective))
            built.append((h, one.data, originals))
            if rank == 0:  # the reference, before any process group exists
                cpu = torch.device("cpu")
                whole = BatchShard(0, case.batch_size, case.batch_size)
                refs[i] = _plain_steps(one.objective, SingleProcess(cpu), _batch(one.data, 0, case.batch_size),
                                       case, seed, 0, whole)
                if case.trainer_steps:
                    results[i].trainer_losses_one = _trainer_losses(copy.deepcopy(originals[1]), one.data, h.cfg,
                                                                    case, SingleProcess(cpu))
        except Exception:
            built.append(None)
            results[i].error = "one process: " + traceback.format_exc(limit=6)
    D.init_from_env("cpu")
    for i, case in enumerate(cases):
        if built[i] is None:
            continue
        h, data, (objective, trainer_objective) = built[i]
        try:
            from ssl_core.strategies.ddp import DDPStrategy

            if case.batch_size % world:
                raise ValueError(f"batch_size {case.batch_size} is not divisible by {world} processes")
            m = case.batch_size // world
            losses, grads, state = _plain_steps(objective, DDPStrategy(torch.device("cpu"), h.cfg.train),
                                                _batch(data, rank * m, m), case, seed, rank,
                                                BatchShard(rank * m, m, case.batch_size))
            if case.trainer_steps:
                results[i].trainer_losses_many = _trainer_losses(trainer_objective, data, h.cfg, case, None)
            if rank == 0 and refs[i] is not None:
                r = results[i]
                ref_losses, ref_grads, ref_state = refs[i]
                r.losses_one, r.losses_many = ref_losses, losses
                errs = [_relative_errors(a, b, r, f"step {s} gradient", GRAD_FLOOR)
                        for s, (a, b) in enumerate(zip(ref_grads, grads))]
                r.grad_error, r.grad_worst = max(errs) if errs else (0.0, "")
                r.state_error, r.state_worst = _relative_errors(ref_state, state, r, "state", RELATIVE_FLOOR)
        except Exception:
            results[i].error = f"{world} processes (rank {rank}): " + traceback.format_exc(limit=6)
        dist.barrier()  # ranks stay in step even when a case raised on both
    if rank == 0:
        Path(out_path).write_text(json.dumps([asdict(r) for r in results]))
    D.shutdown()


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
