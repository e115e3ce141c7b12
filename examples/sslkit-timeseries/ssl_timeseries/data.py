"""Time-series data: a built-in labelled set and a reader for your files."""

from __future__ import annotations

import numpy as np
import torch

from ssl_core import DataError, DataModule
from ssl_core.data import TensorDictDataset, stratified_split
from ssl_core.files import find_files

SUFFIXES = (".npy", ".csv")


def _module(x: torch.Tensor, y: np.ndarray, names: list[str], test_fraction: float, seed: int,
            description: str) -> DataModule:
    tr, te = stratified_split(y, test_fraction, seed, both_sides=True)
    labels = torch.as_tensor(y, dtype=torch.long)
    train = TensorDictDataset(series=x[tr], label=labels[tr])
    return DataModule(train=train, eval_train=train, eval_test=TensorDictDataset(series=x[te], label=labels[te]),
                      num_classes=len(names), class_names=names, description=description,
                      extras={"encoder_kwargs": {"in_channels": x.shape[1]}})


def sequential_digits(path: str | None = None, test_fraction: float = 0.25, seed: int = 0) -> DataModule:
    """UCI handwritten digits (shipped in scikit-learn) read pixel by pixel as 64-step series,
    as sequential MNIST reads MNIST (Le et al., 2015): 1,797 labelled series, 10 classes."""
    if path:
        raise DataError("The built-in 'sequential_digits' takes no --data; use 'series_folder' for your files.")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.data / 16.0, dtype=torch.float32).unsqueeze(1)  # [N, 1 channel, 64 steps]
    return _module(x, bunch.target, [str(i) for i in range(10)], test_fraction, seed,
                   "UCI digits as 64-step series (scikit-learn)")


def series_folder(path: str | None = None, length: int = 128, test_fraction: float = 0.2, seed: int = 0) -> DataModule:
    """Your series: .npy files (``[T]`` or ``[C, T]``) or .csv files (a row per time step, a column
    per channel), cropped or zero-padded to ``length`` steps. Class sub-folders give labels."""
    if not path:
        raise DataError("The 'series_folder' dataset needs --data PATH (a folder of .npy/.csv series).")
    listing = find_files(path, SUFFIXES, what="series files", files=False,
                         hint="Put .npy or .csv files in one sub-folder per class.").class_files("series files")
    if not listing.labelled:
        raise DataError(f"{path} needs one sub-folder per class (at least two) so probes have labels.")
    series = []
    for f in listing.files:
        a = np.load(f) if f.suffix.lower() == ".npy" else np.loadtxt(f, delimiter=",", ndmin=2).T
        a = np.atleast_2d(a).astype(np.float32)[:, :length]
        series.append(np.pad(a, ((0, 0), (0, length - a.shape[1]))))
    if len({s.shape[0] for s in series}) != 1:
        raise DataError(f"Series under {path} have different channel counts; every file needs the same.")
    x = torch.from_numpy(np.stack(series))
    y = np.asarray(listing.labels)
    return _module(x, y, listing.classes, test_fraction, seed, f"{len(series)} series from {path}")
