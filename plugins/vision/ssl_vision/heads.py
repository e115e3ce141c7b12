"""Projection and prediction heads of the vision objectives."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


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


class DINOHead(nn.Module):
    """DINO's projection head (Caron et al., ICCV 2021, Sec. 3.1 and Appendix).

    A 3-layer MLP (hidden ``hidden_dim``, GELU, no batch-norm) down to a ``bottleneck_dim``
    bottleneck, L2 normalisation, then a weight-normalised linear layer with ``out_dim`` outputs
    whose norm is fixed to 1 (the paper's ``norm_last_layer``). DINO keeps that last layer frozen
    at the start by dropping its gradient before the optimiser step (see ``DINO``). ``use_bn``
    adds batch-norm after the hidden layers (the reference code's ``use_bn_in_head`` option).
    """

    def __init__(self, in_dim: int, out_dim: int = 65536, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 layers: int = 3, use_bn: bool = False) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"DINOHead needs at least 1 layer, got {layers}")
        mods: list[nn.Module] = []
        d = in_dim
        for _ in range(layers - 1):
            mods += [nn.Linear(d, hidden_dim)] + ([nn.BatchNorm1d(hidden_dim)] if use_bn else []) + [nn.GELU()]
            d = hidden_dim
        mods.append(nn.Linear(d, bottleneck_dim))
        self.mlp = nn.Sequential(*mods)
        self.last_layer = nn.Linear(bottleneck_dim, out_dim, bias=False)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = F.normalize(self.mlp(x), dim=-1)
        return F.linear(x, F.normalize(self.last_layer.weight, dim=1))
