"""BYOL: Grill, Strub, Altché, Tallec, Richemond, Buchatskaya, Doersch, Pires, Guo, Azar, Piot,
Kavukcuoglu, Munos & Valko, "Bootstrap Your Own Latent: A New Approach to Self-Supervised
Learning", NeurIPS 2020 (arXiv:2006.07733).

An online network (encoder, projector, predictor) predicts the projection that a target network
(an EMA copy of the online encoder and projector, no predictor) gives for another view of the
same image. No negatives: the predictor and the slowly moving target prevent collapse.

Follows the paper: MLP projector and predictor (Linear-BN-ReLU-Linear, 4096 hidden, 256 out),
normalised-MSE loss symmetrised over both view orders (Eq. 2), target momentum
``tau = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2`` from 0.996 to 1 (Sec. 3.2), applied after
every optimiser step, asymmetric augmentations (``byol_views``), only the online encoder kept.

Deviations (documented so results can be compared): the CPU recipe uses AdamW instead of LARS
and narrower heads (``proj_hidden_dim``/``pred_hidden_dim``); paper-sized heads are the
constructor defaults.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ssl_core.interfaces import Augmenter, Batch, Encoder, Objective, StepInfo
from ssl_vision.ema import cosine_momentum, ema_update, make_teacher
from ssl_vision.heads import ProjectionHead
from ssl_vision.losses import byol_regression_loss


class BYOL(Objective):
    """BYOL with an EMA target network, a predictor and the symmetric normalised-MSE loss."""

    def __init__(
        self,
        encoder: Encoder,
        augmenter: Augmenter,
        proj_hidden_dim: int = 4096,
        proj_dim: int = 256,
        pred_hidden_dim: int = 4096,
        base_momentum: float = 0.996,
        final_momentum: float = 1.0,
    ) -> None:
        super().__init__()
        if augmenter is None:
            raise ValueError("BYOL needs a two-view augmenter (e.g. 'byol_views'); set `augmenter` in the config.")
        if not 0.0 <= base_momentum <= final_momentum <= 1.0:
            raise ValueError(
                f"BYOL momentum must satisfy 0 <= base_momentum <= final_momentum <= 1, "
                f"got base={base_momentum}, final={final_momentum}."
            )
        self.encoder = encoder
        self.augmenter = augmenter
        self.projector = ProjectionHead(encoder.embed_dim, proj_hidden_dim, proj_dim, layers=2)
        self.predictor = ProjectionHead(proj_dim, pred_hidden_dim, proj_dim, layers=2)
        self.target_encoder = make_teacher(encoder)
        self.target_projector = make_teacher(self.projector)
        self.base_momentum = base_momentum
        self.final_momentum = final_momentum

    def momentum(self, progress: float) -> float:
        """Target EMA momentum at ``progress`` (cosine from ``base_momentum`` to ``final_momentum``)."""
        return cosine_momentum(progress, self.base_momentum, self.final_momentum)

    def _online(self, x: Tensor) -> Tensor:
        return self.predictor(self.projector(self.encoder(x)))

    @torch.no_grad()
    def _target(self, x: Tensor) -> Tensor:
        return self.target_projector(self.target_encoder(x))

    def training_step(self, batch: Batch, step: StepInfo) -> dict[str, Tensor]:
        v1, v2 = self.augmenter(batch, step.generator)
        # each view is its own forward pass, so batch-norm statistics are per view, as in BYOL
        p1, p2 = self._online(v1), self._online(v2)
        z1, z2 = self._target(v1), self._target(v2)
        loss = byol_regression_loss(p1, z2) + byol_regression_loss(p2, z1)
        return {"loss": loss, "momentum": torch.tensor(self.momentum(step.progress))}

    def on_after_optimizer_step(self, step: StepInfo) -> None:
        """EMA update of the target encoder and projector with this step's momentum."""
        tau = self.momentum(step.progress)
        ema_update(self.target_encoder, self.encoder, tau)
        ema_update(self.target_projector, self.projector, tau)
