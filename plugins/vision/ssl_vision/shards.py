"""WebDataset shards: POSIX tar files whose members are grouped into samples by key.

The WebDataset convention (github.com/webdataset/webdataset): the member ``dir/n01440764_10026.jpg``
belongs to the sample with key ``dir/n01440764_10026`` and field ``jpg`` (everything after the
first dot of the file name). A sample here needs one image field (jpg, jpeg, png, webp, bmp, ppm,
tif, tiff, gif); its label comes from ``cls`` (an integer as text) or, with ``label="txt"``, from
``txt`` (a class name; names are sorted and numbered).

Read with Python's ``tarfile`` (no extra dependency): shards are indexed once (member offsets
and sizes, headers only) and each image is read on access by seeking into its shard, so the
dataset is map-style (shuffling, resuming and DataLoader workers work as for any other). Only
uncompressed ``.tar`` shards can be read this way.

Damage never stops a run: a shard that is truncated or corrupt is reported by path and the
samples before the damage are kept; an image that cannot be decoded is reported as
``shard.tar:member`` and skipped (replaced by the next readable sample).
"""

from __future__ import annotations

import io
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from ssl_core.errors import DataError
from ssl_core.interfaces import DataModule
from ssl_core.streaming import expand_urls, is_remote, split_key
from ssl_core.data import stratified_split
from ssl_vision.data import SkippingImageDataset, decode_image

IMAGE_FIELDS = ("jpg", "jpeg", "png", "webp", "bmp", "ppm", "tif", "tiff", "gif")
__all__ = ["IMAGE_FIELDS", "ShardImageDataset", "ShardMember", "expand_shard_spec", "index_shard", "split_key", "webdataset"]


@dataclass(frozen=True)
class ShardMember:
    """Where one sample's image lives: shard index, byte offset and size, member name."""

    shard: int
    offset: int
    size: int
    name: str


def expand_shard_spec(spec: str) -> list[Path]:
    """Shard files named by ``spec``: a ``.tar`` file, a folder (its ``*.tar`` files, recursively),
    a glob (``shards/train-*.tar``) or WebDataset brace notation (``train-{000..009}.tar``);
    several joined by ``::``. Expansion is :func:`ssl_core.streaming.expand_urls`; names that
    match nothing give ``[]``, and remote shards (http, pipe) are left out (they can only be
    streamed: dataset ``webdataset_stream``)."""
    if Path(spec).is_file():
        return [Path(spec)]
    try:
        urls = expand_urls(spec)
    except DataError:
        return []
    return [Path(u) for u in urls if not is_remote(u) and u.endswith(".tar")]


