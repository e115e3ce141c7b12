"""Trains a small model for a few steps: in-process on 1 process (:func:`train`), or as a batch of
runs on N ranks of one gloo group, started by ``ssl_core.equivalence.run_ranks`` or torchrun.

    python tests/core/_ddp_script.py JOBS.json OUT.pt

JOBS.json maps a name to :func:`train`'s keyword arguments; the jobs run one after the other in
the same process group (one launch pays the interpreter start and ``import torch`` once), and
rank 0 saves ``{name: result}`` to OUT.pt.

MODE ``mse``: per-sample loss; ``contrastive``: InfoNCE whose negatives are gathered from every
rank with gradients and a learned 0-dim temperature; ``stream``: ``mse`` on a 3-shard stream (ranks
get unequal shares); ``ema``: regression onto a frozen EMA teacher (BYOL-style), so sharded
student and teacher weights must line up. STRATEGY is ``ddp`` or ``fsdp``. With RUN_DIR the run
checkpoints every 3 steps there and resumes from a checkpoint it finds; CRASH_AT > 0 raises after
that step (a simulated crash: the job records the message and the checkpoint it left).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ssl_core import distributed as D
from ssl_core.config import TrainConfig
from ssl_core.interfaces import Objective
from ssl_core.trainer import Trainer
from ssl_core.interfaces import DataModule
from sslkit_testplugins.toy import IndexStream, MLPEncoder, gaussian_mixture


class PlainObjective(Objective):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.encoder = MLPEncoder(dropout=0.0)
        if mode == "contrastive":  # a learned 0-dim temperature, like CLIP's logit scale: FSDP replicates it
            self.log_inv_t = torch.nn.Parameter(torch.tensor(0.7))
        if mode == "ema":
            self.predictor = torch.nn.Sequential(torch.nn.Linear(16, 16))
            self.teacher = copy.deepcopy(self.encoder).requires_grad_(False)

    def teacher_modules(self):  # type: ignore[no-untyped-def]
        return [self.teacher] if self.mode == "ema" else []

    def training_step(self, batch, step):  # type: ignore[no-untyped-def]
        x = batch["x"]
        if self.mode in ("mse", "stream"):
            return {"loss": (self.encoder(x) - x.sum(1, keepdim=True)).pow(2).mean()}
        if self.mode == "ema":
            with torch.no_grad():
                target = F.normalize(self.teacher(0.9 * x), dim=1)
            online = F.normalize(self.predictor(self.encoder(x)), dim=1)
            return {"loss": (2 - 2 * (online * target).sum(1)).mean()}
        # two deterministic "views": the point and the point scaled; negatives from all ranks
        z1 = F.normalize(self.encoder(x), dim=1)
        z2 = F.normalize(self.encoder(0.9 * x), dim=1)
        all_z2 = D.gather_with_grad(z2)
        logits = z1 @ all_z2.T * self.log_inv_t.exp()
        targets = torch.arange(z1.shape[0]) + D.rank() * z1.shape[0]
        return {"loss": F.cross_entropy(logits, targets)}

    @torch.no_grad()
    def on_after_optimizer_step(self, step) -> None:  # type: ignore[no-untyped-def]
        if self.mode == "ema":
            for t, s in zip(self.teacher.parameters(), self.encoder.parameters()):
                t.mul_(0.8).add_(s, alpha=0.2)


def train(mode: str, accum: int = 1, strategy: str = "ddp", run_dir: str | None = None,
          crash_at: int = 0) -> dict[str, Any]:
    """One run of :class:`PlainObjective` (6 steps, global batch 64) on this process's group (or
    alone); the losses by step, the full final state (on rank 0 under FSDP) and what was run."""
    torch.manual_seed(0)
    obj = PlainObjective(mode)
    cfg = TrainConfig(steps=6, batch_size=64, grad_accum=accum, lr=0.05, optimizer="sgd", weight_decay=0.0,
                      warmup_fraction=0.0, log_every=1, health_every=0, checkpoint_every=3 if run_dir else 0,
                      progress=False, device="cpu", strategy=strategy, fsdp_min_params=1,
                      clip_grad=None if mode in ("mse", "stream") else 0.5)

    def crash(record: dict) -> None:
        if crash_at and record["step"] == crash_at:
            raise RuntimeError(f"simulated crash after step {crash_at}")

    data = gaussian_mixture()
    if mode == "stream":
        data = DataModule(train=IndexStream(data.train.fields["x"], shards=3))  # type: ignore[attr-defined]
    trainer = Trainer(obj, data, cfg, run_dir, callbacks=[crash])
    resume = bool(run_dir) and (trainer.checkpoint_path is not None and trainer.checkpoint_path.exists())
    try:
        result = trainer.fit(resume=resume)
    except RuntimeError as exc:  # raised on every rank at the same step, so no collective is left half-done
        if not str(exc).startswith("simulated crash"):
            raise
        saved = torch.load(trainer.checkpoint_path, weights_only=False) if trainer.is_main else {}
        return {"crashed": str(exc), "checkpoint": {
            "step": saved.get("step"), "optimizer_format": saved.get("optimizer_format"),
            "shapes": {k: tuple(v.shape) for k, v in saved.get("objective", {}).items()}}}
    state = trainer.full_objective_state()  # collective under FSDP
    return {"state": state, "losses": {r["step"]: r["loss"] for r in result.history},
            "epochs": [r["epoch"] for r in result.history], "resumed": resume,
            "world_size": trainer.world_size, "sharded": trainer.fsdp is not None}


def main() -> None:
    jobs, out = json.loads(Path(sys.argv[1]).read_text()), sys.argv[2]
    results = {name: train(**kwargs) for name, kwargs in jobs.items()}
    if D.is_main_process():
        torch.save(results, out)
    D.shutdown()


if __name__ == "__main__":
    main()
