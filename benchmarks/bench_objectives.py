"""Throughput and peak memory of every registered objective through the shared Trainer.

Meant for a GPU (bf16 autocast, optional torch.compile), and runs on a CPU as a smoke test:

    python benchmarks/bench_objectives.py --device cuda --steps 30 [--compile] [--batch-size 256]
    python benchmarks/bench_objectives.py --device cpu --steps 3 --objectives simclr

Each objective runs with its recipe (encoder, augmenter, built-in dataset) and the given batch
size. Prints a table and writes benchmarks/results/objectives-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from step_timer import StepTimer

from ssl_core.registry import get_registry
from ssl_core.runner import build_data, build_encoder, build_objective, resolve_config
from ssl_core.trainer import Trainer, resolve_device


def bench_one(name: str, device: str, steps: int, batch_size: int | None, compile_: bool) -> dict:
    overrides: dict = {"train": {"steps": steps + 3, "device": device, "progress": False, "log_every": 1,
                                 "health_every": 0, "checkpoint_every": 0, "compile": compile_}}
    if batch_size:
        overrides["train"]["batch_size"] = batch_size
    cfg = resolve_config(name, overrides=overrides)
    data = build_data(cfg)
    torch.manual_seed(0)
    objective = build_objective(cfg, build_encoder(cfg, data), data)
    trainer = Trainer(objective, data, cfg.train)
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    timer = StepTimer(trainer.device)
    trainer.callbacks.append(timer)
    trainer.fit()
    sps = timer.samples_per_s(cfg.train.batch_size, skip=3)  # the first steps compile and warm up
    mem = torch.cuda.max_memory_allocated() / 2**20 if trainer.device.type == "cuda" else float("nan")
    return {"objective": name, "modality": cfg.modality, "encoder": cfg.encoder, "batch_size": cfg.train.batch_size,
            "samples_per_s": sps, "peak_memory_mib": mem, "precision": str(trainer.amp_dtype or "fp32")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--objectives", nargs="*", default=None)
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    device = resolve_device(args.device)
    names = args.objectives or [s.name for s in get_registry().list("objective") if not s.package.startswith("sslkit-testplugins")]
    rows = []
    for name in names:
        try:
            rows.append(bench_one(name, str(device), args.steps, args.batch_size, args.compile))
        except Exception as exc:  # report and continue: one broken objective must not hide the rest
            rows.append({"objective": name, "error": f"{type(exc).__name__}: {exc}"})
    print(f"{'objective':<12}{'modality':<12}{'encoder':<16}{'batch':>6}{'samples/s':>12}{'peak MiB':>10}")
    for r in rows:
        if "error" in r:
            print(f"{r['objective']:<12}ERROR {r['error']}")
        else:
            print(f"{r['objective']:<12}{r['modality']:<12}{r['encoder']:<16}{r['batch_size']:>6}"
                  f"{r['samples_per_s']:>12.1f}{r['peak_memory_mib']:>10.0f}")
    info = {"device": str(device), "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
            "torch": torch.__version__, "machine": platform.machine(), "compile": args.compile, "results": rows}
    out = Path(__file__).parent / "results" / f"objectives-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(info, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
