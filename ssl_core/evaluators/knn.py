"""Weighted-cosine k-nearest-neighbour classifier on frozen features.

Follows the protocol of Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination" (CVPR 2018), as used by DINO (Caron et al., 2021): L2-normalised features, the
k most similar training samples vote for their class with weight ``exp(cos / T)``.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_core.evaluators.features import eval_splits, extract_features
from ssl_core.interfaces import DataModule, Encoder, Evaluator


def weighted_knn_predict(
    train_feats: Tensor, train_labels: Tensor, test_feats: Tensor, k: int = 20,
    temperature: float = 0.07, num_classes: int | None = None, chunk: int = 1024,
) -> Tensor:
    """Predicted class for each test row by temperature-weighted cosine kNN voting."""
    num_classes = num_classes or int(train_labels.max()) + 1
    train_feats = F.normalize(train_feats.float(), dim=1)
    test_feats = F.normalize(test_feats.float(), dim=1)
    k = min(k, train_feats.shape[0])
    preds = []
    for start in range(0, test_feats.shape[0], chunk):
        sim = test_feats[start:start + chunk] @ train_feats.T
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = (top_sim / temperature).exp()
        votes = torch.zeros(sim.shape[0], num_classes, dtype=weights.dtype)
        votes.scatter_add_(1, train_labels[top_idx], weights)
        preds.append(votes.argmax(1))
    return torch.cat(preds)


class KNNEvaluator(Evaluator):
    """Top-1 accuracy of a weighted-cosine kNN classifier (k=20, T=0.07 by default)."""

    name = "knn"

    def __init__(self, k: int = 20, temperature: float = 0.07, batch_size: int = 256) -> None:
        self.k, self.temperature, self.batch_size = k, temperature, batch_size

    def evaluate(self, encoder: Encoder, data: DataModule) -> Mapping[str, float]:
        train_ds, test_ds = eval_splits(data)
        xtr, ytr = extract_features(encoder, train_ds, data, self.batch_size)
        xte, yte = extract_features(encoder, test_ds, data, self.batch_size)
        num_classes = data.num_classes or int(max(ytr.max(), yte.max())) + 1
        pred = weighted_knn_predict(xtr, ytr, xte, self.k, self.temperature, num_classes)
        return {"knn_top1": (pred == yte).float().mean().item()}
