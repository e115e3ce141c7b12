"""Cost as work grows: samples/s and peak memory of one method per modality.

For SimCLR (vision, Fashion-MNIST), MLM (text, WordNet glosses), wav2vec 2.0 (audio, spoken
words) and CLIP (image-text, Fashion-MNIST captions), each at its recipe's settings, one thing
is changed at a time:

- batch size (every method): x1/4, x1/2, x1 the recipe's batch;
- threads (every method): 1 and 2 torch threads, at the recipe's batch;
- image size (SimCLR): augmented views of 28, 42 and 56 px from the same 28 px images;
- data source (SimCLR): the in-memory built-in set vs the same 10,000 images as PNGs in
  WebDataset ``.tar`` shards streamed from disk (``webdataset_stream``), with 0 and 2
  DataLoader workers that decode them.

Every point is a fresh process: ``--steps`` steps through the Trainer (fp32), samples/s from the
median of the steps after the second, and peak memory as the growth of the process's peak
resident size (``ru_maxrss``) over its size just before training (model, data and libraries
loaded): what training itself adds. Prints a table and writes JSON (``--out``).

    .venv/bin/python benchmarks/bench_cost.py --steps 6
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from step_timer import timed_trainer  # noqa: E402

METHODS = {"simclr": "vision", "mlm": "text", "wav2vec2": "audio", "clip": "image_text"}


def child(method: str, overrides: dict, steps: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    base = {"steps": steps, "epochs": None, "precision": "fp32", "device": "cpu", "num_threads": threads,
            "log_every": 1, "checkpoint_every": 0, "health_every": 0, "probe_every": 0, "progress": False}
    cfg, trainer, timer = timed_trainer(method, overrides, base)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    trainer.fit()
    step_s = statistics.median(timer.times[2:])
    return {"batch_size": cfg.train.batch_size, "step_s": step_s, "samples_per_s": cfg.train.batch_size / step_s,
            "peak_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024,
            "rss_before_mb": rss_before / 1024, "dataset": cfg.dataset}


def write_fashion_shards(root: Path, n: int = 10_000, shards: int = 10) -> str:
    """The first ``n`` Fashion-MNIST training images as grey PNGs (+ ``cls``) in ``.tar`` shards."""
    import io
    import tarfile

    from PIL import Image

    sys.path.insert(0, str(Path(__file__).parent))
    import fashion_subset

    d = fashion_subset.load(n_train=n)
    per = n // shards
    for s in range(shards):
        with tarfile.open(root / f"fashion-{s:03d}.tar", "w") as tar:
            for i in range(s * per, (s + 1) * per):
                buf = io.BytesIO()
                Image.fromarray(d["train_x"][i, 0].numpy(), mode="L").save(buf, format="PNG")
                for ext, data in (("png", buf.getvalue()), ("cls", str(int(d["train_y"][i])).encode())):
                    info = tarfile.TarInfo(f"{i:06d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return str(root / f"fashion-{{000..{shards - 1:03d}}}.tar")


def points(method: str, recipe_batch: int, shards: str | None, threads: int) -> list[tuple[str, str, dict, int]]:
    """(axis, value, overrides, threads) for one method."""
    out = [("batch", str(b), {"train": {"batch_size": b}}, threads)
           for b in sorted({max(2, recipe_batch // 4), max(2, recipe_batch // 2), recipe_batch})]
    out += [("threads", str(t), {}, t) for t in (1, 2) if t != threads]
    if method == "simclr":
        out += [("image px", str(px), {"augmenter_kwargs": {"image_size": px}}, threads) for px in (42, 56)]
        if shards:
            for w in (0, 2):
                out.append(("data", f"streamed shards, {w} workers",
                            {"dataset": "webdataset_stream", "data": shards, "train": {"num_workers": w},
                             "dataset_kwargs": {"image_size": 28, "channels": 1, "shuffle_buffer": 1000},
                             "augmenter_kwargs": {"image_size": 28}, "evaluators": []}, threads))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2, help="threads of every point but the threads axis")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "cost.json"))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(child(spec["method"], spec["overrides"], args.steps, spec["threads"])))
        return
    from ssl_core.runner import resolve_config

    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="cost-") as tmp:
        shards = write_fashion_shards(Path(tmp)) if "simclr" in args.methods else None
        for method in args.methods:
            recipe_batch = resolve_config(method).train.batch_size
            for axis, value, overrides, threads in points(method, recipe_batch, shards, args.threads):
                spec = json.dumps({"method": method, "overrides": overrides, "threads": threads})
                env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TQDM_DISABLE": "1"}
                out = subprocess.run([sys.executable, __file__, "--child", spec, "--steps", str(args.steps)],
                                     env=env, capture_output=True, text=True)
                if out.returncode != 0:
                    sys.exit(f"{method} {axis}={value} failed:\n{out.stderr[-3000:]}")
                row = {"method": method, "modality": METHODS[method], "axis": axis, "value": value,
                       "threads": threads, **json.loads(out.stdout.strip().splitlines()[-1])}
                rows.append(row)
                print(f"{method:<9} {axis:<9} {value:<26} {row['samples_per_s']:8.1f} samples/s "
                      f"{row['peak_mb']:8.0f} MB", flush=True)
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "child"},
                                                      "rows": rows}, indent=1))
    print("\n| method | varied | value | threads | batch | samples/s | step s | peak MB (training) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['axis']} | {r['value']} | {r['threads']} | {r['batch_size']} | "
              f"{r['samples_per_s']:.1f} | {r['step_s']:.3f} | {r['peak_mb']:.0f} |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
