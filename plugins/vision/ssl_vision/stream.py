"""Images streamed from WebDataset shards (dataset ``webdataset_stream``): for corpora larger
than the local disk, read shard by shard from a path, an ``http(s)://`` URL or a
``pipe:COMMAND`` (see :mod:`ssl_core.streaming`).

Training samples are ``{"image": uint8 [C, H, W]}`` (plus ``"label"`` with ``label="cls"``), as
from the map-style ``webdataset`` dataset, decoded with the same :func:`ssl_vision.data.decode_image`.
The stream has no length, so a run sets ``train.steps`` (or ``samples_per_epoch``).

Probes need labelled data with random access, which a stream does not give. ``eval_path``
names separate shards from which up to ``eval_samples`` labelled images are read once into
memory and split (stratified) into ``eval_train``/``eval_test``.
"""

from __future__ import annotations

import functools
import io
import re
import warnings
from typing import Any

import numpy as np
import torch

from ssl_core.data import TensorDictDataset
from ssl_core.errors import DataError
from ssl_core.interfaces import DataModule
from ssl_core.streaming import RawSample, WebDatasetStream, expand_urls, load_samples
from ssl_core.data import stratified_split
from ssl_vision.data import decode_image
from ssl_vision.shards import IMAGE_FIELDS, _labels_to_ints

__all__ = ["decode_sample", "webdataset_stream"]

_ADDRESS = re.compile(r" ?<[^<>]* at 0x[0-9a-fA-F]+>")
UNKNOWN_LABEL = -1
"""Training-sample ``label`` of a sample whose ``cls`` field is missing or not an integer."""


def _image(raw: RawSample, image_size: int, channels: int) -> torch.Tensor | None:
    """The sample's first image field decoded, or ``None`` (after a warning) if it has none or
    it cannot be decoded."""
    where = f"{raw.get('__url__')}:{raw.get('__key__')}"
    field = next((f for f in IMAGE_FIELDS if f in raw), None)
    if field is None:
        fields = sorted(k for k in raw if not k.startswith("__"))
        warnings.warn(f"Skipping sample {where}: no image field (has {fields}; looked for "
                      f"{', '.join(IMAGE_FIELDS)}).", stacklevel=3)
        return None
    try:
        return decode_image(io.BytesIO(raw[field]), image_size, channels)
    except Exception as exc:  # PIL raises many types for corrupt data
        # without the buffer's address the message repeats exactly, so Python shows it once per process
        reason = _ADDRESS.sub("", str(exc))
        warnings.warn(f"Skipping unreadable image {where}.{field}: {type(exc).__name__}: {reason}", stacklevel=3)
        return None


def _text(raw: RawSample, field: str) -> str | None:
    value = raw.get(field)
    return None if value is None else bytes(value).decode("utf-8", errors="replace").strip()


def decode_sample(raw: RawSample, image_size: int, channels: int, label: str | None) -> dict[str, Any] | None:
    """A training sample: ``{"image"}``, plus ``"label"`` (an int; -1 when unreadable) with
    ``label="cls"``. Class names (``txt``) cannot be numbered without reading the whole stream,
    so they are used only for the evaluation set. ``None`` for an unreadable image."""
    image = _image(raw, image_size, channels)
    if image is None:
        return None
    sample: dict[str, Any] = {"image": image}
    if label == "cls":
        text = _text(raw, "cls")
        try:
            sample["label"] = int(str(text).split()[0])
        except (ValueError, IndexError):
            sample["label"] = UNKNOWN_LABEL
    return sample


def _decode_eval(raw: RawSample, image_size: int, channels: int, label: str | None) -> dict[str, Any] | None:
    """An evaluation sample: the image, its raw label text and where it came from."""
    image = _image(raw, image_size, channels)
    if image is None:
        return None
    return {"image": image, "label": _text(raw, label) if label else None,
            "where": f"{raw.get('__url__')}:{raw.get('__key__')}"}


