"""Loss functions of the vision objectives, each usable on its own."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core import distributed as D


class NTXentLoss(nn.Module):
    """Normalised temperature-scaled cross entropy (SimCLR: Chen et al., ICML 2020, Eq. 1).

    For 2N embeddings of N images (two views each), the loss of a positive pair (i, j) is
    ``-log exp(sim(z_i, z_j)/T) / sum_{k != i} exp(sim(z_i, z_k)/T)`` with cosine ``sim``,
    averaged over all 2N anchors (both orders of every pair).

    Under torch.distributed, N is the global batch: every rank's embeddings are gathered with
    gradients (:func:`ssl_core.distributed.gather_with_grad`) and serve as negatives, and each
    rank scores its own anchors against all 2N of them (the paper's setting: negatives from the
    whole batch across accelerators). The mean over ranks is then the one-process loss.
    """

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        n = z1.shape[0]
        z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
        all1, all2 = D.gather_with_grad(z1), D.gather_with_grad(z2)  # [N, d] in rank order
        big_n, first = all1.shape[0], D.rank() * n  # this rank's rows of the global batch
        anchors = torch.cat([z1, z2])  # [2n, d]
        logits = anchors @ torch.cat([all1, all2]).T / self.temperature  # [2n, 2N]
        rows = torch.arange(n, device=z1.device) + first
        own = torch.cat([rows, rows + big_n])  # where each anchor sits among the keys
        logits[torch.arange(2 * n, device=z1.device), own] = float("-inf")  # not its own negative
        targets = torch.cat([rows + big_n, rows])
        return F.cross_entropy(logits, targets)


def byol_regression_loss(p: Tensor, z: Tensor) -> Tensor:
    """BYOL's loss for one direction (Grill et al., NeurIPS 2020, Eq. 2).

    The mean squared error between L2-normalised prediction ``p`` and target projection ``z``,
    ``||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z)``, averaged over the batch. ``z`` is detached
    (the target network gets no gradient).
    """
    p = F.normalize(p.float(), dim=-1)
    z = F.normalize(z.detach().float(), dim=-1)
    return (2 - 2 * (p * z).sum(dim=-1)).mean()


class DINOLoss(nn.Module):
    """Self-distillation cross-entropy with centring and sharpening (DINO: Caron et al., ICCV
    2021, Eq. 2-4 and Algorithm 1).

    The teacher's outputs on the global crops are centred (an EMA ``center`` of their batch mean,
    momentum ``center_momentum``) and sharpened with a low temperature; the student's outputs on
    every crop are softened with ``student_temp``. The loss is the cross-entropy
    ``-sum P_t log P_s`` averaged over all (teacher crop, student crop) pairs of different crops.
    The centre is updated after the loss is computed, from this batch's teacher outputs: under
    torch.distributed their mean over the global batch (all-reduced, as in the reference code).
    """

    center: Tensor

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__()
        if student_temp <= 0:
            raise ValueError(f"student_temp must be positive, got {student_temp}")
        if not 0 <= center_momentum < 1:
            raise ValueError(f"center_momentum must be in [0, 1), got {center_momentum}")
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student_out: list[Tensor], teacher_out: list[Tensor], teacher_temp: float) -> Tensor:
        """``student_out``: logits per crop (global crops first); ``teacher_out``: per global crop."""
        teacher_probs = [F.softmax((t.detach().float() - self.center) / teacher_temp, dim=-1) for t in teacher_out]
        student_logp = [F.log_softmax(s.float() / self.student_temp, dim=-1) for s in student_out]
        total, terms = student_logp[0].new_zeros(()), 0
        for iq, q in enumerate(teacher_probs):
            for v, logp in enumerate(student_logp):
                if v == iq:  # the same crop seen by both networks is skipped
                    continue
                total = total + (-q * logp).sum(dim=-1).mean()
                terms += 1
        self.update_center(torch.cat(teacher_out))
        return total / max(terms, 1)

    @torch.no_grad()
    def update_center(self, teacher_logits: Tensor) -> None:
        """``center <- m * center + (1 - m) * mean(teacher_logits)`` (Eq. 4)."""
        # every rank holds the same number of rows, so the mean of the ranks' means is global
        batch_center = D.all_reduce_mean(teacher_logits.detach().float().mean(dim=0, keepdim=True))
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)


def masked_patch_mse(pred: Tensor, target: Tensor, mask: Tensor, norm_pix: bool = True) -> Tensor:
    """MAE's reconstruction loss (He et al., CVPR 2022, Sec. 3): per-patch MSE on masked patches.

    ``pred``/``target``: ``[B, L, P]`` patch pixels; ``mask``: ``[B, L]`` with 1 for masked
    (removed) patches. With ``norm_pix`` each target patch is normalised by its own mean and
    variance (the paper's "normalized pixels" target, Table 1c).
    """
    target = target.float()
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = ((pred.float() - target) ** 2).mean(dim=-1)
    mask = mask.float()
    return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)
