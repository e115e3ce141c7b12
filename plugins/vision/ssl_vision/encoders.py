"""ResNet encoders from torchvision, adapted to small images.

For small inputs (``small_input=True``) the 7x7/stride-2 stem and max-pool are replaced by a
3x3/stride-1 convolution, as SimCLR does for CIFAR-10 (Chen et al., 2020, Appendix B.9).
``resnet18``/``resnet50`` are torchvision's architectures; ``resnet_small`` stacks torchvision's
``BasicBlock`` with narrower widths so CPU runs finish in minutes.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torchvision.models import resnet as tv_resnet

from ssl_core.interfaces import Encoder


class _Normalize(nn.Module):
    """Standardise [0, 1] images with fixed per-channel mean/std (part of the encoder)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def _small_stem(in_channels: int, width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
    )


def _stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(tv_resnet.conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))
    layers = [tv_resnet.BasicBlock(inplanes, planes, stride, downsample)]
    layers += [tv_resnet.BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNetEncoder(Encoder):
    """A ResNet trunk with global average pooling; input [B, C, H, W] in [0, 1], output [B, D].

    ``pool`` is accepted for symmetry with the ViT encoders (only ``"mean"``, global average).
    """

    modality = "vision"
    input_key = "image"
    # measured: resnet_small SimCLR at 28 px, batch 256, steps 1.16x faster at two threads and
    # 1.20-1.32x at one on a 2-core CPU (benchmarks/bench_compile.py); NHWC is also the layout
    # GPU tensor cores prefer
    channels_last = True

    def __init__(
        self,
        arch: str = "resnet_small",
        in_channels: int = 3,
        small_input: bool = True,
        widths: Sequence[int] = (32, 64, 128, 256),
        blocks: Sequence[int] = (1, 1, 1, 1),
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        pool: str = "mean",
    ) -> None:
        super().__init__()
        if pool != "mean":
            raise ValueError(f"ResNetEncoder pools by global average only (pool='mean'), got pool={pool!r}.")
        mean = list(mean) if mean is not None else [0.5] * in_channels
        std = list(std) if std is not None else [0.25] * in_channels
        self.normalize = _Normalize(mean, std)
        if arch == "resnet_small":
            stages, inplanes = [], widths[0]
            for i, (w, n) in enumerate(zip(widths, blocks)):
                stages.append(_stage(inplanes, w, n, 1 if i == 0 else 2))
                inplanes = w
            self.trunk = nn.Sequential(_small_stem(in_channels, widths[0]), *stages)
            self.embed_dim = widths[-1]
        elif arch in ("resnet18", "resnet34", "resnet50"):
            net = getattr(tv_resnet, arch)(weights=None)
            if small_input:
                net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
                net.maxpool = nn.Identity()
            elif in_channels != 3:
                net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            self.embed_dim = net.fc.in_features
            self.trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                                       net.layer1, net.layer2, net.layer3, net.layer4)
        else:
            raise ValueError(f"Unknown ResNet arch '{arch}'; use resnet_small, resnet18, resnet34 or resnet50.")
        self.arch = arch
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward_features(self, x: Tensor) -> Tensor:
        """Spatial features as tokens [B, H*W, D]."""
        f = self.trunk(self.normalize(x))
        return f.flatten(2).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.trunk(self.normalize(x))).flatten(1)

    def embed(self, batch: dict) -> Tensor:
        x = batch["image"]
        return self(x.float().div(255.0) if x.dtype == torch.uint8 else x.float())


def resnet_small(**kwargs: object) -> ResNetEncoder:
    """Narrow ResNet (torchvision BasicBlocks, widths 32-256) for CPU-sized runs."""
    return ResNetEncoder(arch="resnet_small", **kwargs)  # type: ignore[arg-type]


def resnet18(**kwargs: object) -> ResNetEncoder:
    """torchvision ResNet-18 (He et al., 2016), CIFAR-style stem for small images."""
    return ResNetEncoder(arch="resnet18", **kwargs)  # type: ignore[arg-type]


def resnet50(**kwargs: object) -> ResNetEncoder:
    """torchvision ResNet-50 (He et al., 2016)."""
    return ResNetEncoder(arch="resnet50", **kwargs)  # type: ignore[arg-type]
