"""Time of the kNN probe's matching step on the full probe sets: 60,000 bank x 10,000 query
features (Fashion-MNIST's train/test sizes), ``ssl_core.evaluators.knn.weighted_knn_predict``
(k=20, cosine, chunks of 1,024 queries), for a few feature sizes. Features are random unit
vectors: the cost does not depend on their values. Feature extraction (a forward pass over
70,000 images) is not included. Prints a table and writes JSON.

    .venv/bin/python benchmarks/bench_knn_eval.py --dims 128 256 512 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ssl_core.evaluators.knn import weighted_knn_predict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bank", type=int, default=60_000)
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--dims", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/knn_eval.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    rows = []
    for d in args.dims:
        bank = F.normalize(torch.randn(args.bank, d, generator=g), dim=1)
        query = F.normalize(torch.randn(args.queries, d, generator=g), dim=1)
        labels = torch.randint(0, 10, (args.bank,), generator=g)
        t0 = time.perf_counter()
        weighted_knn_predict(bank, labels, query, k=20, num_classes=10)
        rows.append({"dim": d, "bank": args.bank, "queries": args.queries, "seconds": time.perf_counter() - t0,
                     "threads": args.threads})
        print(f"dim {d:4d}: {rows[-1]['seconds']:.1f} s for {args.bank:,} x {args.queries:,}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
