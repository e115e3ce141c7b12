"""Image-caption pairs streamed from WebDataset shards (dataset ``captions_wds_stream``): for
corpora larger than the local disk, read shard by shard from a path, an ``http(s)://`` URL or a
``pipe:COMMAND`` (see :mod:`ssl_core.streaming`).

Training samples are ``{"image": uint8 [3, S, S], "caption": str}``, the format of
``captions_wds`` (the encoder tokenises captions on the device, so the stream carries text).
The stream has no length, so a run sets ``train.steps`` (or ``samples_per_epoch``).

Retrieval, zero-shot and probes need held-out pairs with random access, which a stream does
not give: ``eval_path`` names separate shards from which up to ``eval_samples`` pairs are read
once into memory and split into ``eval_train``/``eval_test`` (labelled by ``KEY.cls``) or kept as
the retrieval split (no labels).
"""

from __future__ import annotations

import functools
import re
import warnings
from typing import Any

import torch

from ssl_core.errors import DataError
from ssl_core.interfaces import DataModule
from ssl_core.streaming import RawSample, WebDatasetStream, expand_urls, load_samples
from ssl_clip.data import (
    CAPTION_EXTS, GENERIC_ZERO_SHOT_TEMPLATES, IMAGE_EXTS, LABEL_EXTS, TensorPairDataset, _class_index,
    decode_image, split_indices,
)

__all__ = ["captions_wds_stream", "decode_pair"]

_ADDRESS = re.compile(r" ?<[^<>]* at 0x[0-9a-fA-F]+>")


def _first(raw: RawSample, fields: tuple[str, ...]) -> str | None:
    return next((f for f in fields if f in raw), None)


def decode_pair(raw: RawSample, image_size: int) -> dict[str, Any] | None:
    """A training pair ``{"image", "caption"}``; ``None`` (after a warning naming the shard and
    key) when the image or the caption is missing or unreadable."""
    where = f"{raw.get('__url__')}:{raw.get('__key__')}"
    img, cap = _first(raw, IMAGE_EXTS), _first(raw, CAPTION_EXTS)
    if img is None or cap is None:
        fields = sorted(k for k in raw if not k.startswith("__"))
        warnings.warn(f"Skipping sample {where}: it needs an image ({'/'.join(IMAGE_EXTS[:3])}...) and a "
                      f"caption (.txt), has {fields}.", stacklevel=2)
        return None
    caption = bytes(raw[cap]).decode("utf-8", errors="replace").strip()
    if not caption:
        warnings.warn(f"Skipping sample {where}: empty caption.", stacklevel=2)
        return None
    try:
        image = decode_image(bytes(raw[img]), image_size)
    except Exception as exc:  # PIL raises many types for corrupt or truncated files
        # without the buffer's address the message repeats exactly, so Python shows it once per process
        warnings.warn(f"Skipping unreadable image {where}.{img}: {type(exc).__name__}: "
                      f"{_ADDRESS.sub('', str(exc))}", stacklevel=2)
        return None
    return {"image": image, "caption": caption}


def _decode_eval(raw: RawSample, image_size: int) -> dict[str, Any] | None:
    """An evaluation pair, with its raw label text (``None`` without a ``cls``/``label`` field)."""
    pair = decode_pair(raw, image_size)
    if pair is None:
        return None
    lab = _first(raw, LABEL_EXTS)
    pair["label"] = None if lab is None else bytes(raw[lab]).decode("utf-8", errors="replace").strip()
    return pair


def captions_wds_stream(
    path: str | None = None,
    image_size: int = 32,
    shuffle_buffer: int = 1000,
    seed: int = 0,
    eval_path: str | None = None,
    eval_samples: int = 2000,
    test_fraction: float = 0.2,
    samples_per_epoch: int | None = None,
) -> DataModule:
    """Image-caption pairs streamed from WebDataset shards (path, glob, folder, ``{000..099}``,
    ``http(s)://`` or ``pipe:COMMAND``; several joined by ``::``); ``eval_path``: separate shards
    for retrieval/zero-shot/probes, held in memory."""
    if not path:
        raise DataError("The 'captions_wds_stream' dataset needs --data SPEC: .tar shards as a path, glob, folder, "
                        "'data-{000000..000099}.tar', an http(s):// URL or 'pipe:COMMAND'.")
    if not 0 < test_fraction < 1:
        raise DataError(f"dataset_kwargs.test_fraction must be between 0 and 1, got {test_fraction}.")
    if shuffle_buffer < 0 or eval_samples < 0:
        raise DataError("dataset_kwargs.shuffle_buffer and eval_samples must be >= 0.")
    urls = expand_urls(str(path))
    train = WebDatasetStream(urls, functools.partial(decode_pair, image_size=image_size),
                             shuffle_buffer=shuffle_buffer, seed=seed, samples_per_epoch=samples_per_epoch)
    extras: dict[str, Any] = {
        "encoder_kwargs": {"image_size": image_size},
        "zero_shot_templates": list(GENERIC_ZERO_SHOT_TEMPLATES),
    }
    source = f"pairs streamed from {len(urls)} WebDataset shard(s) at {path}"
    if eval_path is None or eval_samples == 0:
        return DataModule(train=train, extras=extras,
                          description=f"{source}; no held-out pairs (set dataset_kwargs.eval_path)")
    pairs = load_samples(str(eval_path), functools.partial(_decode_eval, image_size=image_size), eval_samples)
    if len(pairs) < 2:
        raise DataError(f"The evaluation shards at {eval_path} hold {len(pairs)} readable (image, caption) pair(s); "
                        "each sample needs KEY.jpg (or .png) and KEY.txt members.")
    raw_labels = [p["label"] for p in pairs]
    have = [lab is not None for lab in raw_labels]
    labels: list[int] | None = None
    names: list[str] | None = None
    if all(have):
        labels, names = _class_index([str(lab) for lab in raw_labels])
    elif any(have):
        warnings.warn(f"{eval_path}: only {sum(have)} of {len(pairs)} evaluation pairs have a .cls label; "
                      "using them without labels (retrieval only).", stacklevel=2)
    tr, te = split_indices(len(pairs), labels, test_fraction, seed)
    if not tr or not te:
        raise DataError(f"The {len(pairs)} evaluation pairs at {eval_path} cannot be split with "
                        f"test_fraction={test_fraction}: raise dataset_kwargs.eval_samples or add evaluation shards.")
    images = torch.stack([p["image"] for p in pairs])

    def pick(idx: list[int]) -> TensorPairDataset:
        lab = None if labels is None else torch.as_tensor([labels[i] for i in idx], dtype=torch.long)
        return TensorPairDataset(images[idx], [pairs[i]["caption"] for i in idx], lab)

    eval_train, eval_test = pick(tr), pick(te)
    if labels is None or names is None or len(names) < 2:
        extras["retrieval_split"] = eval_test
        return DataModule(train=train, extras=extras,
                          description=f"{source}; {len(te)} held-out pairs in memory for retrieval, no labels")
    return DataModule(
        train=train, eval_train=eval_train, eval_test=eval_test, num_classes=len(names), class_names=names,
        description=f"{source}; {len(tr)}/{len(te)} labelled evaluation pairs in memory, {len(names)} classes",
        extras=extras,
    )
