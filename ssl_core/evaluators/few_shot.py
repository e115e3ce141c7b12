"""Few-shot classification on frozen features with a nearest-class-mean classifier.

Each episode draws N labelled examples per class from the training split, builds one prototype
per class (the mean of its L2-normalised features, as in Snell et al., "Prototypical Networks
for Few-shot Learning", NeurIPS 2017) and labels every test sample by its most similar prototype.
Accuracy is averaged over episodes.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_core.evaluators.features import eval_splits, extract_features
from ssl_core.interfaces import DataModule, Encoder, Evaluator


def few_shot_accuracy(
    xtr: Tensor, ytr: Tensor, xte: Tensor, yte: Tensor, shots: int, episodes: int, seed: int = 0
) -> float:
    """Mean nearest-prototype accuracy over ``episodes`` draws of ``shots`` examples per class."""
    xtr, xte = F.normalize(xtr.float(), dim=1), F.normalize(xte.float(), dim=1)
    classes = torch.unique(ytr)
    g = torch.Generator().manual_seed(seed)
    accs = []
    for _ in range(episodes):
        protos = []
        for c in classes:
            idx = (ytr == c).nonzero().squeeze(1)
            pick = idx[torch.randperm(len(idx), generator=g)[:shots]]
            protos.append(F.normalize(xtr[pick].mean(0), dim=0))
        pred = classes[(xte @ torch.stack(protos).T).argmax(1)]
        accs.append((pred == yte).float().mean().item())
    return sum(accs) / len(accs)


class FewShotEvaluator(Evaluator):
    """N-shot accuracy (default 1- and 5-shot) averaged over random episodes."""

    name = "few_shot"

    def __init__(self, shots: Sequence[int] = (1, 5), episodes: int = 20, batch_size: int = 256) -> None:
        self.shots, self.episodes, self.batch_size = tuple(shots), episodes, batch_size

    def evaluate(self, encoder: Encoder, data: DataModule) -> Mapping[str, float]:
        train_ds, test_ds = eval_splits(data)
        xtr, ytr = extract_features(encoder, train_ds, data, self.batch_size)
        xte, yte = extract_features(encoder, test_ds, data, self.batch_size)
        return {f"fewshot_{n}shot": few_shot_accuracy(xtr, ytr, xte, yte, n, self.episodes) for n in self.shots}