def _eval_splits(
    eval_path: str, image_size: int, channels: int, label: str | None, eval_samples: int,
    test_fraction: float, seed: int,
) -> tuple[TensorDictDataset | None, TensorDictDataset | None, list[str] | None, str]:
    """The labelled evaluation set held in memory: (eval_train, eval_test, class names, summary)."""
    decode = functools.partial(_decode_eval, image_size=image_size, channels=channels, label=label)
    samples = load_samples(eval_path, decode, eval_samples)
    if not samples:
        raise DataError(f"The evaluation shards at {eval_path} hold no readable images "
                        f"(fields looked for: {', '.join(IMAGE_FIELDS)}).")
    if label is None:
        return None, None, None, f"{len(samples)} unlabelled evaluation images (label=null): no probes"
    ints, names = _labels_to_ints([s["label"] for s in samples], label, [s["where"] for s in samples])
    if ints is None or names is None or len(names) < 2:
        why = "some have no ." + label + " field" if ints is None else f"{len(names or [])} class"
        warnings.warn(f"The evaluation shards at {eval_path} give no usable labels ({why}); probes will not "
                      "run. Each sample needs a KEY.cls (integer) or, with label=txt, a KEY.txt class name.",
                      stacklevel=3)
        return None, None, None, f"{len(samples)} evaluation images without usable labels: no probes"
    classes = sorted(set(ints))
    remap = {c: i for i, c in enumerate(classes)}  # e.g. cls 3, 7, 9 -> 0, 1, 2
    y = np.asarray([remap[c] for c in ints])
    images = torch.stack([s["image"] for s in samples])
    tr, te = stratified_split(y, test_fraction, seed)
    if len(tr) == 0 or len(te) == 0:
        raise DataError(f"The {len(samples)} evaluation images at {eval_path} cannot be split with "
                        f"test_fraction={test_fraction}: raise dataset_kwargs.eval_samples or add evaluation shards.")
    labels = torch.as_tensor(y, dtype=torch.long)
    train = TensorDictDataset(image=images[tr], label=labels[tr])
    test = TensorDictDataset(image=images[te], label=labels[te])
    return train, test, names, f"{len(tr)}/{len(te)} labelled evaluation images in memory, {len(names)} classes"


def webdataset_stream(
    path: str | None = None,
    image_size: int = 32,
    channels: int = 3,
    label: str | None = "cls",
    shuffle_buffer: int = 1000,
    seed: int = 0,
    eval_path: str | None = None,
    eval_samples: int = 2000,
    test_fraction: float = 0.2,
    samples_per_epoch: int | None = None,
) -> DataModule:
    """Images streamed from WebDataset shards (path, glob, folder, ``{000..099}`` braces,
    ``http(s)://`` or ``pipe:COMMAND``; several joined by ``::``); ``eval_path``: separate
    labelled shards for probes, held in memory."""
    if not path:
        raise DataError("The 'webdataset_stream' dataset needs --data SPEC: .tar shards as a path, glob, folder, "
                        "'shard-{000000..000099}.tar', an http(s):// URL or 'pipe:COMMAND'.")
    if label not in (None, "cls", "txt"):
        raise DataError(f"webdataset_stream label must be 'cls', 'txt' or null, got {label!r}.")
    if not 0 < test_fraction < 1:
        raise DataError(f"dataset_kwargs.test_fraction must be between 0 and 1, got {test_fraction}.")
    if shuffle_buffer < 0 or eval_samples < 0:
        raise DataError("dataset_kwargs.shuffle_buffer and eval_samples must be >= 0.")
    urls = expand_urls(str(path))
    decode = functools.partial(decode_sample, image_size=image_size, channels=channels, label=label)
    train = WebDatasetStream(urls, decode, shuffle_buffer=shuffle_buffer, seed=seed,
                             samples_per_epoch=samples_per_epoch)
    extras = {"encoder_kwargs": {"in_channels": channels}, "augmenter_kwargs": {"image_size": image_size}}
    source = f"images streamed from {len(urls)} WebDataset shard(s) at {path}"
    if eval_path is None or eval_samples == 0:
        return DataModule(train=train, description=f"{source}; no evaluation set (set dataset_kwargs.eval_path)",
                          extras=extras)
    eval_train, eval_test, names, summary = _eval_splits(
        str(eval_path), image_size, channels, label, eval_samples, test_fraction, seed)
    if eval_train is None:
        return DataModule(train=train, description=f"{source}; {summary}", extras=extras)
    return DataModule(
        train=train, eval_train=eval_train, eval_test=eval_test, num_classes=len(names or []), class_names=names,
        description=f"{source}; {summary}", extras=extras,
    )
