"""Frozen-feature extraction shared by the evaluators."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ssl_core.data import default_collate, move_to_device
from ssl_core.errors import DataError
from ssl_core.interfaces import DataModule, Encoder


_cache: dict[tuple[int, int, int, str], tuple[Tensor, Tensor]] | None = None


@contextlib.contextmanager
def shared_features() -> Iterator[None]:
    """Within this block, features of one (encoder, dataset) pair are extracted once.

    The evaluators of one run (kNN, linear probe, few-shot, nearest-neighbour grids) all embed
    the same labelled splits with the same frozen encoder. Sharing the features makes those
    passes one pass. The cache lives only inside the block: the weights must not change there.
    Callers must not modify the returned tensors in place.
    """
    global _cache
    outer = _cache
    _cache = {} if outer is None else outer
    try:
        yield
    finally:
        _cache = outer


@torch.no_grad()
def extract_features(
    encoder: Encoder,
    dataset: Dataset,
    data: DataModule,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Run ``encoder.embed`` over ``dataset`` in eval mode; return (features [N, D], labels [N]).

    The encoder's train/eval mode is restored afterwards.
    """
    if device is None:
        device = next(encoder.parameters()).device
    key = (id(encoder), id(dataset), id(data.collate), str(device))
    if _cache is not None and key in _cache:
        return _cache[key]
    was_training = encoder.training
    encoder.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=data.collate or default_collate)
    feats, labels = [], []
    try:
        for batch in loader:
            if data.label_key not in batch:
                raise DataError(
                    f"Evaluation data has no '{data.label_key}' field; probes need labelled data "
                    "(e.g. class sub-folders). Pass --no-eval to skip evaluation."
                )
            batch = move_to_device(batch, torch.device(device))
            feats.append(encoder.embed(batch).float().cpu())
            labels.append(torch.as_tensor(batch[data.label_key]).cpu())
    finally:
        encoder.train(was_training)
    result = torch.cat(feats), torch.cat(labels).long()
    if _cache is not None:
        _cache[key] = result
    return result


def eval_splits(data: DataModule) -> tuple[Dataset, Dataset]:
    """The labelled (train, test) splits, or a DataError saying how to get them."""
    if data.eval_train is None or data.eval_test is None:
        raise DataError(
            "This dataset has no labelled evaluation split (e.g. an image folder without class "
            "sub-folders), so probes cannot run. Add labels or pass --no-eval."
        )
    return data.eval_train, data.eval_test
