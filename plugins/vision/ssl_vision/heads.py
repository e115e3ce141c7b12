"""Projection and prediction heads."""

from __future__ import annotations

from torch import nn


class ProjectionHead(nn.Sequential):
    """MLP head: ``layers-1`` blocks of Linear-BN-ReLU, then Linear (SimCLR/BYOL style)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, layers: int = 2, last_bn: bool = False) -> None:
        mods: list[nn.Module] = []
        d = in_dim
        for _ in range(layers - 1):
            mods += [nn.Linear(d, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
            d = hidden_dim
        mods.append(nn.Linear(d, out_dim, bias=not last_bn))
        if last_bn:
            mods.append(nn.BatchNorm1d(out_dim, affine=False))
        super().__init__(*mods)
