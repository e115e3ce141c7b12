"""CLIP: Radford et al., "Learning Transferable Visual Models From Natural Language
Supervision", ICML 2021 (arXiv:2103.00020).

An image tower and a text tower are trained jointly so that, in a batch of N (image, caption)
pairs, each image's embedding is most similar to its own caption's and vice versa. The loss is
the symmetric InfoNCE of the paper's Figure 3::

    logits = exp(t) * normalize(I) @ normalize(T).T          # [N, N]
    loss   = (CE(logits, arange(N)) + CE(logits.T, arange(N))) / 2

with the learned log inverse temperature ``t`` initialised to log(1/0.07) and clipped so the
logits are never scaled by more than 100 (Sec. 2.5). Under torch.distributed the features of
every rank are gathered so negatives span the global batch (open_clip's ``ClipLoss``).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core.errors import ConfigError
from ssl_core.interfaces import Augmenter, Batch, DataModule, Encoder, Objective, StepInfo

MAX_LOGIT_SCALE = 100.0


def clip_contrastive_loss(image_features: Tensor, text_features: Tensor, logit_scale: Tensor | float) -> Tensor:
    """Symmetric InfoNCE on already L2-normalised features (single process, for reference)."""
    logits = logit_scale * image_features @ text_features.T
    target = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def dist_rank_world() -> tuple[int, int]:
    """(rank, world_size) of the default process group, or (0, 1) outside torch.distributed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class GatheredClipLoss(nn.Module):
    """open_clip's ``ClipLoss`` with rank/world_size read from torch.distributed at call time.

    Outside a process group it is the plain single-process loss. Once one is initialised (the
    core starts DDP before training), features of all ranks are all-gathered (with gradients when
    ``gather_with_grad``) so every rank contrasts against the global batch's negatives.
    """

    def __init__(self, local_loss: bool = False, gather_with_grad: bool = True) -> None:
        super().__init__()
        self.local_loss, self.gather_with_grad = local_loss, gather_with_grad
        self._key: tuple[int, int] | None = None
        self._impl: nn.Module | None = None

    def impl(self) -> nn.Module:
        """The ClipLoss for the current (rank, world_size), rebuilt when it changes."""
        from open_clip.loss import ClipLoss

        key = dist_rank_world()
        if self._impl is None or key != self._key:
            self._impl = ClipLoss(local_loss=self.local_loss, gather_with_grad=self.gather_with_grad,
                                  cache_labels=True, rank=key[0], world_size=key[1])
            self._key = key
        return self._impl

    def forward(self, image_features: Tensor, text_features: Tensor, logit_scale: Tensor) -> Tensor:
        """Symmetric InfoNCE of L2-normalised features at inverse temperature ``logit_scale``."""
        return self.impl()(image_features, text_features, logit_scale)


class CLIP(Objective):
    """Contrastive image-text pre-training with open_clip towers and loss.

    Batches carry ``"image"`` (uint8 ``[B, C, H, W]``) and ``"caption"`` (list of str) or
    pre-tokenised ``"text"`` ids. ``augmenter`` (optional) returns the augmented image batch;
    CLIP itself used only a random square crop.
    """

    min_batch_size = 2  # each image's negatives are the other captions of the batch

    def __init__(
        self,
        encoder: Encoder,
        augmenter: Augmenter | None = None,
        max_logit_scale: float = MAX_LOGIT_SCALE,
        local_loss: bool = False,
        gather_with_grad: bool = True,
    ) -> None:
        super().__init__()
        if not (hasattr(encoder, "encode_text") and hasattr(encoder, "encode_image") and hasattr(encoder, "logit_scale")):
            raise ConfigError(
                f"The clip objective needs an image-text encoder with encode_image/encode_text/logit_scale "
                f"(e.g. 'open_clip'), got {type(encoder).__name__}. Set --encoder open_clip."
            )
        if max_logit_scale <= 0:
            raise ConfigError(f"objective_kwargs.max_logit_scale must be positive, got {max_logit_scale}.")
        self.encoder = encoder
        self.augmenter = augmenter
        self.max_logit_scale = float(max_logit_scale)
        self.criterion = GatheredClipLoss(local_loss, gather_with_grad)

    def scale(self) -> Tensor:
        """exp(logit_scale), clipped at ``max_logit_scale`` (differentiable below the cap)."""
        return self.encoder.logit_scale.exp().clamp(max=self.max_logit_scale)  # type: ignore[union-attr, operator]

    def features(self, batch: Batch, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """L2-normalised (image, text) features of a batch, augmenting images when training."""
        images = batch["image"]
        if self.augmenter is not None and generator is not None:
            images = self.augmenter(batch, generator)
        text = batch["text"] if "text" in batch else batch.get("caption")
        if text is None:
            raise KeyError("A CLIP batch needs 'caption' (list of str) or 'text' (token ids); "
                           f"got keys {sorted(batch)}. Use an image-text dataset (e.g. digit_captions).")
        img = self.encoder.encode_image(images, normalize=True)  # type: ignore[operator]
        txt = self.encoder.encode_text(text, normalize=True)  # type: ignore[operator]
        return img, txt

    def training_step(self, batch: Batch, step: StepInfo) -> dict[str, Tensor]:
        img, txt = self.features(batch, step.generator)
        scale = self.scale()
        loss = self.criterion(img.float(), txt.float(), scale.float())
        with torch.no_grad():
            logits = img.float() @ txt.float().T
            target = torch.arange(logits.shape[0], device=logits.device)
            acc = ((logits.argmax(1) == target).float().mean() + (logits.argmax(0) == target).float().mean()) / 2
        return {"loss": loss, "logit_scale": scale.detach(), "batch_acc": acc}

    @torch.no_grad()
    def on_after_optimizer_step(self, step: StepInfo) -> None:
        """Clip the learned temperature so exp(logit_scale) stays in [1, max_logit_scale]."""
        self.encoder.logit_scale.clamp_(0.0, math.log(self.max_logit_scale))  # type: ignore[union-attr]

    def on_train_end(self, run_dir: Path | None, data: DataModule) -> None:
        """Export the trained open_clip model to ``run_dir/open_clip`` (see :mod:`ssl_clip.export`)."""
        if run_dir is None:
            return
        from ssl_clip.export import export_open_clip

        rank, _ = dist_rank_world()
        if rank == 0:
            export_open_clip(self.encoder, Path(run_dir) / "open_clip")  # type: ignore[arg-type]
