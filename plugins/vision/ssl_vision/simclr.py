"""SimCLR: Chen, Kornblith, Norouzi & Hinton, "A Simple Framework for Contrastive Learning of
Visual Representations", ICML 2020 (arXiv:2002.05709).

Two augmented views of each image go through the encoder and an MLP projection head; NT-Xent
pulls the two views of an image together and pushes every other image in the batch away.
The encoder's pooled output (before the head) is the representation used downstream.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ssl_core.interfaces import Augmenter, Batch, Encoder, Objective, StepInfo
from ssl_vision.heads import ProjectionHead
from ssl_vision.losses import NTXentLoss


class SimCLR(Objective):
    """SimCLR with a 2-layer projection head and NT-Xent loss."""

    min_batch_size = 2  # NT-Xent needs at least one other image in the batch as a negative

    def __init__(
        self,
        encoder: Encoder,
        augmenter: Augmenter,
        temperature: float = 0.5,
        proj_hidden_dim: int = 512,
        proj_dim: int = 128,
    ) -> None:
        super().__init__()
        if augmenter is None:
            raise ValueError("SimCLR needs a two-view augmenter (e.g. 'simclr_views').")
        self.encoder = encoder
        self.augmenter = augmenter
        self.projector = ProjectionHead(encoder.embed_dim, proj_hidden_dim, proj_dim, layers=2)
        self.criterion = NTXentLoss(temperature)

    def training_step(self, batch: Batch, step: StepInfo) -> dict[str, Tensor]:
        v1, v2 = self.augmenter(batch, step.generator)
        # one pass over both views: batch-norm statistics cover all 2N images, as in the paper
        z = self.projector(self.encoder(torch.cat([v1, v2])))
        z1, z2 = z.chunk(2)
        loss = self.criterion(z1, z2)
        return {"loss": loss}
