"""Pre-train a vision encoder and an audio encoder side by side, each with its own objective and
data, in one training loop (the Experiment API).

    python examples/vision_and_audio.py --steps 40

SimCLR trains a ResNet on the built-in digits while wav2vec 2.0 trains a small wav2vec2
encoder on the built-in spoken words. The loop steps one optimiser over both; each encoder is
then exported and probed on its own modality against its untrained initialisation, and the run
folder works with `ssl eval`, `ssl report` and `ssl compare`.
"""

from __future__ import annotations

import argparse

from ssl_core import Experiment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default="runs/vision-audio")
    ap.add_argument("--overwrite", action="store_true", help="replace the runs a previous call left in --out")
    args = ap.parse_args()

    exp = Experiment(train={"steps": args.steps, "batch_size": args.batch_size, "lr": 1e-3, "log_every": 10},
                     out=args.out)
    exp.add_data("images", "digits")
    exp.add_data("speech", "spoken_words")
    exp.add_objective("simclr", "simclr", data="images")
    exp.add_objective("wav2vec2", "wav2vec2", data="speech")
    # fit() also exports each encoder to OUT/encoders/ and probes it (next to its untrained copy)
    result = exp.fit(evaluators=["knn", "health"], overwrite=args.overwrite)
    last = result.history[-1]
    print(f"steps {result.steps}: simclr/loss {last['simclr/loss']:.3f}, wav2vec2/loss {last['wav2vec2/loss']:.3f}")
    for task in ("simclr", "wav2vec2"):
        trained, random = exp.metrics["trained"], exp.metrics["random"]
        print(f"{task:<9} kNN top-1: trained {trained[f'{task}.encoder/knn_top1']:.3f}, "
              f"random {random[f'{task}.encoder/knn_top1']:.3f}; "
              f"effective rank {trained[f'{task}.encoder/effective_rank']:.1f}")
    print(f"run folder: {args.out} (try `ssl report {args.out}`)")

if __name__ == "__main__":
    main()
