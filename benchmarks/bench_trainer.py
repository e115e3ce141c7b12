"""Trainer overhead: sslkit's Trainer vs a plain hand-written PyTorch loop, same model and data.

Both loops train SimCLR (resnet_small on the built-in digits, two batched on-device views,
NT-Xent, AdamW) with the same batch size for the same number of steps. Rounds alternate
between the two loops so background load hits both alike; the median round is reported.

    python benchmarks/bench_trainer.py [--steps 30] [--rounds 3] [--batch-size 256]

Prints a table and writes benchmarks/results/trainer.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from ssl_core.config import TrainConfig
from ssl_core.trainer import Trainer, resolve_device


def build(seed: int = 0):  # type: ignore[no-untyped-def]
    from ssl_vision.augment import TwoViewAugmenter
    from ssl_vision.data import digits
    from ssl_vision.encoders import resnet_small
    from ssl_vision.simclr import SimCLR

    data = digits()
    torch.manual_seed(seed)
    enc = resnet_small(**data.extras["encoder_kwargs"])
    return SimCLR(enc, TwoViewAugmenter(**data.extras["augmenter_kwargs"]), temperature=0.2), data


def plain_loop(steps: int, batch_size: int, device: torch.device) -> float:
    """The loop a researcher would write by hand; returns samples/s."""
    model, data = build()
    model.to(device).train()
    images = torch.stack([data.train[i]["image"] for i in range(len(data.train))])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    g = torch.Generator(device=device).manual_seed(0)
    n = images.shape[0]
    perm = torch.randperm(n)
    pos = 0
    t0 = time.perf_counter()
    for _ in range(steps):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n), 0
        batch = {"image": images[perm[pos:pos + batch_size]].to(device)}
        pos += batch_size
        v1, v2 = model.augmenter(batch, g)
        z = model.projector(model.encoder(torch.cat([v1, v2])))
        loss = model.criterion(*z.chunk(2))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()  # the hand-written loop also reads the loss to print it
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - t0)


def sslkit_loop(steps: int, batch_size: int, device: torch.device) -> float:
    """The same training through sslkit's Trainer (schedules, logging, NaN checks included)."""
    model, data = build()
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=2e-3, weight_decay=1e-4, log_every=10,
                      checkpoint_every=0, health_every=0, progress=False, device=str(device), precision="fp32")
    trainer = Trainer(model, data, cfg, run_dir=None)
    t0 = time.perf_counter()
    trainer.fit()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "trainer.json"))
    args = ap.parse_args()
    device = resolve_device(args.device)
    plain_loop(3, args.batch_size, device)  # warm-up (allocator, kernels)
    plain, ours = [], []
    for _ in range(args.rounds):
        plain.append(plain_loop(args.steps, args.batch_size, device))
        ours.append(sslkit_loop(args.steps, args.batch_size, device))
    p, o = statistics.median(plain), statistics.median(ours)
    rows = [("plain PyTorch loop", p, 1.0), ("sslkit Trainer", o, o / p)]
    print(f"SimCLR resnet_small, digits 16x16, batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds on {device}")
    print(f"{'loop':<22}{'samples/s':>12}{'ratio':>8}")
    for name, sps, ratio in rows:
        print(f"{name:<22}{sps:>12.1f}{ratio:>8.3f}")
    result = {
        "benchmark": "trainer_overhead", "model": "simclr/resnet_small", "data": "digits 16x16",
        "batch_size": args.batch_size, "steps": args.steps, "rounds": args.rounds, "device": str(device),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
        "plain_samples_per_s": plain, "sslkit_samples_per_s": ours,
        "median_plain": p, "median_sslkit": o, "ratio": o / p,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
