"""A time-series encoder, two-view augmentations and a contrastive objective."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core import Augmenter, Encoder, Objective, StepInfo
from ssl_core.distributed import gather_with_grad
from ssl_core.randomness import sample_randn

MODALITY = "timeseries"


class ConvEncoder(Encoder):
    """1-D CNN over ``[B, C, T]`` series: three conv-BatchNorm-ReLU blocks, global average pooling."""

    modality = MODALITY
    input_key = "series"  # embed(batch) reads batch["series"]

    def __init__(self, in_channels: int = 1, width: int = 64, embed_dim: int = 128) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        layers: list[nn.Module] = []
        for c_in, c_out in ((in_channels, width), (width, width), (width, embed_dim)):
            layers += [nn.Conv1d(c_in, c_out, kernel_size=5, padding=2), nn.BatchNorm1d(c_out), nn.ReLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.float()).mean(dim=-1)


class JitterScaleViews(Augmenter):
    """Two views per series: random scaling and Gaussian jitter (Um et al., ICMI 2017)."""

    def __init__(self, sigma: float = 0.1, scale: float = 0.2) -> None:
        self.sigma, self.scale = sigma, scale

    def __call__(self, batch: dict, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x = batch["series"].float()

        def view() -> Tensor:
            # per-sample draws (the same on any number of processes), on the batch's device
            # (the generator lives on the training device)
            s = 1 + self.scale * sample_randn(generator, (x.shape[0], 1, 1), x.device)
            return x * s + self.sigma * sample_randn(generator, x.shape, x.device)

        return view(), view()


class ContrastiveSeries(Objective):
    """SimCLR's NT-Xent loss (Chen et al., ICML 2020) between two augmented views of each series."""

    def __init__(self, encoder: Encoder, augmenter: Augmenter, temperature: float = 0.2, proj_dim: int = 64) -> None:
        super().__init__()
        self.encoder, self.augmenter, self.temperature = encoder, augmenter, temperature
        self.projector = nn.Sequential(nn.Linear(encoder.embed_dim, encoder.embed_dim), nn.ReLU(),
                                       nn.Linear(encoder.embed_dim, proj_dim))

    def training_step(self, batch: dict, step: StepInfo) -> dict[str, Tensor]:
        v1, v2 = self.augmenter(batch, step.generator)
        z1 = F.normalize(self.projector(self.encoder(v1)), dim=1)
        z2 = F.normalize(self.projector(self.encoder(v2)), dim=1)
        z = torch.cat([gather_with_grad(z1), gather_with_grad(z2)])  # negatives from the global batch
        n = z.shape[0] // 2
        sim = (z @ z.T / self.temperature).fill_diagonal_(float("-inf"))
        targets = (torch.arange(2 * n, device=z.device) + n) % (2 * n)  # each view's partner
        loss = F.cross_entropy(sim, targets)
        return {"loss": loss, "positive_cosine": (z1 * z2).sum(1).mean().detach()}
