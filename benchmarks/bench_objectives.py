"""Every built-in objective through the shared Trainer on a GPU in bf16 (issue 13, point 5).

For each objective at its recipe (data, encoder, batch), through the Trainer with
``precision: bf16``: samples/s (median step time after ``--warmup`` steps, CUDA synchronised
after each step) and peak GPU memory (``torch.cuda.max_memory_allocated``). For MAE on ViT-Base
at 224 px (``--mfu-batch``) also the FLOPs of one training step, counted by
``torch.utils.flop_counter.FlopCounterMode`` (matrix products, convolutions and attention, forward
and backward), the achieved TFLOP/s and the MFU against the GPU's dense bf16 peak
(``--peak-tflops``; 989 for an H100/H200 SXM by default, the goal in issue 13 is 40%). A DDP run
over NCCL (``ssl run --nproc-per-node 2``) needs two GPUs; with one it is reported as skipped,
with the reason, because NCCL refuses two ranks on one device. Each point runs in a fresh
process (``--child``), so an error or an out-of-memory in one does not end the others; its
message is kept in the JSON.

On a lent GPU machine (nothing can be downloaded there; its image has torch, pluggy, typer, timm
and pyyaml; carry open-clip-torch as a wheel for the CLIP row, see the device tool's README):

    python3 -m pip install -q --no-deps --no-build-isolation -e . -e plugins/vision -e plugins/text \
        -e plugins/audio -e plugins/clip
    PYTHONUNBUFFERED=1 python3 benchmarks/bench_objectives.py --out $OUT/objectives-cuda.json

The run header of each point names the dataset it used: without the Fashion-MNIST files
(``SSLKIT_FASHION_MNIST``) the vision rows fall back to the small digits and say so. Here, to
check the script itself on the CPU at tiny sizes (fp32; the numbers mean nothing):

    .venv/bin/python benchmarks/bench_objectives.py --device cpu --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from step_timer import timed_trainer  # noqa: E402

OBJECTIVES = ["simclr", "byol", "dino", "mae", "mlm", "clm", "wav2vec2", "hubert", "clip"]
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.1, "A10G": 70.0}
"""Dense bf16 tensor-core peaks from the vendors' data sheets (SXM parts), by name fragment."""


