"""Trains a small model for a few steps; run directly (1 process) or under torchrun (N processes).

    python tests/core/_ddp_script.py MODE OUT.pt
    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/core/_ddp_script.py MODE OUT.pt

MODE ``mse``: per-sample loss; ``contrastive``: InfoNCE whose negatives are gathered from every
rank with gradients. Rank 0 saves the final state dict and the logged losses to OUT.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from ssl_core import distributed as D
from ssl_core.config import TrainConfig
from ssl_core.interfaces import Objective
from ssl_core.trainer import Trainer
from sslkit_testplugins.toy import MLPEncoder, gaussian_mixture


class PlainObjective(Objective):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.encoder = MLPEncoder(dropout=0.0)

    def training_step(self, batch, step):  # type: ignore[no-untyped-def]
        x = batch["x"]
        if self.mode == "mse":
            return {"loss": (self.encoder(x) - x.sum(1, keepdim=True)).pow(2).mean()}
        # two deterministic "views": the point and the point scaled; negatives from all ranks
        z1 = F.normalize(self.encoder(x), dim=1)
        z2 = F.normalize(self.encoder(0.9 * x), dim=1)
        all_z2 = D.gather_with_grad(z2)
        logits = z1 @ all_z2.T / 0.5
        targets = torch.arange(z1.shape[0]) + D.rank() * z1.shape[0]
        return {"loss": F.cross_entropy(logits, targets)}


def main() -> None:
    mode, out = sys.argv[1], sys.argv[2]
    accum = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    torch.manual_seed(0)
    obj = PlainObjective(mode)
    cfg = TrainConfig(steps=6, batch_size=64, grad_accum=accum, lr=0.05, optimizer="sgd", weight_decay=0.0,
                      warmup_fraction=0.0, log_every=1, health_every=0, checkpoint_every=0, progress=False,
                      device="cpu")
    trainer = Trainer(obj, gaussian_mixture(), cfg)
    result = trainer.fit()
    if trainer.is_main:
        torch.save({"state": obj.state_dict(), "losses": [r["loss"] for r in result.history],
                    "world_size": trainer.world_size}, out)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
