"""Batched k-means in torch (k-means++ seeding, Lloyd iterations), used for HuBERT targets.

Arthur & Vassilvitskii, "k-means++: The Advantages of Careful Seeding", SODA 2007; Lloyd,
"Least squares quantization in PCM", 1982. HuBERT fits k-means on MFCC frames (iteration 1) or on
a trained model's layer features (later iterations); the paper used scikit-learn's
MiniBatchKMeans, this full-batch version is deterministic for a given seed and runs on any device.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _sq_dists(x: Tensor, c: Tensor) -> Tensor:
    """Squared Euclidean distances ``[N, K]`` (expanded form, clamped at 0)."""
    return ((x * x).sum(1, keepdim=True) - 2.0 * x @ c.T + (c * c).sum(1)[None, :]).clamp_min(0)


def kmeans_plus_plus(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding: each new centre is drawn with probability proportional to D(x)^2."""
    n = x.shape[0]
    first = torch.randint(n, (1,), generator=generator, device=x.device)
    centres = [x[first]]
    d2 = _sq_dists(x, centres[0]).squeeze(1)
    for _ in range(1, k):
        probs = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1.0 / n)
        idx = torch.multinomial(probs, 1, generator=generator)
        centres.append(x[idx])
        d2 = torch.minimum(d2, _sq_dists(x, x[idx]).squeeze(1))
    return torch.cat(centres)


def fit_kmeans(x: Tensor, k: int, iters: int = 30, seed: int = 0, tol: float = 1e-5) -> tuple[Tensor, float]:
    """Cluster ``x`` ``[N, D]`` into ``k`` centroids; returns ``(centroids [k, D], inertia)``.

    Empty clusters are re-seeded with the points farthest from their centroid.
    """
    x = x.float()
    n = x.shape[0]
    if n < k:
        raise ValueError(f"k-means with k={k} needs at least {k} frames, got {n}. Use fewer clusters or more audio.")
    g = torch.Generator(device=x.device).manual_seed(seed)
    c = kmeans_plus_plus(x, k, g)
    prev = float("inf")
    for _ in range(iters):
        d2 = _sq_dists(x, c)
        best, assign = d2.min(1)
        inertia = float(best.sum())
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        empty = counts == 0
        c = sums / counts.clamp_min(1)[:, None]
        if bool(empty.any()):
            far = best.topk(int(empty.sum())).indices
            c[empty] = x[far]
        if prev - inertia <= tol * max(prev, 1e-12):
            break
        prev = inertia
    best, _ = _sq_dists(x, c).min(1)
    return c, float(best.sum())


class KMeans(nn.Module):
    """Fitted centroids (a buffer, saved with checkpoints) with optional feature standardisation."""

    def __init__(self, centroids: Tensor, mean: Tensor | None = None, std: Tensor | None = None) -> None:
        super().__init__()
        d = centroids.shape[1]
        self.register_buffer("centroids", centroids.float())
        self.register_buffer("mean", torch.zeros(d) if mean is None else mean.float())
        self.register_buffer("std", torch.ones(d) if std is None else std.float())

    @property
    def k(self) -> int:
        """Number of clusters."""
        return self.centroids.shape[0]

    @classmethod
    def fit(cls, x: Tensor, k: int, iters: int = 30, seed: int = 0, standardize: bool = True) -> "KMeans":
        """Fit on frames ``x`` ``[N, D]``; with ``standardize`` every dimension is scaled to unit variance first."""
        x = x.float()
        mean = x.mean(0) if standardize else torch.zeros(x.shape[1])
        std = x.std(0).clamp_min(1e-5) if standardize else torch.ones(x.shape[1])
        centroids, inertia = fit_kmeans((x - mean) / std, k, iters, seed)
        km = cls(centroids, mean, std)
        km.inertia = inertia
        return km

    def forward(self, x: Tensor) -> Tensor:
        """Index of the nearest centroid for every row of ``x`` ``[..., D]``."""
        shape = x.shape[:-1]
        flat = (x.reshape(-1, x.shape[-1]).float() - self.mean) / self.std
        return _sq_dists(flat, self.centroids).argmin(1).reshape(shape)
