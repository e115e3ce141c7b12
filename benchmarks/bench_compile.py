"""``train.compile`` and channels-last on this machine: warm-up, step time, break-even.

One recipe (default SimCLR: ``resnet_small`` on Fashion-MNIST at 28 px, batch 256, fp32) trains
``--steps`` steps in each setting, every setting in a fresh process with its own empty
TorchInductor cache (so the compile time is a cold start, as a user's first run sees it):

- ``contiguous``: ``train.memory_format=contiguous`` (NCHW weights and activations), eager;
- ``channels_last``: ``train.memory_format=channels_last`` (the ResNets' ``auto``): the
  objective's 4-d weights channels-last, so the convolutions run on NHWC data, eager;
- ``compile``: ``train.compile=true`` with channels-last (the encoder, heads and loss are
  compiled; the augmentation runs eagerly: ``Augmenter`` calls are kept out of the trace).

Per setting: the first step's seconds (for ``compile`` this holds the compilation), the median
of the steps after the second, the speed-up over ``contiguous``, and for ``compile`` the
break-even against eager channels-last: the number of steps after which compiling has saved more
than it cost, ``(first_c - steady_e) / (steady_e - steady_c)``, set against the recipe's default
number of steps. Prints a table, writes JSON (``--out``).

    .venv/bin/python benchmarks/bench_compile.py --steps 14 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from step_timer import timed_trainer  # noqa: E402

VARIANTS = ("contiguous", "channels_last", "compile")


def child(method: str, variant: str, steps: int, threads: int) -> dict:
    import torch

    from ssl_core.runner import resolve_config

    torch.set_num_threads(threads)
    cfg, trainer, timer = timed_trainer(method, {}, {
        "steps": steps, "epochs": None, "precision": "fp32", "device": "cpu", "num_threads": threads,
        "log_every": 1, "checkpoint_every": 0, "health_every": 0, "probe_every": 0, "progress": False,
        "compile": variant == "compile", "memory_format": "contiguous" if variant == "contiguous" else "channels_last"})
    recipe = resolve_config(method)
    planned = (recipe.train.steps if recipe.train.steps is not None  # the default run's length
               else recipe.train.epochs * (len(trainer.data.train) // recipe.train.batch_size))
    result = trainer.fit()
    times = timer.times
    return {"variant": variant, "step_s": times, "first_s": times[0], "steady_s": statistics.median(times[2:]),
            "final_loss": getattr(result, "final_loss", None),
            "planned_steps": planned, "batch_size": cfg.train.batch_size, "data": cfg.dataset}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="simclr")
    ap.add_argument("--steps", type=int, default=14)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "compile.json"))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.method, args.child, args.steps, args.threads)))
        return
    rows = []
    for variant in args.variants:
        with tempfile.TemporaryDirectory(prefix="inductor-") as cache:
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "OMP_NUM_THREADS": str(args.threads)}
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, __file__, "--child", variant, "--method", args.method,
                                  "--steps", str(args.steps), "--threads", str(args.threads)],
                                 env=env, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"{variant} failed:\n{out.stderr[-3000:]}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["process_s"] = time.perf_counter() - t0
            rows.append(row)
            print(f"{variant:<14} first step {row['first_s']:7.2f} s   steady {row['steady_s']:6.3f} s/step", flush=True)
    base = next((r for r in rows if r["variant"] == "contiguous"), None)
    eager = next((r for r in rows if r["variant"] == "channels_last"), None)
    for r in rows:
        r["speedup"] = base["steady_s"] / r["steady_s"] if base else None
        if eager and r["variant"] == "compile":
            saving = eager["steady_s"] - r["steady_s"]
            r["break_even_steps"] = (r["first_s"] - eager["steady_s"]) / saving if saving > 0 else None
    print(f"\n{args.method}, {rows[0]['data']}, batch {rows[0]['batch_size']}, {args.threads} thread(s); "
          f"the recipe's default run: {rows[0]['planned_steps']} steps")
    print(f"{'setting':<14} {'first step s':>12} {'steady s/step':>14} {'speed-up':>9} {'break-even steps':>17}")
    for r in rows:
        be = r.get("break_even_steps")
        sp = f"{r['speedup']:.2f}x" if r["speedup"] else "-"
        print(f"{r['variant']:<14} {r['first_s']:>12.2f} {r['steady_s']:>14.3f} {sp:>9} "
              f"{(f'{be:.0f}' if be else '-'):>17}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "child"},
                                          "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
