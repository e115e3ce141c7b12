"""Trains a small model for a few steps; run directly (1 process) or under torchrun (N processes).

    python tests/core/_ddp_script.py MODE OUT.pt [ACCUM] [STRATEGY] [RUN_DIR] [CRASH_AT]
    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/core/_ddp_script.py MODE OUT.pt ...

MODE ``mse``: per-sample loss; ``contrastive``: InfoNCE whose negatives are gathered from every
rank with gradients and a learned 0-dim temperature; ``stream``: ``mse`` on a 3-shard stream (ranks get unequal shares);
``ema``: regression onto a frozen EMA teacher (BYOL-style), so sharded
student and teacher weights must line up. STRATEGY is ``ddp`` or ``fsdp``. With RUN_DIR the run
checkpoints every 3 steps there; CRASH_AT > 0 raises after that step (a simulated crash), and a
later call with the same RUN_DIR resumes. Rank 0 saves the final state dict and the losses to OUT.
"""

from __future__ import annotations

import copy
import sys

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


def main() -> None:
    mode, out = sys.argv[1], sys.argv[2]
    accum = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    strategy = sys.argv[4] if len(sys.argv) > 4 else "ddp"
    run_dir = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] != "-" else None
    crash_at = int(sys.argv[6]) if len(sys.argv) > 6 else 0
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
    result = trainer.fit(resume=resume)
    state = trainer.full_objective_state()  # collective under FSDP
    if trainer.is_main:
        torch.save({"state": state, "losses": {r["step"]: r["loss"] for r in result.history},
                    "epochs": [r["epoch"] for r in result.history],
                    "world_size": trainer.world_size, "sharded": trainer.fsdp is not None}, out)
    D.shutdown()


if __name__ == "__main__":
    main()