class FlopWindow:
    """A Trainer callback that counts the FLOPs of the step after ``at`` (FlopCounterMode is
    entered at the end of step ``at`` and left by :meth:`close` after training)."""

    def __init__(self, at: int) -> None:
        from torch.utils.flop_counter import FlopCounterMode

        self.at, self.counter, self.open = at, FlopCounterMode(display=False), False

    def __call__(self, record: dict[str, Any]) -> None:
        if record["step"] == self.at:
            self.counter.__enter__()
            self.open = True

    def close(self) -> int | None:
        if not self.open:
            return None
        self.counter.__exit__(None, None, None)
        self.open = False
        return int(self.counter.get_total_flops())


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One objective in this process: time ``warmup + steps`` steps, then count one more."""
    import torch

    warmup, steps = spec["warmup"], spec["steps"]
    count = spec.get("count_flops", False)
    base = {"steps": warmup + steps + (1 if count else 0), "epochs": None, "device": spec["device"],
            "precision": spec["precision"], "log_every": 1, "checkpoint_every": 0, "health_every": 0,
            "probe_every": 0, "progress": False}
    cfg, trainer, timer = timed_trainer(spec["objective"], spec["overrides"], base)
    cuda = trainer.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if cuda else 0
    window = FlopWindow(warmup + steps) if count else None
    if window is not None:
        trainer.callbacks.append(window)
    t0 = time.perf_counter()
    try:
        trainer.fit()
    finally:
        flops = window.close() if window is not None else None
    timed = timer.times[warmup:warmup + steps]
    step_s = statistics.median(timed)
    out: dict[str, Any] = {
        "objective": spec["objective"], "label": spec["label"], "dataset": cfg.dataset, "encoder": cfg.encoder,
        "batch_size": cfg.train.batch_size, "precision": str(trainer.amp_dtype or "fp32"),
        "step_s": step_s, "samples_per_s": cfg.train.batch_size / step_s, "first_step_s": timer.times[0],
        "wall_s": time.perf_counter() - t0, "device_name": torch.cuda.get_device_name() if cuda else "cpu"}
    if cuda:
        out["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        out["peak_over_model_gib"] = (torch.cuda.max_memory_allocated() - before) / 2**30
    if flops is not None:
        out["flops_per_step"] = flops
        out["tflops_per_s"] = flops / step_s / 1e12
        if spec.get("peak_tflops"):
            out["mfu"] = out["tflops_per_s"] / spec["peak_tflops"]
    return out


def points(args: argparse.Namespace, peak: float | None) -> list[dict[str, Any]]:
    """The objectives at their recipes, plus MAE on ViT-Base at 224 px with its FLOPs counted."""
    common = {"device": args.device, "precision": args.precision, "warmup": args.warmup, "steps": args.steps}
    small = {"train": {"batch_size": 16}} if args.smoke else {}
    out = [{**common, "objective": o, "label": "recipe", "overrides": small} for o in args.objectives]
    if "mae" in args.objectives:
        if args.smoke:  # the same code path at a size a CPU runs in seconds
            mfu = {"encoder": "vit_nano", "augmenter_kwargs": {"image_size": 32}, "train": {"batch_size": 8}}
        else:
            mfu = {"encoder": "vit_base", "encoder_kwargs": {"pool": "mean"}, "augmenter_kwargs": {"image_size": 224},
                   "objective_kwargs": {"decoder_dim": 512, "decoder_depth": 8, "decoder_heads": 16},
                   "train": {"batch_size": args.mfu_batch, "compile": args.compile}}
        out.append({**common, "objective": "mae", "label": "ViT-Base 224 px (MFU)", "overrides": mfu,
                    "count_flops": True, "peak_tflops": peak})
    return out


def run_point(spec: dict[str, Any], timeout: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"objective": spec["objective"], "label": spec["label"], "error": f"over {timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"objective": spec["objective"], "label": spec["label"],
                "error": f"exit {proc.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1])


def ddp_point(args: argparse.Namespace) -> dict[str, Any]:
    """SimCLR for a few steps on two GPUs through ``ssl run --nproc-per-node 2`` (NCCL)."""
    import torch

    if args.device != "cuda" or torch.cuda.device_count() < 2:
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return {"objective": "simclr", "label": "DDP over NCCL, 2 ranks",
                "skipped": f"needs 2 GPUs, this machine has {have}: NCCL refuses two ranks on one device"}
    ssl = shutil.which("ssl")
    if ssl is None:
        return {"objective": "simclr", "label": "DDP over NCCL, 2 ranks", "error": "the ssl command is not installed"}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [ssl, "run", "-m", "vision", "-o", "simclr", "--nproc-per-node", "2", "--device", "cuda",
               "--precision", args.precision, "--steps", str(args.warmup + args.steps), "--no-eval",
               "--out", str(Path(tmp) / "ddp")]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        wall = time.perf_counter() - t0
    res = {"objective": "simclr", "label": "DDP over NCCL, 2 ranks", "wall_s": wall, "exit": proc.returncode}
    if proc.returncode != 0:
        res["error"] = " | ".join(proc.stderr.strip().splitlines()[-3:])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objectives", nargs="+", default=OBJECTIVES, choices=OBJECTIVES)
    ap.add_argument("--device", default=None, help="cuda (the default where a GPU is present) or cpu")
    ap.add_argument("--precision", default=None, help="bf16 on CUDA (default), fp32 on a CPU")
    ap.add_argument("--warmup", type=int, default=5, help="steps before timing (cuDNN autotuning, allocator)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--mfu-batch", type=int, default=256, help="batch of the ViT-Base MAE point")
    ap.add_argument("--compile", action="store_true", help="train.compile for the ViT-Base MAE point")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="the GPU's dense bf16 peak for the MFU (default: from its name, e.g. 989.4 for H100/H200)")
    ap.add_argument("--timeout", type=int, default=240, help="seconds per point")
    ap.add_argument("--smoke", action="store_true", help="tiny batches and a tiny ViT, to check the script on a CPU")
    ap.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/objectives-DEVICE.json)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))), flush=True)
        return
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.precision = args.precision or ("bf16" if args.device.startswith("cuda") else "fp32")
    if args.smoke:
        args.warmup, args.steps = min(args.warmup, 1), min(args.steps, 2)
    peak = args.peak_tflops
    if peak is None and args.device.startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    rows = []
    for spec in points(args, peak):
        print(f"{spec['objective']} / {spec['label']} ...", flush=True)
        rows.append(run_point(spec, args.timeout))
        print("   ", json.dumps(rows[-1]), flush=True)
    rows.append(ddp_point(args))
    meta = {"argv": sys.argv[1:], "torch": torch.__version__, "peak_tflops": peak,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "fashion_mnist": os.environ.get("SSLKIT_FASHION_MNIST")}
    args.out = args.out or str(Path(__file__).parent / "results" / f"objectives-{args.device.split(':')[0]}.json")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"\n{'objective':<9} {'point':<22} {'data':<16} {'batch':>5} {'samples/s':>10} {'peak GiB':>9} "
          f"{'TFLOP/s':>8} {'MFU':>6}")
    for r in rows:
        if "error" in r or "skipped" in r:
            print(f"{r['objective']:<9} {r['label']:<22} {r.get('error') or r.get('skipped')}")
            continue
        if "samples_per_s" not in r:
            print(f"{r['objective']:<9} {r['label']:<22} ran in {r['wall_s']:.1f} s")
            continue
        tf = f"{r['tflops_per_s']:.1f}" if "tflops_per_s" in r else "-"
        mfu = f"{100 * r['mfu']:.1f}%" if "mfu" in r else "-"
        mem = f"{r['peak_gib']:.2f}" if "peak_gib" in r else "-"
        print(f"{r['objective']:<9} {r['label']:<22} {r['dataset']:<16} {r['batch_size']:>5} "
              f"{r['samples_per_s']:>10.1f} {mem:>9} {tf:>8} {mfu:>6}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
