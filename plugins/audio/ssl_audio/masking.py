"""Span masking of latent speech frames, as in wav2vec 2.0 and HuBERT.

wav2vec 2.0 (Baevski et al., 2020, Sec. 3.1 and 4.2): "we randomly sample without replacement
a certain proportion p of all time steps to be starting indices and then mask the subsequent M
consecutive time steps from every sampled index; spans may overlap", with p = 0.065 and M = 10,
which masks about 49% of all frames. HuBERT (Hsu et al., 2021, Sec. IV-C) uses p = 0.08, M = 10.

Here each valid start position (one that leaves room for a whole span) is a start with
probability ``p``, drawn per sample from the step's generator, so every utterance in the batch
gets its own mask on the device with no Python loop. The draw for frame t of an utterance depends
only on the utterance's key and t (:func:`ssl_core.randomness.keyed_uniform`), so the mask does
not change with the padded width of the batch or the number of processes sharing it. An interior frame is then masked with
probability ``1 - (1 - p) ** M`` (48.9% for the wav2vec 2.0 setting). Each utterance gets at
least ``min_spans`` spans so the losses always have masked frames to predict.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_core.randomness import keyed_uniform, sample_keys


def masked_fraction(mask: Tensor, valid: Tensor) -> Tensor:
    """Share of the batch's valid frames that are masked (a logged metric); 0, not NaN, for a
    batch without valid frames (a DDP rank can draw one)."""
    return mask.sum() / valid.sum().clamp_min(1)


def expected_mask_fraction(p: float, span: int) -> float:
    """Probability that a frame far from the edges is masked: ``1 - (1 - p) ** span``."""
    return 1.0 - (1.0 - p) ** span


def span_mask(
    frames: Tensor,
    max_len: int,
    p: float = 0.065,
    span: int = 10,
    min_spans: int = 2,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Boolean mask ``[B, max_len]``: ``True`` on masked frames, never on padding.

    ``frames`` ``[B]`` are the valid lengths. Starts are Bernoulli(``p``) over positions
    ``0 .. frames - span`` (so spans stay inside the utterance), plus the ``min_spans`` best-scoring
    positions of each row so no utterance goes unmasked. Utterances shorter than ``span`` are
    masked from a start of 0 up to their end.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"mask start probability p must be in [0, 1], got {p}")
    if span < 1:
        raise ValueError(f"mask span length must be at least 1, got {span}")
    device = frames.device
    b = frames.shape[0]
    pos = torch.arange(max_len, device=device)[None, :]
    last_start = (frames - span).clamp_min(0)[:, None]
    allowed = (pos <= last_start) & (frames[:, None] > 0)
    u = keyed_uniform(sample_keys(generator, b, device)[:, None], pos)
    starts = (u < p) & allowed
    if min_spans > 0:
        k = min(min_spans, max_len)
        scores = torch.where(allowed, u, torch.full_like(u, 2.0))
        idx = scores.topk(k, dim=1, largest=False).indices
        forced = torch.zeros_like(starts).scatter_(1, idx, True) & allowed
        starts = starts | forced
    # a frame is masked if a span started within the previous `span` frames (itself included)
    covered = F.conv1d(F.pad(starts.float()[:, None, :], (span - 1, 0)), torch.ones(1, 1, span, device=device))
    mask = covered[:, 0, :max_len] > 0
    return mask & (pos < frames[:, None])


def mask_runs(mask_row: Tensor) -> list[int]:
    """Lengths of the runs of consecutive ``True`` values in a 1-D boolean tensor."""
    runs, n = [], 0
    for v in mask_row.tolist():
        if v:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    if n:
        runs.append(n)
    return runs
