"""Reading WebDataset shards: sslkit's stream vs a plain hand-written tar + PIL loop.

    python benchmarks/bench_stream.py [--images 8192] [--shards 8] [--batch-size 256]

Writes the built-in digits (upscaled to 32x32 RGB PNGs, repeated to ``--images``) into local
``.tar`` shards, then decodes one full pass through a DataLoader, in images/s:
- the plain loop: ``tarfile`` in streaming mode, PIL decode, resize, stack; no DataLoader;
- ``webdataset_stream`` from a local path, over HTTP from a local ``http.server``, and through
  ``pipe:cat``, each with 0 and 2 DataLoader workers;
- the map-style ``webdataset`` dataset (indexed tar files, random access).
Prints a table with ratios to the plain loop and writes benchmarks/results/stream.json.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import io
import json
import os
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ssl_core.data import default_collate


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the shard folder without logging every request."""

    def log_message(self, format: str, *args: object) -> None:
        pass


def write_shards(root: Path, images: int, shards: int) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits().images  # 1797 x 8 x 8, values 0..16
    per_shard = images // shards
    for s in range(shards):
        with tarfile.open(root / f"bench-{s:03d}.tar", "w") as tar:
            for i in range(per_shard):
                n = s * per_shard + i
                img = Image.fromarray((digits[n % len(digits)] * 15).astype(np.uint8)).resize((32, 32)).convert("RGB")
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                for ext, data in (("png", buf.getvalue()), ("cls", str(n % 10).encode())):
                    info = tarfile.TarInfo(f"{n:06d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


def plain_loop(root: Path, batch_size: int) -> int:
    """What one would write by hand: stream each tar, decode PNGs, batch them."""
    batch: list[torch.Tensor] = []
    seen = 0
    for shard in sorted(root.glob("*.tar")):
        with tarfile.open(shard, "r|") as tar:
            for member in tar:
                if not member.name.endswith(".png"):
                    continue
                img = Image.open(tar.extractfile(member)).convert("RGB").resize((32, 32))
                batch.append(torch.from_numpy(np.array(img)).permute(2, 0, 1))
                if len(batch) == batch_size:
                    torch.stack(batch)
                    seen += batch_size
                    batch = []
    return seen


def through_loader(dataset, collate, workers: int, batch_size: int) -> int:  # type: ignore[no-untyped-def]
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate, drop_last=True)
    return sum(len(b["image"]) for b in loader)


ROUNDS = 3


def timed(fn) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """Median seconds over ROUNDS calls, and the images one call read."""
    times = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=8192)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3, help="passes per reader; the median is reported")
    args = ap.parse_args()
    global ROUNDS
    ROUNDS = args.rounds
    from ssl_vision.shards import webdataset
    from ssl_vision.stream import webdataset_stream

    from ssl_core.streaming import PIPE_ENV

    os.environ[PIPE_ENV] = "1"  # the pipe:cat spec below is this script's own command

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_shards(root, args.images, args.shards)
        handler = functools.partial(QuietHandler, directory=tmp)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        last = args.shards - 1
        specs = {
            "local path": f"{tmp}/bench-{{000..{last:03d}}}.tar",
            "http://": f"http://127.0.0.1:{server.server_address[1]}/bench-{{000..{last:03d}}}.tar",
            "pipe:cat": f"pipe:cat {tmp}/bench-{{000..{last:03d}}}.tar",
        }
        rows = []
        secs, n = timed(lambda: plain_loop(root, args.batch_size))
        rows.append({"reader": "plain tar + PIL loop", "workers": 0, "images_per_s": n / secs})
        for name, spec in specs.items():
            dm = webdataset_stream(spec, image_size=32, shuffle_buffer=0)
            for workers in (0, 2):
                secs, n = timed(lambda: through_loader(dm.train, dm.collate or default_collate, workers, args.batch_size))
                rows.append({"reader": f"webdataset_stream, {name}", "workers": workers, "images_per_s": n / secs})
        t = time.perf_counter()
        dm = webdataset(tmp, image_size=32)  # reads every tar header once, up front
        index_s = time.perf_counter() - t
        for workers in (0, 2):
            secs, n = timed(lambda: through_loader(dm.train, dm.collate or default_collate, workers, args.batch_size))
            rows.append({"reader": "webdataset (indexed, map-style)", "workers": workers, "images_per_s": n / secs,
                         "index_s": index_s})
        server.shutdown()
    base = rows[0]["images_per_s"]
    print(f"{args.images} images (32x32 PNG) in {args.shards} shards, batch {args.batch_size}, "
          f"{os.cpu_count()} CPU cores, median of {args.rounds} passes")
    print(f"{'reader':<44}{'workers':>8}{'images/s':>10}{'vs plain':>10}")
    for r in rows:
        r["ratio_to_plain"] = r["images_per_s"] / base
        print(f"{r['reader']:<44}{r['workers']:>8}{r['images_per_s']:>10.0f}{r['ratio_to_plain']:>10.2f}")
    out = Path(__file__).parent / "results" / "stream.json"
    out.write_text(json.dumps({"images": args.images, "shards": args.shards, "batch_size": args.batch_size,
                               "rounds": args.rounds,
                               "torch": torch.__version__, "rows": rows}, indent=2))
    print(f"(the indexed dataset's pass excludes its {index_s:.2f} s of indexing, done once at start-up)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
