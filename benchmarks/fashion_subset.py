"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017) from the Debian package's IDX files, for the
speed benchmarks: a seeded, class-balanced-by-chance subset of the training images and the full
test set, as uint8 tensors ``[N, 1, 28, 28]`` with labels."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    _, _, dtype_code, ndim = struct.unpack(">BBBB", data[:4])
    if dtype_code != 0x08:
        raise ValueError(f"{path}: only unsigned-byte IDX files are supported (type 0x{dtype_code:02x}).")
    shape = struct.unpack(">" + "I" * ndim, data[4: 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).exists():
            return root / name
    raise FileNotFoundError(f"{root / stem}(.gz) not found: install dataset-fashion-mnist or pass --data DIR.")


def load(root: Path = DEFAULT_DIR, n_train: int = 10_000, seed: int = 0) -> dict[str, torch.Tensor]:
    """``train_x/train_y`` (a seeded subset of ``n_train``), ``test_x/test_y`` (all 10,000)."""
    tx = read_idx(_find(root, "train-images-idx3-ubyte"))
    ty = read_idx(_find(root, "train-labels-idx1-ubyte"))
    ex = read_idx(_find(root, "t10k-images-idx3-ubyte"))
    ey = read_idx(_find(root, "t10k-labels-idx1-ubyte"))
    idx = torch.randperm(len(tx), generator=torch.Generator().manual_seed(seed))[:n_train].numpy()
    as_img = lambda a: torch.from_numpy(np.array(a)).unsqueeze(1)  # noqa: E731
    return {"train_x": as_img(tx[idx]), "train_y": torch.from_numpy(ty[idx].astype(np.int64)),
            "test_x": as_img(ex), "test_y": torch.from_numpy(ey.astype(np.int64))}
