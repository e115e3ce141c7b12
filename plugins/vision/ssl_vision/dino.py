"""DINO: Caron, Touvron, Misra, Jégou, Mairal, Bojanowski & Joulin, "Emerging Properties in
Self-Supervised Vision Transformers", ICCV 2021 (arXiv:2104.14294).

Self-distillation with no labels: a student network (backbone + DINO head) is trained to match
the output distribution of a teacher network, an EMA of the student, across crops of one image.
The teacher sees only the two global crops; the student sees every crop (2 global + N local,
multi-crop). Collapse is avoided by centring (subtracting an EMA of the teacher's mean output)
and sharpening (a low teacher temperature).

Follows the paper and its reference settings: DINO head (3-layer MLP, 2048 hidden, 256
bottleneck, L2-norm, weight-normalised last layer with its norm fixed to 1), student temperature
0.1, teacher temperature warmed up linearly from 0.04 to 0.07 over the first 30% of training,
centre momentum 0.9, teacher momentum cosine from 0.996 to 1, last layer frozen at the start,
gradient clipping (the recipe sets ``train.clip_grad: 3.0``), weight decay 0.04 -> 0.4.

Deviations (documented so results can be compared):

- Warm-up lengths are fractions of the run (``StepInfo.progress``) rather than epochs: 30% for
  the teacher temperature (the paper: 30 of 100 epochs) and ``freeze_last_layer_fraction``
  (the paper: 1 epoch) for the frozen last layer.
- The CPU recipe uses ``out_dim=4096`` prototypes (the paper: 65,536) and a narrower head.
- Gradient clipping is on the global norm (the trainer's), not per parameter tensor.
- The exported/evaluated encoder is the student backbone (``objective.encoder``, the network
  the trainer optimises); the paper evaluates the teacher. The teacher backbone is
  ``objective.teacher_backbone`` for anyone who wants it.

Under torch.distributed the centre is the mean over the global batch (all-reduced), and the
last layer takes part in every backward while it is frozen; its gradient is dropped before the
optimiser step (:meth:`DINO.on_before_optimizer_step`, the reference code's
``cancel_gradients_last_layer``), so DDP sees every parameter used.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ssl_core.interfaces import Augmenter, Batch, Encoder, Objective, StepInfo
from ssl_vision.ema import cosine_momentum, ema_update, make_teacher
from ssl_vision.heads import DINOHead
from ssl_vision.losses import DINOLoss


class DINO(Objective):
    """DINO: student/teacher self-distillation over multi-crop views, with centring and sharpening."""

    def __init__(
        self,
        encoder: Encoder,
        augmenter: Augmenter,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        student_temp: float = 0.1,
        warmup_teacher_temp: float = 0.04,
        teacher_temp: float = 0.07,
        warmup_teacher_temp_fraction: float = 0.3,
        center_momentum: float = 0.9,
        base_momentum: float = 0.996,
        final_momentum: float = 1.0,
        freeze_last_layer_fraction: float = 0.01,
        use_bn_in_head: bool = False,
        evaluate_teacher: bool = True,
    ) -> None:
        super().__init__()
        if augmenter is None:
            raise ValueError("DINO needs a multi-crop augmenter (e.g. 'multicrop'); set `augmenter` in the config.")
        if not 0.0 <= base_momentum <= final_momentum <= 1.0:
            raise ValueError(
                f"DINO momentum must satisfy 0 <= base_momentum <= final_momentum <= 1, "
                f"got base={base_momentum}, final={final_momentum}."
            )
        if not 0.0 <= warmup_teacher_temp_fraction <= 1.0:
            raise ValueError(f"warmup_teacher_temp_fraction must be in [0, 1], got {warmup_teacher_temp_fraction}")
        self.encoder = encoder
        self.augmenter = augmenter
        self.head = DINOHead(encoder.embed_dim, out_dim, hidden_dim, bottleneck_dim, use_bn=use_bn_in_head)
        self.teacher_backbone = make_teacher(encoder)
        self.teacher_head = make_teacher(self.head)
        self.criterion = DINOLoss(out_dim, student_temp, center_momentum)
        self.warmup_teacher_temp = warmup_teacher_temp
        self.teacher_temp = teacher_temp
        self.warmup_teacher_temp_fraction = warmup_teacher_temp_fraction
        self.base_momentum = base_momentum
        self.final_momentum = final_momentum
        self.freeze_last_layer_fraction = freeze_last_layer_fraction
        self.evaluate_teacher = evaluate_teacher

    def encoder_for_evaluation(self) -> Encoder:
        """The EMA teacher's backbone (the paper reports the teacher, which is the better of the
        two), or the student with ``evaluate_teacher=False``."""
        return self.teacher_backbone if self.evaluate_teacher else self.encoder  # type: ignore[return-value]

    # ------------------------------------------------------------------ schedules
    def teacher_temperature(self, progress: float) -> float:
        """Linear warm-up from ``warmup_teacher_temp`` to ``teacher_temp``, then constant."""
        if self.warmup_teacher_temp_fraction <= 0 or progress >= self.warmup_teacher_temp_fraction:
            return self.teacher_temp
        t = progress / self.warmup_teacher_temp_fraction
        return self.warmup_teacher_temp + t * (self.teacher_temp - self.warmup_teacher_temp)

    def momentum(self, progress: float) -> float:
        """Teacher EMA momentum at ``progress`` (cosine from ``base_momentum`` to ``final_momentum``)."""
        return cosine_momentum(progress, self.base_momentum, self.final_momentum)

    # ------------------------------------------------------------------ training
    def _forward_crops(self, backbone: Encoder, head: DINOHead, crops: list[Tensor]) -> list[Tensor]:
        """Run crops of equal size together (one pass per resolution), return per-crop outputs."""
        outputs: list[Tensor] = []
        start = 0
        while start < len(crops):
            end = start
            while end < len(crops) and crops[end].shape[-2:] == crops[start].shape[-2:]:
                end += 1
            feats = backbone(torch.cat(crops[start:end]))
            outputs += list(head(feats).chunk(end - start))
            start = end
        return outputs

    def training_step(self, batch: Batch, step: StepInfo) -> dict[str, Tensor]:
        crops = self.augmenter(batch, step.generator)
        if len(crops) < 2:
            raise ValueError(f"DINO needs at least the 2 global crops; the augmenter returned {len(crops)} view(s).")
        student_out = self._forward_crops(self.encoder, self.head, crops)
        with torch.no_grad():
            teacher_out = self._forward_crops(self.teacher_backbone, self.teacher_head, crops[:2])  # type: ignore[arg-type]
        temp = self.teacher_temperature(step.progress)
        loss = self.criterion(student_out, teacher_out, temp)
        return {"loss": loss, "teacher_temp": torch.tensor(temp), "momentum": torch.tensor(self.momentum(step.progress))}

    def last_layer_frozen(self, step: StepInfo) -> bool:
        """Whether the head's last layer is frozen at this step (the first
        ``freeze_last_layer_fraction`` of training)."""
        return step.progress < self.freeze_last_layer_fraction

    def on_before_optimizer_step(self, step: StepInfo) -> None:
        """Drop the last layer's gradient while it is frozen: the optimiser then leaves it alone
        (no update, no weight decay, no optimiser state), as DINO's ``cancel_gradients_last_layer``."""
        if self.last_layer_frozen(step):
            for p in self.head.last_layer.parameters():
                p.grad = None

    def on_after_optimizer_step(self, step: StepInfo) -> None:
        """EMA update of the teacher backbone and head with this step's momentum."""
        tau = self.momentum(step.progress)
        ema_update(self.teacher_backbone, self.encoder, tau)
        ema_update(self.teacher_head, self.head, tau)
