"""Loss functions of the vision objectives, each usable on its own."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class NTXentLoss(nn.Module):
    """Normalised temperature-scaled cross entropy (SimCLR: Chen et al., ICML 2020, Eq. 1).

    For 2N embeddings of N images (two views each), the loss of a positive pair (i, j) is
    ``-log exp(sim(z_i, z_j)/T) / sum_{k != i} exp(sim(z_i, z_k)/T)`` with cosine ``sim``,
    averaged over all 2N anchors (both orders of every pair).
    """

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        n = z1.shape[0]
        z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
        logits = z @ z.T / self.temperature
        logits.fill_diagonal_(float("-inf"))  # an embedding is not its own negative
        targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
        return F.cross_entropy(logits, targets)
