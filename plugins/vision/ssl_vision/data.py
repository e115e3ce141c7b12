"""Vision data sources: the built-in digits set and folders of images (WebDataset shards are in
:mod:`ssl_vision.shards`).

Samples are dicts ``{"image": uint8 [C, H, W], "label": int}``; augmentation happens later, on
the training device, in whole batches.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ssl_core.data import TensorDictDataset, stratified_split
from ssl_core.errors import DataError
from ssl_core.files import IMAGE_SUFFIXES, SHARD_SUFFIXES, find_files, iter_files
from ssl_core.interfaces import DataModule

log = logging.getLogger(__name__)


def digits(path: str | None = None, image_size: int = 16, test_fraction: float = 0.25, seed: int = 0) -> DataModule:
    """UCI handwritten digits (Alpaydin & Kaynak, 1998), as shipped inside scikit-learn.

    1,797 real 8x8 grey scans of digits 0-9 written by 43 people, upsampled to ``image_size``
    with bilinear interpolation. A fixed stratified split keeps 25% for probe testing; SSL
    training sees only the other 75%, without labels.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - sklearn is a dependency of this plugin
        raise DataError("The built-in 'digits' set needs scikit-learn: pip install scikit-learn") from exc
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = torch.nn.functional.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    y = torch.tensor(bunch.target, dtype=torch.long)
    tr, te = stratified_split(bunch.target, test_fraction, seed)
    train = TensorDictDataset(image=x[tr], label=y[tr])
    mean = float(x[tr].float().mean() / 255)
    std = float(x[tr].float().std() / 255)
    return DataModule(
        train=train, eval_train=train, eval_test=TensorDictDataset(image=x[te], label=y[te]),
        num_classes=10, class_names=[str(i) for i in range(10)],
        description=f"UCI digits via scikit-learn: {len(tr)} train / {len(te)} test, {image_size}x{image_size} grey",
        extras={
            "encoder_kwargs": {"in_channels": 1, "mean": [mean], "std": [std]},
            # flipping turns digits into other shapes, so views keep their handedness
            "augmenter_kwargs": {"image_size": image_size, "hflip_p": 0.0, "scale": (0.3, 1.0)},
        },
    )


def decode_image(source: "str | Path | IO[bytes]", image_size: int, channels: int) -> Tensor:
    """Decode an image file (path or binary file object) to uint8 ``[channels, size, size]``:
    converted to grey (1 channel) or RGB (3), resized on the short side and centre-cropped."""
    from PIL import Image

    with Image.open(source) as im:
        im = im.convert("L" if channels == 1 else "RGB")
        im = _resize_center_crop(im, image_size)
        arr = np.asarray(im, dtype=np.uint8)
    t = torch.from_numpy(arr.copy())
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)


class SkippingImageDataset(Dataset):
    """Base of the file-backed image datasets: an unreadable image is reported once by where it
    lives (a path, or ``shard.tar:member``) and replaced by the next readable one, so a long run
    never dies on one corrupt file. Subclasses implement :meth:`_load` and :meth:`_where`."""

    labels: list[int] | None

    def __init__(self) -> None:
        self.bad: set[int] = set()

    def _load(self, j: int) -> Tensor:
        raise NotImplementedError

    def _where(self, j: int) -> str:
        raise NotImplementedError

    @property
    def unreadable(self) -> list[str]:
        """Where the images skipped so far (in this process) live, e.g. their paths."""
        return [self._where(j) for j in sorted(self.bad)]

    def __getitem__(self, i: int) -> dict[str, Tensor | int]:
        n = len(self)  # type: ignore[arg-type]
        for offset in range(n):
            j = (i + offset) % n
            if j in self.bad:
                continue
            try:
                image = self._load(j)
            except Exception as exc:  # PIL and tarfile raise many types for corrupt data
                self.bad.add(j)
                warnings.warn(f"Skipping unreadable image {self._where(j)}: {exc}", stacklevel=2)
                continue
            sample: dict[str, Tensor | int] = {"image": image}
            if self.labels is not None:
                sample["label"] = self.labels[j]
            return sample
        raise DataError(f"None of the {n} images could be read; check the files' formats.")


class ImageFolderDataset(SkippingImageDataset):
    """Images under a folder, decoded on access and resized to a fixed square size.

    Class sub-folders (``root/<class>/*.jpg``) give labels; flat folders give unlabelled data.
    A file that cannot be decoded is reported once by path and replaced by the next readable one,
    so a long run never dies on one corrupt image.
    """

    def __init__(self, files: list[Path], labels: list[int] | None, image_size: int, channels: int) -> None:
        super().__init__()
        self.files, self.labels = files, labels
        self.image_size, self.channels = image_size, channels

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, j: int) -> Tensor:
        return decode_image(self.files[j], self.image_size, self.channels)

    def _where(self, j: int) -> str:
        return str(self.files[j])


