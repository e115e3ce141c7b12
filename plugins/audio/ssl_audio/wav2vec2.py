"""wav2vec 2.0 pre-training objective.

Baevski, Zhou, Mohamed & Auli, "wav2vec 2.0: A Framework for Self-Supervised Learning of Speech
Representations", NeurIPS 2020 (arXiv:2006.11477).

The CNN turns audio into latents ``z``; spans of the projected latents are replaced by a learned
mask vector (Sec. 3.1) before the Transformer builds context vectors ``c``. The unmasked latents
are discretised by a Gumbel product quantiser into targets ``q``. For every masked step t the
contrastive loss (Eq. 3) picks ``q_t`` out of ``K`` distractors drawn uniformly from the other
masked steps of the same utterance, with cosine similarity at temperature kappa. The total loss
(Eq. 2) adds the codebook diversity penalty (Eq. 4) weighted by alpha, plus an L2 penalty on the
CNN features (Sec. 4.2) whose gradient into the CNN is scaled down by ``feature_grad_mult``.

Under torch.distributed the run does not depend on the number of processes: the losses are
means over every rank's masked (or valid) frames, the diversity penalty uses codebook usage
averaged over the global batch, and masks, distractors and Gumbel noise of a frame are keyed by
its utterance and position (:func:`ssl_core.randomness.keyed_uniform`). Distractors come from
the same utterance, so no cross-rank gather is needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core import distributed as D
from ssl_core.interfaces import Augmenter, Batch, DataModule, Objective, StepInfo
from ssl_core.randomness import keyed_uniform, sample_keys
from ssl_audio.data import padding_mask
from ssl_audio.encoders import Wav2Vec2Encoder
from ssl_audio.masking import masked_fraction, span_mask
from ssl_audio.quantizer import GumbelVectorQuantizer, annealed_temperature


class GradMultiply(torch.autograd.Function):
    """Identity forward; gradient scaled by ``scale`` (wav2vec 2.0's ``feature_grad_mult``)."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad * ctx.scale, None


def scale_grad(x: Tensor, scale: float) -> Tensor:
    """``x`` with its gradient multiplied by ``scale`` (no-op for 1.0)."""
    return x if scale == 1.0 else GradMultiply.apply(x, scale)


def frame_uniform(mask: Tensor, per_frame: int, generator: torch.Generator | None = None) -> Tensor:
    """``[B, T, per_frame]`` uniform values for every frame of ``mask`` ``[B, T]``, keyed by
    (utterance, frame): the same values for a frame whatever the batch's padded width or the
    number of processes sharing the batch. Every frame gets values, masked or not, so the shape
    never depends on the data (no host read to size it)."""
    b, t = mask.shape
    keys = sample_keys(generator, b, mask.device)
    counters = torch.arange(t, device=mask.device)[:, None] * per_frame + torch.arange(per_frame, device=mask.device)
    return keyed_uniform(keys[:, None, None], counters[None])


def sample_distractors(mask: Tensor, num: int, generator: torch.Generator | None = None) -> Tensor:
    """Frame positions ``[B, T, num]`` of ``num`` distractors for every frame, from the same utterance.

    For a masked frame ``(b, t)`` they are drawn uniformly with replacement among the *other*
    masked frames of row ``b`` (wav2vec 2.0, Sec. 3.2): a draw picks a rank among the row's
    masked frames other than ``t``'s own, and the row's masked positions, sorted first, turn the
    rank into a position. A row with a single masked frame can only return that frame itself;
    callers mask such logits out. Unmasked frames get positions too (the loss gives them no
    weight), so the shape is fixed and nothing is read to the host.
    """
    b, t = mask.shape
    n = mask.sum(1)[:, None, None]  # masked frames per row
    own = (torch.cumsum(mask.long(), 1) - 1)[..., None]  # a masked frame's rank in its row
    u = frame_uniform(mask, num, generator)
    r = torch.floor(u * (n - 1).clamp_min(1).to(u.dtype)).long()
    r = r + (r >= own).long()  # skip the frame's own rank
    r = torch.minimum(r, n - 1).clamp_min(0)
    # positions of the masked frames first, in order (a stable sort of "is not masked")
    masked_first = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices
    return masked_first.gather(1, r.view(b, t * num)).view(b, t, num)


def contrastive_logits(context: Tensor, targets: Tensor, codes: Tensor, distractors: Tensor,
                       temperature: float) -> Tensor:
    """Cosine-similarity logits ``[B, T, 1 + K]`` with each frame's true target in column 0.

    ``context`` and ``targets`` are ``[B, T, F]``, ``codes`` the quantiser's entries ``[B, T, G]``
    and ``distractors`` positions ``[B, T, K]`` in the same row. Similarities of every pair of
    frames in a row come from one batched product of unit vectors; the distractors' columns are
    gathered from it. A distractor with the target's code (the same quantised vector, or the frame
    itself) gets ``-inf``, as in the reference implementation, so it can be neither right nor wrong.
    """
    c = F.normalize(context.float(), dim=-1, eps=1e-8)
    q = F.normalize(targets.float(), dim=-1, eps=1e-8)
    positive = (c * q).sum(-1, keepdim=True)
    negatives = torch.bmm(c, q.transpose(1, 2)).gather(2, distractors)
    same_code = (codes[:, :, None, :] == codes[:, None, :, :]).all(-1).gather(2, distractors)
    return torch.cat([positive, negatives.masked_fill(same_code, float("-inf"))], dim=-1) / temperature


class Wav2Vec2(Objective):
    """wav2vec 2.0: masked contrastive prediction of Gumbel-quantised latents (Baevski et al., 2020).

    Defaults are the paper's BASE settings (p=0.065, M=10, K=100, G=2, V=320, kappa=0.1,
    alpha=0.1, temperature 2 -> 0.5, feature penalty 10, CNN gradient x0.1).
    """

    def __init__(
        self,
        encoder: Wav2Vec2Encoder,
        augmenter: Augmenter | None = None,
        mask_prob: float = 0.065,
        mask_length: int = 10,
        min_masks: int = 2,
        num_negatives: int = 100,
        codebook_groups: int = 2,
        codebook_entries: int = 320,
        codevector_dim: int = 256,
        final_dim: int = 256,
        logit_temp: float = 0.1,
        temp_start: float = 2.0,
        temp_end: float = 0.5,
        temp_decay: float | None = None,
        diversity_weight: float = 0.1,
        feature_penalty_weight: float = 10.0,
        feature_grad_mult: float = 0.1,
        feature_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if not isinstance(encoder, Wav2Vec2Encoder):
            raise TypeError(
                f"wav2vec2 needs a wav2vec2-style encoder (e.g. 'wav2vec2_small'), got {type(encoder).__name__}."
            )
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be at least 1, got {num_negatives}")
        self.encoder = encoder
        self.augmenter = augmenter
        self.mask_prob, self.mask_length, self.min_masks = mask_prob, mask_length, min_masks
        self.num_negatives, self.logit_temp = num_negatives, logit_temp
        self.temp_start, self.temp_end, self.temp_decay = temp_start, temp_end, temp_decay
        self.diversity_weight, self.feature_penalty_weight = diversity_weight, feature_penalty_weight
        self.feature_grad_mult = feature_grad_mult
        self.mask_embedding = nn.Parameter(torch.rand(encoder.embed_dim))
        self.feature_dropout = nn.Dropout(feature_dropout)
        self.quantizer = GumbelVectorQuantizer(encoder.feature_dim, codebook_groups, codebook_entries, codevector_dim)
        self.project_q = nn.Linear(codevector_dim, final_dim)
        self.final_proj = nn.Linear(encoder.embed_dim, final_dim)

    def temperature(self, step: StepInfo) -> float:
        """The Gumbel softmax temperature at this step."""
        return annealed_temperature(step.progress, step.step, self.temp_start, self.temp_end, self.temp_decay)

    def training_step(self, batch: Batch, step: StepInfo) -> dict[str, Tensor]:
        if self.augmenter is not None:
            batch = self.augmenter(batch, step.generator)
        enc = self.encoder
        feats, frames = enc.extract(batch["waveform"], batch.get("lengths"))
        t = feats.shape[1]
        valid = ~padding_mask(frames, t)
        # masked_fill rather than boolean indexing: the count stays on the device
        feature_pen = D.global_mean_share(feats.float().pow(2).masked_fill(~valid[..., None], 0.0).sum(),
                                          valid.sum() * feats.shape[-1])
        feats = scale_grad(feats, self.feature_grad_mult)
        normed, x = enc.project(feats)
        mask = span_mask(frames, t, self.mask_prob, self.mask_length, self.min_masks, step.generator)
        x = torch.where(mask[..., None], self.mask_embedding.to(x.dtype), x)
        context = enc.contextualize(x, frames)
        # every frame is scored and the mask weights the sums: selecting the masked frames
        # (context[mask]) would give a data-dependent shape, which makes the host wait for the device
        c = self.final_proj(context)
        tau = self.temperature(step)
        gumbel = frame_uniform(mask, self.quantizer.num_codes, step.generator)
        b = mask.shape[0]
        qout = self.quantizer(self.feature_dropout(normed).reshape(b * t, -1), tau,
                              uniform=gumbel.view(b * t, -1), weight=mask.reshape(-1))
        q = self.project_q(qout.q).view(b, t, -1)
        idx = sample_distractors(mask, self.num_negatives, step.generator)
        logits = contrastive_logits(c, q, qout.codes.view(b, t, -1), idx, self.logit_temp)
        target = torch.zeros(b * t, dtype=torch.long, device=logits.device)
        ce = F.cross_entropy(logits.view(b * t, -1), target, reduction="none").view(b, t)
        # the mean over every rank's masked frames (ranks mask different numbers of frames)
        loss_contrastive = D.global_mean_share(ce.masked_fill(~mask, 0.0).sum(), mask.sum())
        loss = (loss_contrastive + self.diversity_weight * qout.diversity_loss
                + self.feature_penalty_weight * feature_pen)
        with torch.no_grad():
            acc = ((logits.argmax(-1) == 0) & mask).sum() / mask.sum().clamp_min(1)
        return {
            "loss": loss, "loss_contrastive": loss_contrastive.detach(),
            "loss_diversity": qout.diversity_loss.detach(), "feature_pen": feature_pen.detach(),
            "code_ppl": qout.code_perplexity, "prob_ppl": qout.prob_perplexity,
            "gumbel_temp": torch.tensor(tau), "acc": acc,
            "mask_frac": masked_fraction(mask, valid),
        }

    @torch.no_grad()
    def codebook_usage(self, data: DataModule, max_batches: int = 8, batch_size: int = 32) -> dict[str, float]:
        """Hard code perplexity and distinct codes used on held-out clips (eval mode, arg-max codes)."""
        dataset = data.eval_test if data.eval_test is not None else data.train
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=data.collate)
        device = self.mask_embedding.device
        was_training = self.training
        self.eval()
        codes = []
        try:
            for i, b in enumerate(loader):
                if i >= max_batches:
                    break
                feats, frames = self.encoder.extract(b["waveform"].to(device), b["lengths"].to(device))
                normed, _ = self.encoder.project(feats)
                valid = ~padding_mask(frames, feats.shape[1])
                codes.append(self.quantizer.logits(normed[valid]).argmax(-1).cpu())
        finally:
            self.train(was_training)
        if not codes:
            return {}
        c = torch.cat(codes)
        g, v = self.quantizer.groups, self.quantizer.entries
        hist = torch.stack([torch.bincount(c[:, i], minlength=v).float() for i in range(g)])
        hist = hist / hist.sum(1, keepdim=True)
        from ssl_audio.quantizer import perplexity

        distinct = torch.unique(c, dim=0).shape[0]
        return {"code_perplexity": float(perplexity(hist)), "max_code_perplexity": float(g * v),
                "codes_used_per_group": float((hist > 0).sum(1).float().mean()),
                "distinct_codevectors": float(distinct), "frames": float(c.shape[0])}

    def on_train_end(self, run_dir: Path | None, data: DataModule) -> None:
        """Write the quantiser's code usage on held-out audio to ``run_dir/codebook.json``."""
        if run_dir is None:
            return
        stats = self.codebook_usage(data)
        (Path(run_dir) / "codebook.json").write_text(json.dumps(stats, indent=2))