def index_shard(path: Path, shard_index: int, label: str | None) -> tuple[list[ShardMember], list[str | None]]:
    """Scan one shard's headers: the image member and raw label text of every sample.

    A shard that is cut short or corrupt is reported (by path) and what was read before the
    damage is kept.
    """
    images: dict[str, ShardMember] = {}
    labels: dict[str, str] = {}
    order: list[str] = []
    problem = None
    try:
        size = path.stat().st_size
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                if member.offset_data + member.size > size:
                    problem = f"member {member.name} needs {member.size} bytes but the file ends first"
                    break
                key, field = split_key(member.name)
                if field in IMAGE_FIELDS and key not in images:
                    images[key] = ShardMember(shard_index, member.offset_data, member.size, member.name)
                    order.append(key)
                elif label is not None and field == label:
                    fh = tar.extractfile(member)
                    labels[key] = fh.read().decode("utf-8", errors="replace").strip() if fh else ""
            end = tar.offset  # tarfile stops quietly at a cut-off header: look for the end marker
        if problem is None:
            with open(path, "rb") as fh:
                fh.seek(end)
                marker = fh.read(1024)
            if len(marker) < 1024 or any(marker):
                problem = f"no end-of-archive marker after byte {end} (the file looks cut short)"
    except (tarfile.TarError, EOFError, OSError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        warnings.warn(
            f"WebDataset shard {path} is truncated or corrupt ({problem}); "
            f"keeping the {len(order)} sample(s) read before the damage.", stacklevel=2,
        )
    return [images[k] for k in order], [labels.get(k) for k in order]


class ShardImageDataset(SkippingImageDataset):
    """Images read from WebDataset shards by seeking to their recorded offsets."""

    def __init__(self, shards: list[Path], members: list[ShardMember], labels: list[int] | None,
                 image_size: int, channels: int) -> None:
        super().__init__()
        self.shards, self.members, self.labels = shards, members, labels
        self.image_size, self.channels = image_size, channels

    def __len__(self) -> int:
        return len(self.members)

    def _load(self, j: int) -> Tensor:
        m = self.members[j]
        with open(self.shards[m.shard], "rb") as fh:
            fh.seek(m.offset)
            payload = fh.read(m.size)
        if len(payload) != m.size:
            raise DataError(f"only {len(payload)} of {m.size} bytes present (shard cut short)")
        return decode_image(io.BytesIO(payload), self.image_size, self.channels)

    def _where(self, j: int) -> str:
        m = self.members[j]
        return f"{self.shards[m.shard]}:{m.name}"


def _labels_to_ints(raw: list[str | None], label: str, where: list[str]) -> tuple[list[int] | None, list[str] | None]:
    if not raw or any(r is None for r in raw):
        return None, None
    if label == "cls":
        ints = []
        for text, w in zip(raw, where):
            try:
                ints.append(int(str(text).split()[0]))
            except (ValueError, IndexError):
                raise DataError(
                    f"{w}: its .cls field {text!r} is not an integer class index. Fix the shard, or "
                    "pass --set dataset_kwargs.label=txt (class names) or label=null (no labels)."
                ) from None
        names = [str(c) for c in sorted(set(ints))]
        return ints, names
    names = sorted(set(str(r) for r in raw))
    lookup = {n: i for i, n in enumerate(names)}
    return [lookup[str(r)] for r in raw], names


def webdataset(
    path: str | None = None, image_size: int = 32, channels: int = 3, label: str | None = "cls",
    test_fraction: float = 0.2, seed: int = 0,
) -> DataModule:
    """Images from WebDataset ``.tar`` shards (a folder, a glob, a file or ``name-{000..009}.tar``);
    ``cls`` (or ``txt`` with ``label="txt"``) fields give labels for evaluation."""
    if not path:
        raise DataError("The 'webdataset' dataset needs --data PATH: a folder of .tar shards, a glob or a .tar file.")
    if label not in (None, "cls", "txt"):
        raise DataError(f"webdataset label must be 'cls', 'txt' or null, got {label!r}.")
    try:
        remote = [u for u in expand_urls(str(path)) if is_remote(u)]
    except DataError:
        remote = []
    if remote:
        raise DataError(
            f"The 'webdataset' dataset reads local shards by seeking into them, but {remote[0]} is remote. "
            "Stream remote shards with --dataset webdataset_stream (and train.steps / --steps N)."
        )
    shards = expand_shard_spec(str(path))
    if not shards:
        raise DataError(f"No .tar shards found at {path}. Pass a folder of .tar files, a glob like 'shards/*.tar', or one .tar file.")
    members: list[ShardMember] = []
    raw: list[str | None] = []
    for i, shard in enumerate(shards):
        m, r = index_shard(shard, i, label)
        members += m
        raw += r
    if not members:
        raise DataError(
            f"The {len(shards)} shard(s) at {path} hold no image samples (fields looked for: "
            f"{', '.join(IMAGE_FIELDS)}). Check the member names, e.g. 'sample0001.jpg' + 'sample0001.cls'."
        )
    where = [f"{shards[m.shard]}:{m.name}" for m in members]
    labels, names = _labels_to_ints(raw, label, where) if label else (None, None)
    extras = {"encoder_kwargs": {"in_channels": channels}, "augmenter_kwargs": {"image_size": image_size}}
    source = f"{len(members)} images in {len(shards)} WebDataset shard(s) at {path}"
    if labels is None or names is None or len(names) < 2:
        ds = ShardImageDataset(shards, members, None, image_size, channels)
        return DataModule(train=ds, description=f"{source}, unlabelled", extras=extras)
    classes = sorted(set(labels))
    if classes != list(range(len(classes))):  # e.g. cls 3, 7, 9 -> 0, 1, 2
        remap = {c: i for i, c in enumerate(classes)}
        labels = [remap[c] for c in labels]
    tr, te = stratified_split(np.asarray(labels), test_fraction, seed)

    def pick(idx: np.ndarray) -> ShardImageDataset:
        return ShardImageDataset(shards, [members[i] for i in idx], [labels[i] for i in idx], image_size, channels)  # type: ignore[index]

    train = pick(tr)
    return DataModule(
        train=train, eval_train=train, eval_test=pick(te), num_classes=len(names), class_names=names,
        description=f"{source}, {len(names)} classes", extras=extras,
    )
