"""CLIP training throughput: the sslkit Trainer vs a plain hand-written PyTorch loop.

Both paths train the same open_clip model (the recipe's ``sslkit-clip-tiny`` on the built-in
digit captions, unless ``--model``/``--image-size`` say otherwise) with the same batch, the same
random-crop augmentation, open_clip's tokenizer and ``ClipLoss``, AdamW and the logit-scale clamp.
The plain loop is what one would write by hand: a shuffled DataLoader, tokenise, encode, loss,
backward, step. The two are timed in alternating rounds within one process (so machine load
hits both alike), after warm-up steps, and the median pairs/s of each is reported.

    python benchmarks/bench_clip.py                      # CPU defaults, writes results/clip.json
    python benchmarks/bench_clip.py --threads 1 --steps 20 --rounds 3
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def build(model: str, image_size: int | None, seed: int = 0):  # type: ignore[no-untyped-def]
    from ssl_clip.augment import clip_crop
    from ssl_clip.data import digit_captions
    from ssl_clip.encoder import open_clip_encoder
    from ssl_clip.objective import CLIP

    data = digit_captions(image_size=image_size or 16)
    hints = dict(data.extras["encoder_kwargs"])
    torch.manual_seed(seed)
    encoder = open_clip_encoder(model=model, **hints)
    return data, CLIP(encoder, clip_crop()), clip_crop()


def run_trainer(objective, data, steps: int, batch: int, device: str) -> float:  # type: ignore[no-untyped-def]
    """Pairs/s of ``steps`` optimiser steps through ssl_core's Trainer (no logging/checkpoints)."""
    from ssl_core.config import TrainConfig
    from ssl_core.trainer import Trainer

    cfg = TrainConfig(steps=steps, epochs=None, batch_size=batch, lr=1e-3, weight_decay=0.1, betas=[0.9, 0.98],
                      device=device, precision="fp32", progress=False, health_every=0, checkpoint_every=0,
                      log_every=10**9)
    trainer = Trainer(objective, data, cfg, run_dir=None)
    t0 = time.perf_counter()
    trainer.fit()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def run_plain(encoder, augment, data, steps: int, batch: int, device: str) -> float:  # type: ignore[no-untyped-def]
    """Pairs/s of the same work written as a plain PyTorch loop over the open_clip model."""
    from open_clip.loss import ClipLoss
    from torch.utils.data import DataLoader

    from ssl_core.data import default_collate

    model = encoder.model.to(device).train()
    tokenizer = encoder.tokenizer
    mean, std = encoder.mean.to(device), encoder.std.to(device)
    size = encoder.image_size
    loss_fn = ClipLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=0.1)
    gen = torch.Generator(device=device).manual_seed(0)
    loader = DataLoader(data.train, batch_size=batch, shuffle=True, drop_last=True, collate_fn=default_collate)
    done = 0
    t0 = time.perf_counter()
    while done < steps:
        for b in loader:
            images = augment({"image": b["image"].to(device)}, gen)  # float [0, 1], same crop op
            x = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
            if x.shape[-1] != size:
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            x = (x - mean) / std
            tokens = tokenizer(b["caption"]).to(device)
            img = model.encode_image(x, normalize=True)
            txt = model.encode_text(tokens, normalize=True)
            loss = loss_fn(img, txt, model.logit_scale.exp().clamp(max=100.0))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100.0))
            done += 1
            if done == steps:
                break
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="sslkit-clip-tiny")
    parser.add_argument("--image-size", type=int, default=None, help="default: the built-in data's 16")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round and path")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "clip.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data, objective, augment = build(args.model, args.image_size)
    n_params = sum(p.numel() for p in objective.encoder.parameters())
    trainer_obj = objective
    plain_enc = copy.deepcopy(objective.encoder)
    # warm-up both paths (allocator, first-call overheads), not timed
    run_trainer(trainer_obj, data, args.warmup, args.batch_size, args.device)
    run_plain(plain_enc, augment, data, args.warmup, args.batch_size, args.device)
    results: dict[str, list[float]] = {"sslkit_trainer": [], "plain_pytorch": []}
    for r in range(args.rounds):
        order = ["sslkit_trainer", "plain_pytorch"] if r % 2 == 0 else ["plain_pytorch", "sslkit_trainer"]
        for name in order:
            if name == "sslkit_trainer":
                v = run_trainer(trainer_obj, data, args.steps, args.batch_size, args.device)
            else:
                v = run_plain(plain_enc, augment, data, args.steps, args.batch_size, args.device)
            results[name].append(v)
    med = {k: statistics.median(v) for k, v in results.items()}
    overhead = 100.0 * (med["plain_pytorch"] - med["sslkit_trainer"]) / med["plain_pytorch"]
    rows = [(k, med[k], min(v), max(v)) for k, v in results.items()]
    print(f"CLIP {args.model} ({n_params / 1e6:.2f} M params), batch {args.batch_size}, "
          f"{args.steps} steps x {args.rounds} rounds, device {args.device}, threads {torch.get_num_threads()}")
    print(f"{'path':<16} {'pairs/s (median)':>17} {'min':>8} {'max':>8}")
    for name, m, lo, hi in rows:
        print(f"{name:<16} {m:>17.1f} {lo:>8.1f} {hi:>8.1f}")
    print(f"Trainer overhead vs plain loop: {overhead:+.1f}% (positive = Trainer slower)")
    record = {
        "benchmark": "clip_throughput",
        "model": args.model, "params": n_params, "image_size": objective.encoder.image_size,
        "context_length": objective.encoder.context_length, "batch_size": args.batch_size,
        "steps_per_round": args.steps, "rounds": args.rounds, "device": args.device,
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "pairs_per_s": {k: {"median": med[k], "all": v} for k, v in results.items()},
        "trainer_overhead_percent": overhead,
        "torch": torch.__version__, "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    try:
        import open_clip

        record["open_clip"] = open_clip.__version__
    except Exception:  # pragma: no cover
        pass
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
