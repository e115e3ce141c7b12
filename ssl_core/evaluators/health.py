"""Representation health: signals that catch collapse during training.

- ``embedding_std``: mean per-dimension standard deviation of L2-normalised embeddings. A
  collapsed representation gives ~0; well-spread embeddings give ~1/sqrt(D) (Chen & He,
  "Exploring Simple Siamese Representation Learning", CVPR 2021, Sec. 4.1).
- ``effective_rank``: exp of the entropy of the normalised singular values of the centred
  embedding matrix (Roy & Vetterli, "The effective rank", EUSIPCO 2007); 1 means all embeddings
  lie on a line, D means they use every dimension evenly.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_core.data import default_collate, move_to_device
from ssl_core.interfaces import DataModule, Encoder, Evaluator


def embedding_std(z: Tensor) -> float:
    """Mean per-dimension std of L2-normalised embeddings ``z`` [N, D]."""
    return F.normalize(z.float(), dim=1).std(0).mean().item()


def effective_rank(z: Tensor) -> float:
    """Effective rank (Roy & Vetterli, 2007) of the centred embedding matrix ``z`` [N, D]."""
    z = z.float() - z.float().mean(0, keepdim=True)
    s = torch.linalg.svdvals(z)
    if s.sum() <= 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return torch.exp(-(p * p.log()).sum()).item()


def health_metrics(z: Tensor) -> dict[str, float]:
    """Both health signals for a batch of embeddings, plus the normalised std ratio."""
    std = embedding_std(z)
    return {"embed_std": std, "embed_std_ratio": std * z.shape[1] ** 0.5, "effective_rank": effective_rank(z)}


class HealthEvaluator(Evaluator):
    """Embedding std and effective rank on (up to ``max_samples``) evaluation samples."""

    name = "health"
    needs_labels = False

    def __init__(self, max_samples: int = 512, batch_size: int = 256) -> None:
        self.max_samples, self.batch_size = max_samples, batch_size

    @torch.no_grad()
    def evaluate(self, encoder: Encoder, data: DataModule) -> Mapping[str, float]:
        dataset = data.eval_test if data.eval_test is not None else data.train
        collate = data.collate or default_collate
        loader: Iterable[Any]
        if isinstance(dataset, torch.utils.data.IterableDataset):
            # a stream with no evaluation split (e.g. unlabelled WebDataset shards): its first
            # max_samples samples, in the stream's own order; it has no length and no indexing
            it = iter(dataset)
            try:
                samples = list(itertools.islice(it, self.max_samples))
            finally:
                getattr(it, "close", lambda: None)()  # stop reading (and any shard command) now
            loader = [collate(samples[i:i + self.batch_size]) for i in range(0, len(samples), self.batch_size)]
        else:
            n = min(self.max_samples, len(dataset))  # type: ignore[arg-type]
            subset = torch.utils.data.Subset(dataset, range(n))
            loader = torch.utils.data.DataLoader(subset, batch_size=self.batch_size, collate_fn=collate)
        device = next(encoder.parameters()).device
        was_training = encoder.training
        encoder.eval()
        try:
            z = torch.cat([encoder.embed(move_to_device(b, device)).float().cpu() for b in loader])
        finally:
            encoder.train(was_training)
        return health_metrics(z)
