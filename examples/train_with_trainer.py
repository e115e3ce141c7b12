"""Train SimCLR with the Trainer directly, then compare the encoder with a random one.

    python examples/train_with_trainer.py --steps 40

The data is the built-in Fashion-MNIST (the digits, with a warning, where it is not installed).
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
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--train-size", type=int, default=10_000, help="Fashion-MNIST training images (balanced)")
    ap.add_argument("--test-size", type=int, default=2_000, help="Fashion-MNIST test images for the probe")
    args = ap.parse_args()

    reg = get_registry()
    data = reg.get("dataset", "fashion_mnist").build(train_size=args.train_size, test_size=args.test_size)
    torch.manual_seed(0)
    encoder = reg.get("encoder", "resnet_small").build(**data.extras["encoder_kwargs"])
    random_encoder = copy.deepcopy(encoder)
    augmenter = reg.get("augmenter", "simclr_views").build(**data.extras["augmenter_kwargs"])
    objective = reg.get("objective", "simclr").factory(encoder=encoder, augmenter=augmenter, temperature=0.2)

    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=2e-3, weight_decay=1e-4, progress=True)
    result = Trainer(objective, data, cfg, run_dir=None).fit()
    knn = KNNEvaluator()
    print(f"final loss {result.final_loss:.3f}, {result.samples_per_s:.0f} samples/s on {data.description}")
    trained, random = knn.evaluate(encoder, data)["knn_top1"], knn.evaluate(random_encoder, data)["knn_top1"]
    print(f"kNN top-1: trained {trained:.3f}, random {random:.3f}"
          + ("" if trained > random else "  <- NOT better than a random encoder: train longer (--steps)"))


if __name__ == "__main__":
    main()
