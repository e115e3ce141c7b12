"""Train SimCLR with the Trainer directly, then compare the encoder with a random one.

    python examples/train_with_trainer.py --steps 40

This is the lowest-level public API: build a DataModule, an Encoder, an Augmenter and an
Objective yourself (here from the vision plugin, looked up through the registry by name), and
hand them to ssl_core.Trainer.
"""

from __future__ import annotations

import argparse
import copy

import torch

from ssl_core import TrainConfig, Trainer, get_registry
from ssl_core.evaluators import KNNEvaluator


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()

    reg = get_registry()
    data = reg.get("dataset", "digits").build()
    torch.manual_seed(0)
    encoder = reg.get("encoder", "resnet_small").build(**data.extras["encoder_kwargs"])
    random_encoder = copy.deepcopy(encoder)
    augmenter = reg.get("augmenter", "simclr_views").build(**data.extras["augmenter_kwargs"])
    objective = reg.get("objective", "simclr").factory(encoder=encoder, augmenter=augmenter, temperature=0.2)

    cfg = TrainConfig(steps=args.steps, batch_size=256, lr=2e-3, weight_decay=1e-4, progress=True)
    result = Trainer(objective, data, cfg, run_dir=None).fit()
    knn = KNNEvaluator()
    print(f"final loss {result.final_loss:.3f}, {result.samples_per_s:.0f} samples/s")
    print(f"kNN top-1: trained {knn.evaluate(encoder, data)['knn_top1']:.3f}, "
          f"random {knn.evaluate(random_encoder, data)['knn_top1']:.3f}")


if __name__ == "__main__":
    main()
