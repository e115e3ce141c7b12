"""Throughput of the vision plugin's batched, on-device augmentations against the usual
per-image torchvision pipeline run in DataLoader workers, producing the same kinds of views.

For each recipe (SimCLR two views, BYOL's asymmetric pair, DINO multi-crop, MAE crop+flip) the
script times

- ``batched``: this plugin's Augmenter on whole uint8 batches in the main process (per-sample
  parameters from one ``torch.Generator``; torch may use every core it is given), and
- ``torchvision``: ``torchvision.transforms.v2`` applied image by image inside a Dataset, loaded
  by a DataLoader with ``--workers`` worker processes (2 by default), each worker single-threaded
  as PyTorch sets it,

over the same real images (the UCI digits from scikit-learn, upsampled to RGB 32x32 so colour
jitter and grayscale have work to do), and reports source images per second (each yielding
all of its views). Prints a table and writes ``benchmarks/results/augment.json``.

Run: ``python benchmarks/bench_augment.py [--images 2048] [--batch 256] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torchvision
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from ssl_vision.augment import MultiCropAugmenter, SingleViewAugmenter, TwoViewAugmenter, byol_views

RESULTS = Path(__file__).resolve().parent / "results" / "augment.json"


def real_images(n: int, size: int) -> torch.Tensor:
    """``n`` real digit scans as uint8 RGB ``[n, 3, size, size]`` (colour-tinted per class)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    tint = torch.rand(10, 3, 1, 1, generator=torch.Generator().manual_seed(0)) * 0.7 + 0.3
    rgb = x * tint[torch.tensor(bunch.target)] + (1 - x) * tint.flip(0)[torch.tensor(bunch.target)] * 0.3
    rgb = (rgb.clamp(0, 1) * 255).round().to(torch.uint8)
    return rgb[torch.arange(n) % len(rgb)]


# ---------------------------------------------------------------------- torchvision pipelines
def _tv_view(size: int, scale: tuple[float, float], blur_p: float, solarize_p: float, colour: bool = True) -> v2.Compose:
    ops: list[Any] = [v2.RandomResizedCrop(size, scale=scale, antialias=True), v2.RandomHorizontalFlip()]
    if colour:
        ops += [v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8), v2.RandomGrayscale(p=0.2)]
    if blur_p > 0:
        k = max(3, int(round(0.1 * size)) | 1)
        ops.append(v2.RandomApply([v2.GaussianBlur(k, sigma=(0.1, 2.0))], p=blur_p))
    if solarize_p > 0:
        ops.append(v2.RandomSolarize(threshold=128, p=solarize_p))
    ops.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(ops)


def tv_pipelines(size: int, n_local: int) -> dict[str, list[v2.Compose]]:
    """Per-image view pipelines matching the plugin's recipes view by view."""
    local = size // 2
    return {
        "simclr": [_tv_view(size, (0.08, 1.0), 0.5, 0.0)] * 2,
        "byol": [_tv_view(size, (0.08, 1.0), 1.0, 0.0), _tv_view(size, (0.08, 1.0), 0.1, 0.2)],
        "dino": [_tv_view(size, (0.4, 1.0), 1.0, 0.0), _tv_view(size, (0.4, 1.0), 0.1, 0.2)]
        + [_tv_view(local, (0.05, 0.4), 0.5, 0.0)] * n_local,
        "mae": [_tv_view(size, (0.2, 1.0), 0.0, 0.0, colour=False)],
    }


def batched_augmenters(size: int, n_local: int) -> dict[str, Callable[..., Any]]:
    """The plugin's batched augmenters for the same recipes."""
    return {
        "simclr": TwoViewAugmenter(image_size=size),
        "byol": byol_views(image_size=size),
        "dino": MultiCropAugmenter(image_size=size, n_local=n_local),
        "mae": SingleViewAugmenter(image_size=size),
    }


class PerImageViews(Dataset):
    """Applies each view pipeline to one image at a time (the usual DataLoader-side recipe)."""

    def __init__(self, images: torch.Tensor, views: list[v2.Compose]) -> None:
        self.images, self.views = images, views

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> list[torch.Tensor]:
        img = self.images[i]
        return [view(img) for view in self.views]


def time_torchvision(images: torch.Tensor, views: list[v2.Compose], batch: int, workers: int, epochs: int) -> float:
    """Median images/s over ``epochs`` passes through a DataLoader with ``workers`` processes,
    after one warm-up pass (which starts the workers)."""
    loader = DataLoader(PerImageViews(images, views), batch_size=batch, num_workers=workers, shuffle=True,
                        persistent_workers=workers > 0, drop_last=True)
    for _ in loader:
        pass
    rates = []
    for _ in range(epochs):
        start, n = time.perf_counter(), 0
        for out in loader:
            n += out[0].shape[0]
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def time_batched(images: torch.Tensor, aug: Callable[..., Any], batch: int, epochs: int) -> float:
    """Median images/s over ``epochs`` passes of the batched augmenter over the same images
    (uint8 batches in memory), after one warm-up pass."""
    g = torch.Generator().manual_seed(0)
    rates = []
    for e in range(epochs + 1):
        perm = torch.randperm(len(images), generator=g)
        start, n = time.perf_counter(), 0
        for s in range(0, len(images) - batch + 1, batch):
            aug({"image": images[perm[s:s + batch]]}, g)
            n += batch
        if e > 0:
            rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--n-local", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=5, help="timed passes per pipeline (the median is reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the batched augmenter")
    parser.add_argument("--only", nargs="*", default=None, help="subset of simclr byol dino mae")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    images = real_images(args.images, args.size)
    tv, ours = tv_pipelines(args.size, args.n_local), batched_augmenters(args.size, args.n_local)
    rows = []
    for name in args.only or list(tv):
        b = time_batched(images, ours[name], args.batch, args.epochs)
        t = time_torchvision(images, tv[name], args.batch, args.workers, args.epochs)
        rows.append({"recipe": name, "views": len(tv[name]), "batched_img_s": b, "torchvision_img_s": t, "speedup": b / t})
        print(f"{name:7s} views={len(tv[name])}  batched {b:9.0f} img/s  torchvision {t:8.0f} img/s  x{b / t:.1f}", flush=True)

    header = f"{'recipe':8s} {'views':>5s} {'batched img/s':>14s} {'torchvision img/s':>18s} {'speed-up':>9s}"
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        print(f"{r['recipe']:8s} {r['views']:5d} {r['batched_img_s']:14.0f} {r['torchvision_img_s']:18.0f} {r['speedup']:8.1f}x")
    result = {
        "benchmark": "bench_augment",
        "description": "source images/s producing each recipe's views; batched = ssl_vision augmenters on uint8 "
                       "batches in the main process; torchvision = transforms.v2 per image in DataLoader workers",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "torchvision": torchvision.__version__,
                    "load_average": os.getloadavg()},
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
