"""DDP vs FSDP on 2 processes: per-rank state memory and throughput of one objective.

    python benchmarks/bench_fsdp.py [--objective mae] [--encoder vit_small] [--encoder-kwargs JSON]
                                    [--steps 8] [--nproc 2]

Runs the objective's recipe through the shared Trainer twice under torchrun (gloo on CPU, NCCL
on GPUs), once with ``train.strategy=ddp`` and once with ``fsdp``, on the built-in data. Each
rank reports:
- the bytes it holds in parameters, gradients and optimiser state (the local shards under FSDP);
- its steady-state samples/s;
- its peak CUDA memory (GPU only).
Prints a table with FSDP/DDP ratios and writes benchmarks/results/fsdp-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from step_timer import timed_trainer


def _local_bytes(t: torch.Tensor | None) -> int:
    if t is None:
        return 0
    local = t.to_local() if hasattr(t, "to_local") else t  # a DTensor's shard on this rank
    return local.numel() * local.element_size()


def worker(args: argparse.Namespace) -> None:
    """One rank's run (called under torchrun)."""
    from ssl_core import distributed as D

    train = {"steps": args.steps, "batch_size": args.batch_size, "progress": False, "log_every": 1,
             "health_every": 0, "checkpoint_every": 0, "strategy": args.strategy, "num_threads": 1}
    overrides = {"encoder": args.encoder, "encoder_kwargs": json.loads(args.encoder_kwargs)} if args.encoder else {}
    cfg, trainer, timer = timed_trainer(args.objective, overrides, train)
    objective = trainer.objective
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.fit()
    params = [p for p in objective.parameters()]
    state = {
        "params": sum(_local_bytes(p) for p in params),
        "optimizer": sum(_local_bytes(v) for s in trainer.optimizer.state.values() for v in s.values()
                         if isinstance(v, torch.Tensor) and v.dim() > 0),
    }
    record = {"rank": trainer.rank, "strategy": args.strategy, "state_mib": sum(state.values()) / 2**20,
              "param_mib": state["params"] / 2**20, "optimizer_mib": state["optimizer"] / 2**20,
              "samples_per_s": timer.samples_per_s(cfg.train.batch_size, skip=2),
              "peak_cuda_mib": torch.cuda.max_memory_allocated() / 2**20 if trainer.device.type == "cuda" else None,
              "encoder": cfg.encoder, "n_params": sum(p.numel() for p in objective.parameters())}
    if trainer.fsdp is not None:  # parameters() are DTensors: count the full sizes
        record["n_params"] = sum(p.full_tensor().numel() if hasattr(p, "full_tensor") else p.numel() for p in params)
    Path(args.out).with_suffix(f".rank{trainer.rank}.json").write_text(json.dumps(record))
    D.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--objective", default="mae")
    ap.add_argument("--encoder", default="vit_small", help="a larger encoder shows the sharding better")
    ap.add_argument("--encoder-kwargs", default='{"patch_size": 4}', help="JSON; 4-pixel patches suit the 16-pixel digits")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--strategy", default=None, help=argparse.SUPPRESS)  # set on the worker processes
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.strategy:
        worker(args)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in ("ddp", "fsdp"):
            out = Path(tmp) / strategy
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.nproc),
                   __file__, "--objective", args.objective, "--encoder", args.encoder, "--encoder-kwargs", args.encoder_kwargs,
                   "--steps", str(args.steps),
                   "--batch-size", str(args.batch_size), "--strategy", strategy, "--out", str(out)]
            env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
            res = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if res.returncode != 0:
                sys.exit(f"{strategy} run failed:\n{res.stderr[-3000:]}")
            ranks = [json.loads(out.with_suffix(f".rank{r}.json").read_text()) for r in range(args.nproc)]
            rows.append({"strategy": strategy, "state_mib_per_rank": max(r["state_mib"] for r in ranks),
                         "param_mib_per_rank": max(r["param_mib"] for r in ranks),
                         "optimizer_mib_per_rank": max(r["optimizer_mib"] for r in ranks),
                         "samples_per_s": ranks[0]["samples_per_s"],
                         "peak_cuda_mib": ranks[0]["peak_cuda_mib"], "n_params": ranks[0]["n_params"]})
    ddp, fsdp = rows
    ratios = {k: fsdp[k] / ddp[k] for k in ("state_mib_per_rank", "samples_per_s")}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"{args.objective} / {args.encoder}, {args.nproc} processes ({'nccl' if device == 'cuda' else 'gloo'}), "
          f"global batch {args.batch_size}, {ddp['n_params'] / 1e6:.1f}M parameters")
    print(f"{'strategy':<9}{'params MiB/rank':>17}{'optim MiB/rank':>16}{'state MiB/rank':>16}{'samples/s':>11}")
    for r in rows:
        print(f"{r['strategy']:<9}{r['param_mib_per_rank']:>17.1f}{r['optimizer_mib_per_rank']:>16.1f}"
              f"{r['state_mib_per_rank']:>16.1f}{r['samples_per_s']:>11.1f}")
    print(f"fsdp/ddp: state per rank {ratios['state_mib_per_rank']:.2f}, samples/s {ratios['samples_per_s']:.2f}")
    result = {"objective": args.objective, "encoder": args.encoder, "encoder_kwargs": json.loads(args.encoder_kwargs),
              "nproc": args.nproc, "batch_size": args.batch_size,
              "steps": args.steps, "device": device, "torch": torch.__version__, "machine": platform.machine(),
              "rows": rows, "fsdp_over_ddp": ratios}
    path = Path(__file__).parent / "results" / f"fsdp-{device}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
