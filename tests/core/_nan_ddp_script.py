"""A skipped non-finite step under DDP: run as 2 ranks of one gloo group (``run_ranks`` or torchrun).

    python tests/core/_nan_ddp_script.py OUT.pt RUN_ROOT NAME=STEPS:BAD [NAME=STEPS:BAD ...]

Each NAME is a run of STEPS steps in RUN_ROOT/NAME, one after the other in the same group. BAD is
a comma-separated list of step indices at which rank 1's input is scaled by inf (rank 0's stays
finite). Rank 0 saves, per NAME, the objective's state, the skipped-step count of every rank and
the checkpoint's step to OUT.pt.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from ssl_core import distributed as D
from ssl_core.config import TrainConfig
from ssl_core.interfaces import Encoder, Objective, StepInfo
from ssl_core.trainer import Trainer
from sslkit_testplugins.toy import gaussian_mixture


class BNEncoder(Encoder):
    modality, input_key, embed_dim = "toy", "x", 8

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Blowup(Objective):
    def __init__(self, bad: set[int]) -> None:
        super().__init__()
        self.encoder, self.bad = BNEncoder(), bad

    def training_step(self, batch, step: StepInfo):  # type: ignore[no-untyped-def]
        x = batch["x"].float()
        if step.step in self.bad and D.rank() == 1:
            x = x * float("inf")
        target = torch.randn(x.shape[0], 8, generator=step.generator)
        return {"loss": (self.encoder(x) - target).pow(2).mean()}


def run(steps: int, bad: set[int], run_dir: str) -> dict | None:
    """One run; what rank 0 saves (``None`` on the other ranks)."""
    torch.manual_seed(0)
    cfg = TrainConfig(steps=steps, batch_size=32, lr=0.01, warmup_fraction=0.0, min_lr_ratio=1.0, log_every=100,
                      checkpoint_every=1, health_every=0, progress=False)
    trainer = Trainer(Blowup(bad), gaussian_mixture(), cfg, run_dir)
    result = trainer.fit()
    skipped = trainer.strategy.gather_objects(result.skipped_steps)
    if not trainer.is_main:
        return None
    state = {k: v.detach().cpu().clone() for k, v in trainer.objective.state_dict().items()}
    saved = torch.load(f"{run_dir}/checkpoints/last.pt", weights_only=True)
    return {"state": state, "skipped": skipped, "checkpoint_step": saved["step"], "checkpoint": saved["objective"]}


def main() -> None:
    out, root = sys.argv[1], sys.argv[2]
    results = {}
    for job in sys.argv[3:]:
        name, spec = job.split("=")
        steps, bad = spec.split(":")
        results[name] = run(int(steps), {int(s) for s in bad.split(",") if s}, f"{root}/{name}")
    if D.is_main_process():
        torch.save(results, out)
    D.shutdown()


if __name__ == "__main__":
    main()
