"""Cost of the buffer snapshot that lets ``nan_policy: skip`` undo a skipped step's forward.

    python benchmarks/bench_nan_guard.py [--objectives simclr dino mlm wav2vec2] [--steps 8] [--reps 200]

A step's forward updates buffers (BatchNorm running statistics, DINO's centre) before the
trainer knows whether the loss is finite, so under ``nan_policy: skip`` the Trainer copies every
buffer before each step and copies them back if the step is skipped. For each objective's
default recipe this prints the buffers' count and size, the median time of one snapshot (a
clone of every buffer) and of one restore, and the median time of a whole training step of the
recipe (``Trainer.fit`` wall time / steps), with the snapshot's share of a step. Writes
benchmarks/results/nan_guard.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from ssl_core.runner import build_data, build_encoder, build_objective, resolve_config
from ssl_core.trainer import Trainer, _restore_buffers, _snapshot_buffers


def _median_s(fn: Any, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(name: str, steps: int, reps: int) -> dict[str, Any]:
    cfg = resolve_config(name, overrides={"train": {"steps": steps, "progress": False, "health_every": 0,
                                                    "checkpoint_every": 0, "device": "cpu"}})
    data = build_data(cfg)
    torch.manual_seed(0)
    objective = build_objective(cfg, build_encoder(cfg, data), data)
    trainer = Trainer(objective, data, cfg.train)
    result = trainer.fit()
    step_s = result.wall_time_s / steps
    buffers = [b for m in objective.modules() for b in m._buffers.values() if b is not None]
    saved = _snapshot_buffers(objective)
    return {
        "objective": name, "batch_size": cfg.train.batch_size, "buffers": len(buffers),
        "buffer_kib": sum(b.numel() * b.element_size() for b in buffers) / 1024,
        "snapshot_ms": 1e3 * _median_s(lambda: _snapshot_buffers(objective), reps),
        "restore_ms": 1e3 * _median_s(lambda: _restore_buffers(saved), reps),
        "step_ms": 1e3 * step_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--objectives", nargs="+", default=["simclr", "dino", "mlm", "wav2vec2"])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args()
    rows = [measure(name, args.steps, args.reps) for name in args.objectives]
    header = f"{'objective':<10} {'batch':>5} {'buffers':>7} {'KiB':>9} {'snapshot ms':>11} {'restore ms':>10} {'step ms':>9} {'share':>7}"
    print(header)
    for r in rows:
        r["share_of_step"] = r["snapshot_ms"] / r["step_ms"]
        print(f"{r['objective']:<10} {r['batch_size']:>5} {r['buffers']:>7} {r['buffer_kib']:>9.1f} "
              f"{r['snapshot_ms']:>11.3f} {r['restore_ms']:>10.3f} {r['step_ms']:>9.1f} {100 * r['share_of_step']:>6.2f}%")
    out = Path(__file__).parent / "results" / "nan_guard.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"torch": str(torch.__version__), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
