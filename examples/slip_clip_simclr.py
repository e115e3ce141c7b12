"""CLIP + SimCLR on the same image tower (as in SLIP: Mu et al., "SLIP: Self-supervision meets
Language-Image Pre-training", ECCV 2022), trained in one loop with the Experiment API.

    python examples/slip_clip_simclr.py --steps 60

The image tower of an open_clip model receives gradients from two losses: CLIP's symmetric
InfoNCE against captions, and SimCLR's NT-Xent between two augmented views of each image.
Both read the built-in image-caption pairs (Fashion-MNIST with measured captions); the combined
loss is clip + 0.5 * simclr.
"""

from __future__ import annotations

import argparse

from ssl_core import Experiment, get_registry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", default="runs/slip")
    ap.add_argument("--overwrite", action="store_true", help="replace the runs a previous call left in --out")
    ap.add_argument("--train-size", type=int, default=10_000, help="Fashion-MNIST training pairs (balanced)")
    ap.add_argument("--test-size", type=int, default=2_000, help="held-out pairs for zero-shot/retrieval/kNN")
    args = ap.parse_args()

    exp = Experiment(train={"steps": args.steps, "batch_size": args.batch_size, "lr": 1e-3, "log_every": 10,
                            "progress": True}, out=args.out)
    pairs = exp.add_data("pairs", "fashion_captions", train_size=args.train_size, test_size=args.test_size)
    print(pairs.description)
    clip = exp.add_objective("clip", "clip", data="pairs")
    # SimCLR on CLIP's image tower: same encoder instance, its own two-view augmentations
    views = get_registry().get("augmenter", "simclr_views").build(
        image_size=pairs.extras["encoder_kwargs"]["image_size"], hflip_p=0.5, scale=(0.3, 1.0))
    exp.add_objective("simclr", "simclr", data="pairs", encoder=clip.encoder, augmenter=views, weight=0.5)
    result = exp.fit(evaluators=["clip_zero_shot", "clip_retrieval", "knn"],  # probes the shared tower
                     overwrite=args.overwrite)
    last = result.history[-1]
    print(f"steps {result.steps}: clip/loss {last['clip/loss']:.3f}, simclr/loss {last['simclr/loss']:.3f}")
    for name in exp.metrics["trained"]:
        t, r = exp.metrics["trained"][name], exp.metrics["random"][name]
        print(f"{name:<36} trained {t:.3f}   random {r:.3f}" + ("" if t > r else "   <- not ahead of random"))


if __name__ == "__main__":
    main()
