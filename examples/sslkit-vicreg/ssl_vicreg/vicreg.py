"""VICReg: Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022 (arXiv:2105.04906).

Two views go through the encoder and an MLP expander. The loss is
``lambda * s(Z, Z') + mu * [v(Z) + v(Z')] + nu * [c(Z) + c(Z')]`` with

- invariance ``s``: mean squared error between the two views' embeddings,
- variance ``v``: hinge ``mean_j max(0, gamma - sqrt(Var(z_j) + eps))`` keeping every
  dimension's std above ``gamma`` (prevents collapse),
- covariance ``c``: sum of squared off-diagonal covariances divided by the dimension
  (decorrelates dimensions).

Defaults follow the paper (lambda = mu = 25, nu = 1, gamma = 1, eps = 1e-4); the expander is
narrower than the paper's 8192 units so CPU runs stay fast.

Variance and covariance are statistics of the batch: under torch.distributed the embeddings of
every rank are gathered with gradients (``ssl_core.distributed.gather_with_grad``) and the loss
is computed on the global batch, as the paper's implementation does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core import Augmenter, Encoder, Objective, StepInfo
from ssl_core.distributed import gather_with_grad


def vicreg_loss(z1: Tensor, z2: Tensor, sim_weight: float = 25.0, var_weight: float = 25.0,
                cov_weight: float = 1.0, gamma: float = 1.0, eps: float = 1e-4) -> dict[str, Tensor]:
    """The three VICReg terms and their weighted sum for embeddings ``z1``, ``z2`` [N, D]."""
    n, d = z1.shape
    invariance = F.mse_loss(z1, z2)

    def variance(z: Tensor) -> Tensor:
        return F.relu(gamma - torch.sqrt(z.var(dim=0) + eps)).mean()

    def covariance(z: Tensor) -> Tensor:
        z = z - z.mean(dim=0)
        cov = (z.T @ z) / (n - 1)
        off = cov - torch.diag(torch.diag(cov))
        return off.pow(2).sum() / d

    var = variance(z1) + variance(z2)
    cov = covariance(z1) + covariance(z2)
    loss = sim_weight * invariance + var_weight * var + cov_weight * cov
    return {"loss": loss, "invariance": invariance.detach(), "variance": var.detach(), "covariance": cov.detach()}


class VICReg(Objective):
    """VICReg with a 3-layer expander (Linear-BN-ReLU x2, Linear)."""

    def __init__(self, encoder: Encoder, augmenter: Augmenter, expander_dim: int = 512,
                 sim_weight: float = 25.0, var_weight: float = 25.0, cov_weight: float = 1.0) -> None:
        super().__init__()
        if augmenter is None:
            raise ValueError("VICReg needs a two-view augmenter, e.g. 'simclr_views'.")
        self.encoder, self.augmenter = encoder, augmenter
        d = expander_dim
        self.expander = nn.Sequential(
            nn.Linear(encoder.embed_dim, d), nn.BatchNorm1d(d), nn.ReLU(inplace=True),
            nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(inplace=True),
            nn.Linear(d, d),
        )
        self.weights = dict(sim_weight=sim_weight, var_weight=var_weight, cov_weight=cov_weight)

    def training_step(self, batch: dict, step: StepInfo) -> dict[str, Tensor]:
        v1, v2 = self.augmenter(batch, step.generator)
        z = self.expander(self.encoder(torch.cat([v1, v2])))
        z1, z2 = z.float().chunk(2)
        # every rank computes the loss of the global batch; the gather's backward sums each
        # rank's gradient into the rank that owns the rows, and DDP averages over ranks
        return vicreg_loss(gather_with_grad(z1), gather_with_grad(z2), **self.weights)
