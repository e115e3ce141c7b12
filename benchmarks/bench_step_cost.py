"""CPU seconds per training step of each recipe at its default batch and data, and what its
default schedule costs: for sizing default budgets (issue 11: a default run in about 5 minutes).

    OMP_NUM_THREADS=1 python benchmarks/bench_step_cost.py simclr byol dino mae clip

Each recipe runs through ``run_experiment`` (no evaluation) for 2 and for 6 steps on one thread;
the difference of the two runs' ``time.process_time`` over 4 steps is the cost of a step without
start-up, data loading or export. On a loaded machine contention inflates CPU time, so the
numbers are upper estimates of a quiet single-threaded run. Writes ``results/step_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from ssl_core.config import nest
from ssl_core.registry import get_registry
from ssl_core.runner import build_data, resolve_config, run_experiment

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_seconds(name: str, modality: str, steps: int) -> float:
    """CPU seconds of a ``steps``-step run of ``name``'s recipe without evaluation."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = resolve_config(name, modality, overrides=nest({
            "out": tmp, "train.progress": False, "train.epochs": None, "train.steps": steps, "evaluators": [],
            "compare_random": False, "train.num_threads": 1, "train.checkpoint_every": 0}))
        start = time.process_time()
        run_experiment(cfg, evaluate=False)
        return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("objectives", nargs="+")
    args = parser.parse_args()
    torch.set_num_threads(1)
    modality = {s.name: s.modality for s in get_registry().list("objective")}
    rows = []
    for name in args.objectives:
        cfg = resolve_config(name, modality[name])
        n_train = len(build_data(cfg).train)
        per_step = (cpu_seconds(name, modality[name], 6) - cpu_seconds(name, modality[name], 2)) / 4
        steps = int(cfg.train.epochs or 0) * (n_train // cfg.train.batch_size) or int(cfg.train.steps or 0)
        rows.append({"objective": name, "dataset": cfg.dataset, "batch_size": cfg.train.batch_size,
                     "epochs": cfg.train.epochs, "steps": steps, "cpu_s_per_step": per_step,
                     "default_training_cpu_s": per_step * steps})
        print(f"| {name} | {cfg.train.batch_size} | {steps:,} ({cfg.train.epochs}) | {per_step:.2f} | "
              f"~{per_step * steps:,.0f} |", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "step_cost.json").write_text(json.dumps(
        {"benchmark": "step_cost", "load_average": os.getloadavg(), "cpus": os.cpu_count(), "rows": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS / 'step_cost.json'} (load average {os.getloadavg()[0]:.1f}: CPU time under load is inflated)")


if __name__ == "__main__":
    main()
