"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017) as the built-in vision data, and the idx-folder reader.

Fashion-MNIST is 70,000 real 28x28 grey photographs of Zalando articles in 10 balanced classes,
split officially into 60,000 training and 10,000 test images (MIT licence). Debian ships the four
original idx ``.gz`` files in the package ``dataset-fashion-mnist``; ``scripts/install.sh``
installs it where it can. Where the files are looked for, first match wins:

1. ``dataset_kwargs.root`` (``--set dataset_kwargs.root=DIR``);
2. the environment variable ``SSLKIT_FASHION_MNIST`` (a folder);
3. ``/usr/share/datasets/fashion-mnist`` (the Debian package).

CPU-sized defaults: a seeded, class-balanced subset of ``train_size`` images from the official
training split (self-supervised training and the probes' training set) and ``test_size`` images
from the official test split (the probes' test set). ``train_size=0`` / ``test_size=0`` take a
whole split. When the files are not found the built-in run falls back to the tiny UCI digits
with a loud warning naming what was used and how to install the real set (never silently).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_core.data import TensorDictDataset, stratified_split
from ssl_core.errors import DataError
from ssl_core.interfaces import DataModule
from ssl_vision.idx import find_idx_split, read_idx_split

ENV_VAR = "SSLKIT_FASHION_MNIST"
"""Environment variable naming a folder with the four Fashion-MNIST idx(.gz) files."""
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package puts the files."""
CLASS_NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
"""The ten classes in label order (the dataset's own names, lower-cased; "T-shirt/top" shortened)."""
TRAIN_SIZE = 10_000
"""Default images drawn (1,000 per class) from the official training split: SSL training + probe training."""
TEST_SIZE = 2_000
"""Default images drawn (200 per class) from the official test split: the probes' test set."""

INSTALL_HINT = (
    "To install it: on Debian/Ubuntu run `sudo apt-get install dataset-fashion-mnist` (or "
    "`bash scripts/install.sh` as root); elsewhere download the four files train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz of "
    "Fashion-MNIST (github.com/zalandoresearch/fashion-mnist) into a folder and set "
    f"{ENV_VAR}=FOLDER or pass --set dataset_kwargs.root=FOLDER."
)


def balanced_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of ``size // classes`` samples per class, drawn with ``seed``; sorted ascending.

    ``size`` 0 (or at least ``len(labels)``) returns every index. A class with too few samples
    is an error rather than a silently unbalanced subset.
    """
    if size <= 0 or size >= len(labels):
        return np.arange(len(labels))
    classes = np.unique(labels)
    per_class = size // len(classes)
    if per_class == 0:
        raise DataError(f"A balanced subset of {size} samples over {len(classes)} classes leaves no sample per "
                        f"class; use at least {len(classes)} (dataset_kwargs.train_size / test_size).")
    rng = np.random.default_rng(seed)
    picks = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        if len(idx) < per_class:
            raise DataError(f"Class {c} has only {len(idx)} samples, fewer than the {per_class} per class a "
                            f"balanced subset of {size} needs. Lower dataset_kwargs.train_size / test_size.")
        picks.append(rng.choice(idx, size=per_class, replace=False))
    return np.sort(np.concatenate(picks))


def images_to_tensor(images: np.ndarray, image_size: int | None) -> torch.Tensor:
    """uint8 ``[N, H, W]`` -> uint8 ``[N, 1, S, S]``, resized bilinearly when ``image_size`` differs."""
    x = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1)
    if image_size and image_size != x.shape[-1]:
        xf = torch.nn.functional.interpolate(x.float(), size=(image_size, image_size), mode="bilinear",
                                             antialias=True, align_corners=False)
        x = xf.round().clamp(0, 255).to(torch.uint8)
    return x


def grey_datamodule(
    train_x: torch.Tensor, train_y: np.ndarray, test_x: torch.Tensor, test_y: np.ndarray,
    class_names: list[str], description: str, augmenter_kwargs: dict[str, Any], name: str,
) -> DataModule:
    """A labelled grey-image DataModule: SSL and probe training on ``train``, probe test on ``test``.

    The encoder hints carry the training images' mean/std; ``extras["dataset"]`` names the data.
    """
    xf = train_x.float() / 255
    train = TensorDictDataset(image=train_x, label=torch.as_tensor(train_y, dtype=torch.long))
    test = TensorDictDataset(image=test_x, label=torch.as_tensor(test_y, dtype=torch.long))
    return DataModule(
        train=train, eval_train=train, eval_test=test, num_classes=len(class_names), class_names=list(class_names),
        description=description,
        extras={"encoder_kwargs": {"in_channels": 1, "mean": [float(xf.mean())], "std": [float(xf.std())]},
                "augmenter_kwargs": dict(augmenter_kwargs), "dataset": name},
    )


# ---------------------------------------------------------------------- locating the files
def locate(root: str | None = None) -> tuple[Path | None, list[str]]:
    """The folder holding Fashion-MNIST's train and test idx files, and every place looked in.

    An explicitly named folder (``root`` or ``$SSLKIT_FASHION_MNIST``) that lacks the files is an
    error: the user asked for it, so falling back to other data would hide the mistake.
    """
    looked: list[str] = []
    for where, value in (("dataset_kwargs.root", root), (f"${ENV_VAR}", os.environ.get(ENV_VAR))):
        if not value:
            continue
        folder = Path(value).expanduser()
        if not folder.is_dir():
            raise DataError(f"{where} names {folder}, which is not a folder. Point it at the folder holding "
                            "Fashion-MNIST's four idx(.gz) files, or unset it.")
        if find_idx_split(folder, "train") and find_idx_split(folder, "test"):
            return folder, looked + [f"{folder} ({where})"]
        raise DataError(f"{where} names {folder}, but it does not hold Fashion-MNIST's train-images-idx3-ubyte, "
                        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (.gz or raw). "
                        + INSTALL_HINT)
    looked.append(str(DEBIAN_DIR))
    if DEBIAN_DIR.is_dir() and find_idx_split(DEBIAN_DIR, "train") and find_idx_split(DEBIAN_DIR, "test"):
        return DEBIAN_DIR, looked
    return None, looked


def load_split_subset(folder: Path, split: str, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A class-balanced, seeded subset of one official split: (images uint8 [n, 28, 28], labels)."""
    files = find_idx_split(folder, split)
    assert files is not None  # locate() checked
    images, labels = read_idx_split(*files)
    if labels.max() >= len(CLASS_NAMES):
        raise DataError(f"{files[1]} holds label {labels.max()}, but Fashion-MNIST has {len(CLASS_NAMES)} classes "
                        "(0-9). Is this folder another dataset? Read it with --dataset idx --data FOLDER.")
    idx = balanced_subset(labels, size, seed + (0 if split == "train" else 1))
    return images[idx], labels[idx]


AUGMENT_HINTS = {"hflip_p": 0.5, "scale": (0.2, 1.0)}
"""Augmentation hints for Fashion-MNIST: garments are left-right symmetric, so views flip."""


def fashion_mnist(
    path: str | None = None, root: str | None = None, train_size: int = TRAIN_SIZE, test_size: int = TEST_SIZE,
    image_size: int = 28, seed: int = 0, fallback: bool = True,
) -> DataModule:
    """Fashion-MNIST (Zalando, MIT): 28x28 grey articles of clothing, 10 classes, official train/test split.

    ``train_size`` images (balanced over the classes, drawn with ``seed``) from the official 60,000
    training images serve self-supervised training and the probes' training; ``test_size`` from the
    official 10,000 test images are the probes' test set; 0 takes a whole split. ``root`` (or
    ``$SSLKIT_FASHION_MNIST``) names a folder with the four idx(.gz) files; otherwise Debian's
    ``/usr/share/datasets/fashion-mnist``. When none is found and ``fallback`` is true the run uses
    the built-in digits instead and says so loudly (``fallback=False`` makes it an error).
    """
    if path:
        raise DataError("The built-in 'fashion_mnist' set takes no --data; name its folder with "
                        f"--set dataset_kwargs.root=DIR (or ${ENV_VAR}), or read any MNIST-family folder "
                        "with --dataset idx --data DIR.")
    folder, looked = locate(root)
    if folder is None:
        message = (f"Fashion-MNIST was not found (looked in {', '.join(looked)}). " + INSTALL_HINT)
        if not fallback:
            raise DataError(message)
        return _digits_fallback(message, image_size, seed)
    tr_x, tr_y = load_split_subset(folder, "train", train_size, seed)
    te_x, te_y = load_split_subset(folder, "test", test_size, seed)
    return grey_datamodule(
        images_to_tensor(tr_x, image_size), tr_y, images_to_tensor(te_x, image_size), te_y, CLASS_NAMES,
        description=(f"Fashion-MNIST from {folder}: {len(tr_y):,} of 60,000 official train images (SSL + probe "
                     f"train) / {len(te_y):,} of 10,000 official test images (probe test), balanced, seed {seed}, "
                     f"{image_size}x{image_size} grey"),
        augmenter_kwargs={"image_size": image_size, **AUGMENT_HINTS},
        name="fashion_mnist",
    )


def fallback_banner(message: str, used: str) -> str:
    """The loud multi-line warning printed when a built-in set stands in for a missing one."""
    bar = "!" * 78
    return f"\n{bar}\nWARNING: {message}\nThis run uses {used} INSTEAD; its results are not Fashion-MNIST results.\n{bar}"


def warn_fallback(message: str, used: str) -> None:
    """Print the fallback banner to stderr and raise a ``UserWarning`` (for callers that check)."""
    banner = fallback_banner(message, used)
    print(banner, file=sys.stderr, flush=True)
    warnings.warn(f"{message} Using {used} instead.", UserWarning, stacklevel=3)


def _digits_fallback(message: str, image_size: int, seed: int) -> DataModule:
    from ssl_vision.data import digits

    warn_fallback(message, "the tiny built-in UCI digits set (1,797 images, 8x8 upsampled)")
    data = digits(image_size=16, seed=seed)
    data.description = "FALLBACK (Fashion-MNIST not installed): " + data.description
    data.extras["dataset"] = "digits"
    data.extras["dataset_kwargs"] = {"image_size": 16, "seed": seed}
    return data


# ---------------------------------------------------------------------- any MNIST-family folder
def idx_folder(
    path: str | None = None, prefix: str = "", image_size: int | None = None, train_size: int = 0,
    test_size: int = 0, test_fraction: float = 0.2, seed: int = 0, class_names: list[str] | None = None,
    transpose: bool = False,
) -> DataModule:
    """A folder of MNIST-family idx files (MNIST, Fashion-MNIST, KMNIST, EMNIST), raw or ``.gz``.

    Reads ``train-images-idx3-ubyte`` + ``train-labels-idx1-ubyte`` and, when present, ``t10k-...``
    as the probes' test split (otherwise a stratified ``test_fraction`` of train is held out).
    ``prefix`` picks one set among several (``emnist-balanced-``); ``transpose`` flips EMNIST's
    stored orientation; ``train_size``/``test_size`` take seeded balanced subsets (0: all).
    """
    if not path:
        raise DataError("The 'idx' dataset needs --data DIR: a folder holding train-images-idx3-ubyte(.gz) and "
                        "train-labels-idx1-ubyte(.gz) (and optionally the t10k-* test files).")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"idx folder {root} does not exist or is not a folder. Check --data.")
    train_files = find_idx_split(root, "train", prefix)
    if train_files is None:
        names = sorted(p.name for p in root.iterdir())[:12]
        raise DataError(f"No {prefix}train-images-idx3-ubyte(.gz) + {prefix}train-labels-idx1-ubyte(.gz) pair in "
                        f"{root} (it holds: {', '.join(names) or 'nothing'}). Put the MNIST-family files there, "
                        "or set --set dataset_kwargs.prefix=PREFIX for prefixed names such as emnist-balanced-.")
    tr_x, tr_y = read_idx_split(*train_files)
    test_files = find_idx_split(root, "test", prefix)
    if test_files is not None:
        te_x, te_y = read_idx_split(*test_files)
        if te_x.shape[1:] != tr_x.shape[1:]:
            raise DataError(f"{test_files[0]} holds {te_x.shape[1]}x{te_x.shape[2]} images but {train_files[0]} "
                            f"holds {tr_x.shape[1]}x{tr_x.shape[2]}: not the same dataset.")
        split_note = f"official test split ({test_files[0].name})"
    else:
        tr, te = stratified_split(tr_y, test_fraction, seed)
        tr_x, tr_y, te_x, te_y = tr_x[tr], tr_y[tr], tr_x[te], tr_y[te]
        split_note = f"stratified {test_fraction:.0%} of train (no t10k files)"
    tr_idx = balanced_subset(tr_y, train_size, seed)
    te_idx = balanced_subset(te_y, test_size, seed + 1)
    tr_x, tr_y, te_x, te_y = tr_x[tr_idx], tr_y[tr_idx], te_x[te_idx], te_y[te_idx]
    if transpose:
        tr_x, te_x = tr_x.transpose(0, 2, 1), te_x.transpose(0, 2, 1)
    num_classes = int(max(tr_y.max(), te_y.max())) + 1
    names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    if len(names) < num_classes:
        raise DataError(f"dataset_kwargs.class_names has {len(names)} names but the labels go up to {num_classes - 1}.")
    size = image_size or tr_x.shape[-1]
    return grey_datamodule(
        images_to_tensor(tr_x, size), tr_y, images_to_tensor(te_x, size), te_y, names,
        description=f"idx files in {root}: {len(tr_y):,} train / {len(te_y):,} test ({split_note}), "
                    f"{num_classes} classes, {size}x{size} grey",
        augmenter_kwargs={"image_size": size}, name="idx",
    )
