"""Frozen-feature extraction shared by the evaluators."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ssl_core.data import default_collate, move_to_device
from ssl_core.errors import DataError
from ssl_core.interfaces import DataModule, Encoder


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
    return torch.cat(feats), torch.cat(labels).long()


def eval_splits(data: DataModule) -> tuple[Dataset, Dataset]:
    """The labelled (train, test) splits, or a DataError saying how to get them."""
    if data.eval_train is None or data.eval_test is None:
        raise DataError(
            "This dataset has no labelled evaluation split (e.g. an image folder without class "
            "sub-folders), so probes cannot run. Add labels or pass --no-eval."
        )
    return data.eval_train, data.eval_test
