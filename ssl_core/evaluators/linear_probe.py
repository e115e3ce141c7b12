"""Linear probe: a logistic-regression classifier trained on frozen, standardised features."""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_core.evaluators.features import eval_splits, extract_features
from ssl_core.interfaces import DataModule, Encoder, Evaluator


def fit_linear_probe(
    xtr: Tensor, ytr: Tensor, num_classes: int, epochs: int = 200, lr: float = 0.1,
    weight_decay: float = 1e-4, seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Full-batch softmax regression fitted with L-BFGS; returns (W, b, mean, std)."""
    mean, std = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    x = (xtr - mean) / std
    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(x.shape[1], num_classes, generator=g) * 0.01).requires_grad_()
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=lr, max_iter=epochs, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, ytr) + weight_decay * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach(), mean, std


class LinearProbeEvaluator(Evaluator):
    """Top-1 accuracy of a linear classifier on frozen features (train split -> test split)."""

    name = "linear_probe"

    def __init__(self, epochs: int = 200, weight_decay: float = 1e-4, batch_size: int = 256) -> None:
        self.epochs, self.weight_decay, self.batch_size = epochs, weight_decay, batch_size

    def evaluate(self, encoder: Encoder, data: DataModule) -> Mapping[str, float]:
        train_ds, test_ds = eval_splits(data)
        xtr, ytr = extract_features(encoder, train_ds, data, self.batch_size)
        xte, yte = extract_features(encoder, test_ds, data, self.batch_size)
        num_classes = data.num_classes or int(max(ytr.max(), yte.max())) + 1
        with torch.enable_grad():
            w, b, mean, std = fit_linear_probe(xtr, ytr, num_classes, self.epochs, weight_decay=self.weight_decay)
        pred = (((xte - mean) / std) @ w + b).argmax(1)
        return {"linear_top1": (pred == yte).float().mean().item()}