def _resize_center_crop(im, size: int):  # type: ignore[no-untyped-def]
    from PIL import Image

    w, h = im.size
    scale = size / min(w, h)
    im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return im.crop((left, top, left + size, top + size))


def image_folder(
    path: str | None = None, image_size: int = 32, channels: int = 3, test_fraction: float = 0.2, seed: int = 0
) -> DataModule:
    """Images from a folder (jpg/png/...); class sub-folders give labels for evaluation."""
    if not path:
        raise DataError("The 'imagefolder' dataset needs --data PATH (a folder of images).")
    root = Path(path).expanduser()
    shards = root.is_dir() and next(iter_files(root, SHARD_SUFFIXES), None) is not None
    hint = ("It holds .tar shards: read them with --dataset webdataset." if shards
            else "Put images in the folder or in one sub-folder per class.")
    listing = find_files(root, IMAGE_SUFFIXES, what="images", files=False, hint=hint).class_files("images")
    files, labels, classes = listing.files, listing.labels, listing.classes
    extras = {"encoder_kwargs": {"in_channels": channels}, "augmenter_kwargs": {"image_size": image_size}}
    if labels is None or len(classes) < 2:
        ds = ImageFolderDataset(files, labels, image_size, channels)
        return DataModule(train=ds, description=f"{len(files)} unlabelled images from {root}", extras=extras)
    tr, te = stratified_split(np.asarray(labels), test_fraction, seed)
    pick = lambda idx: ImageFolderDataset([files[i] for i in idx], [labels[i] for i in idx], image_size, channels)  # noqa: E731
    train = pick(tr)
    return DataModule(
        train=train, eval_train=train, eval_test=pick(te), num_classes=len(classes), class_names=classes,
        description=f"{len(files)} images in {len(classes)} classes from {root}", extras=extras,
    )


class HFImageDataset(SkippingImageDataset):
    """Rows of a Hugging Face dataset whose ``column`` holds images (bytes or paths), decoded on access."""

    def __init__(self, table: Any, column: str, rows: list[int], labels: list[int] | None, image_size: int,
                 channels: int, origin: str) -> None:
        super().__init__()
        self.table, self.column, self.rows, self.labels = table, column, rows, labels
        self.image_size, self.channels, self.origin = image_size, channels, origin

    def __len__(self) -> int:
        return len(self.rows)

    def _load(self, j: int) -> Tensor:
        import io

        from ssl_core.hf_data import cell_bytes

        return decode_image(io.BytesIO(cell_bytes(self.table[self.rows[j]][self.column])), self.image_size, self.channels)

    def _where(self, j: int) -> str:
        return f"{self.origin} row {self.rows[j]}"


def hf_images(
    path: str | None = None, image_column: str = "image", label_column: str | None = "label", split: str = "train",
    test_split: str | None = None, image_size: int = 32, channels: int = 3, test_fraction: float = 0.2, seed: int = 0,
) -> DataModule:
    """A Hugging Face image dataset on disk (save_to_disk folder, .arrow or .parquet files).

    ``image_column`` holds images (an Image feature, bytes or file paths); ``label_column`` (a
    ClassLabel or any values) gives probe labels. A ``test``/``validation`` split is the probes'
    held-out side; without one a stratified ``test_fraction`` of ``split`` is held out.
    """
    from ssl_core.hf_data import check_columns, class_labels, holdout, labels_like, open_hf, raw_column

    hf = open_hf(path, split, test_split)
    check_columns(hf.train, hf.source, image_column=image_column)
    train_t = raw_column(hf.train, image_column)
    labels, names = class_labels(hf.train, label_column)
    extras = {"encoder_kwargs": {"in_channels": channels}, "augmenter_kwargs": {"image_size": image_size}}
    make = lambda t, rows, lab: HFImageDataset(t, image_column, rows, lab, image_size, channels, hf.source)  # noqa: E731
    if labels is None or len(names or []) < 2:
        return DataModule(train=make(train_t, list(range(len(train_t))), None), extras=extras,
                          description=f"{len(train_t)} unlabelled images from {hf.source}")
    if hf.test is not None and label_column in hf.test.column_names:
        test_t = raw_column(hf.test, image_column)
        test_labels = labels_like(hf.test, label_column, names, hf.source)  # type: ignore[arg-type]
        train = make(train_t, list(range(len(train_t))), labels)
        test = make(test_t, list(range(len(test_t))), test_labels)
    else:
        tr, te = holdout(len(train_t), labels, test_fraction, seed)
        train = make(train_t, tr, [labels[i] for i in tr])
        test = make(train_t, te, [labels[i] for i in te])
    return DataModule(train=train, eval_train=train, eval_test=test, num_classes=len(names or []), class_names=names,
                      description=f"{len(train)} train / {len(test)} test images in {len(names or [])} classes from {hf.source}",
                      extras=extras)
