"""Pre-train a vision encoder and an audio encoder side by side, each with its own objective and
data, in one training loop (the Experiment API).

    python examples/vision_and_audio.py            # about 3 minutes on a 2-core CPU
    python examples/vision_and_audio.py --steps 40 # a quick smoke run (too short to beat random)
    python examples/vision_and_audio.py --steps 3 --audio-size tiny  # a seconds-long smoke run

SimCLR trains a ResNet on the built-in UCI digits while wav2vec 2.0 trains a small wav2vec2
encoder on the built-in spoken words. The loop steps one optimiser over both; each encoder is
then probed (kNN and linear probe) on its own modality against its untrained initialisation.

The defaults follow the wav2vec2 recipe (300 steps, LR 1e-3 decaying to 20% of it): its
contrastive loss only leaves chance after about 150 steps, so a much shorter run cannot beat a
random encoder. The digits stay as the vision set here because they keep the example fast;
`ssl run -m vision -o simclr` shows the vision recipe on its own default data.
Each encoder is also exported to the run folder, which works with `ssl eval`, `ssl report` and
`ssl compare`.
"""

from __future__ import annotations

import argparse

from ssl_core import Experiment

PROBES = {"knn_top1": "kNN top-1", "linear_top1": "linear top-1"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--out", default="runs/vision-audio")
    ap.add_argument("--overwrite", action="store_true", help="replace the runs a previous call left in --out")
    ap.add_argument("--audio-size", choices=["tiny", "small", "base"], default=None,
                    help="wav2vec 2.0 encoder preset (default: the recipe's, small; tiny for a smoke run)")
    args = ap.parse_args()

    exp = Experiment(train={"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "min_lr_ratio": 0.2,
                            "weight_decay": 0.01, "log_every": 10}, out=args.out)
    exp.add_data("images", "digits")
    exp.add_data("speech", "spoken_words")
    exp.add_objective("simclr", "simclr", data="images")
    if args.audio_size:  # the recipe's encoder and settings, at another size
        recipe = exp.registry.get("objective", "wav2vec2").recipe
        exp.add_encoder("wav2vec2.encoder", recipe["encoder"], data="speech",
                        **{**recipe.get("encoder_kwargs", {}), "size": args.audio_size})
    exp.add_objective("wav2vec2", "wav2vec2", data="speech", encoder="wav2vec2.encoder" if args.audio_size else None)
    # fit() also exports each encoder to OUT/encoders/ and probes it (next to its untrained copy)
    result = exp.fit(evaluators=["knn", "linear_probe", "health"], overwrite=args.overwrite)
    last = result.history[-1]
    print(f"steps {result.steps}: simclr/loss {last['simclr/loss']:.3f}, wav2vec2/loss {last['wav2vec2/loss']:.3f}")
    losses = []
    for task in ("simclr", "wav2vec2"):
        trained, random = exp.metrics["trained"], exp.metrics["random"]
        cells = ", ".join(f"{name}: trained {trained[f'{task}.encoder/{k}']:.3f}, random {random[f'{task}.encoder/{k}']:.3f}"
                          for k, name in PROBES.items())
        print(f"{task:<9} {cells}; effective rank {trained[f'{task}.encoder/effective_rank']:.1f}")
        losses += [f"{task} {k}" for k in PROBES if trained[f"{task}.encoder/{k}"] <= random[f"{task}.encoder/{k}"]]
    if losses:
        print("WARNING: the trained encoder does not beat the random one on: " + ", ".join(losses)
              + (" (train longer: --steps)" if args.steps < 300 else ""))
    print(f"run folder: {args.out} (try `ssl report {args.out}`)")


if __name__ == "__main__":
    main()
