"""Minor page faults and system time per training step: SimCLR on Fashion-MNIST-sized data.

SimCLR with ``resnet_small`` at 28 px, batch 256, fp32, one torch thread, on a 10,000-image
subset of Fashion-MNIST, run in a fresh process per setting so each allocator starts clean:

- ``untuned``: glibc's defaults (``SSLKIT_MALLOC_TUNING=0``, what sslkit did before);
- ``env``: ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=4294967296`` in the environment (no code);
- ``sslkit``: the default now, ``ssl_core.allocator.tune_malloc`` applied at start-up.

Counts come from ``getrusage`` around ``Trainer.fit`` (start-up excluded); settings are
interleaved round by round so load on the machine hits all of them alike. Prints a table and
writes JSON (``--out``).

    .venv/bin/python benchmarks/bench_page_faults.py --steps 12 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = {
    "untuned": {"SSLKIT_MALLOC_TUNING": "0"},
    "env": {"SSLKIT_MALLOC_TUNING": "0", "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "4294967296"},
    "sslkit": {},
}


def child(steps: int, data_dir: str) -> dict[str, float]:
    """One training run in this process; getrusage deltas around fit()."""
    sys.path.insert(0, str(Path(__file__).parent))
    import torch

    import fashion_subset
    from ssl_core.allocator import tune_malloc
    from ssl_core.data import TensorDictDataset
    from ssl_core.runner import build_data, build_encoder, build_objective, resolve_config
    from ssl_core.trainer import Trainer

    torch.set_num_threads(1)
    cfg = resolve_config("simclr", overrides={
        "train": {"steps": steps, "batch_size": 256, "precision": "fp32", "device": "cpu", "num_threads": 1,
                  "log_every": 1000, "checkpoint_every": 0, "health_every": 0, "probe_every": 0, "progress": False},
        "augmenter_kwargs": {"image_size": 28}})
    data = build_data(cfg)
    d = fashion_subset.load(Path(data_dir))
    data.train = TensorDictDataset(image=d["train_x"], label=d["train_y"])
    torch.manual_seed(0)
    encoder = build_encoder(cfg, data)
    objective = build_objective(cfg, encoder, data)
    trainer = Trainer(objective, data, cfg.train)
    before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    trainer.fit()
    after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
    return {"steps": steps, "minflt": after.ru_minflt - before.ru_minflt, "sys_s": after.ru_stime - before.ru_stime,
            "user_s": after.ru_utime - before.ru_utime, "wall_s": wall, "maxrss_mb": after.ru_maxrss / 1024,
            "tuned": tune_malloc()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--out", default="benchmarks/results/page_faults.json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.steps, args.data)))
        return
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in SETTINGS}
    for r in range(args.rounds):
        for name, extra in SETTINGS.items():
            env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "SSLKIT_MALLOC_TUNING"}
            env.update(extra)
            out = subprocess.run([sys.executable, __file__, "--child", "--steps", str(args.steps), "--data", args.data],
                                 env=env, capture_output=True, text=True, check=True).stdout
            res = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
            runs[name].append(res)
            print(f"round {r} {name}: {res}", flush=True)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps({"settings": SETTINGS, "steps": args.steps, "runs": runs}, indent=1))
    print(f"\n{'setting':<9} {'minor faults/step':>18} {'sys s/step':>11} {'user s/step':>12} {'wall s/step':>12} {'max RSS MB':>11}")
    summary = {}
    for name, rs in runs.items():
        per = lambda k: sum(x[k] for x in rs) / sum(x["steps"] for x in rs)  # noqa: E731
        summary[name] = {"minflt_per_step": per("minflt"), "sys_s_per_step": per("sys_s"), "user_s_per_step": per("user_s"),
                         "wall_s_per_step": per("wall_s"), "maxrss_mb": max(x["maxrss_mb"] for x in rs)}
        s = summary[name]
        print(f"{name:<9} {s['minflt_per_step']:>18,.0f} {s['sys_s_per_step']:>11.3f} {s['user_s_per_step']:>12.3f} "
              f"{s['wall_s_per_step']:>12.3f} {s['maxrss_mb']:>11.0f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"settings": SETTINGS, "steps": args.steps, "rounds": args.rounds,
                                          "runs": runs, "summary": summary}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
