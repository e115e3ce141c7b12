"""Gumbel-softmax product quantiser of wav2vec 2.0.

Baevski et al., "wav2vec 2.0", NeurIPS 2020, Sec. 2 and 3.2: the latent ``z`` is mapped to
``G x V`` logits; in each of the ``G`` codebooks one of ``V`` entries is chosen with a straight-
through Gumbel softmax (Jang, Gu & Poole, "Categorical Reparameterization with Gumbel-Softmax",
ICLR 2017): the forward pass uses the hard one-hot choice, the backward pass the gradient of the
soft one. The chosen entries are concatenated into the quantised vector ``q``. The codebook
diversity penalty ``L_d`` pushes the batch-averaged softmax over entries towards uniform, so all
``G * V`` codes get used; we use the perplexity form ``(G V - sum_g exp(H(p_g))) / (G V)``,
which is 0 for perfectly even use and approaches 1 when one entry per group takes everything.
Under torch.distributed the softmax is averaged over the global batch (a differentiable
all-reduce), as the penalty is a statistic of the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core import distributed as D


@dataclass
class QuantizerOutput:
    """What one quantiser call returns (all scalars are 0-dim tensors)."""

    q: Tensor
    """Quantised vectors ``[N, groups * entry_dim]``."""
    codes: Tensor
    """Chosen entry per group ``[N, groups]``."""
    diversity_loss: Tensor
    """``(G V - prob_perplexity) / (G V)``: lower when the softmax spreads over more codes."""
    prob_perplexity: Tensor
    """Sum over groups of exp(entropy) of the batch-averaged softmax (soft code usage)."""
    code_perplexity: Tensor
    """Sum over groups of exp(entropy) of the histogram of chosen codes (hard code usage)."""


def perplexity(probs: Tensor) -> Tensor:
    """``sum_g exp(H(probs[g]))`` for per-group distributions ``probs`` ``[G, V]``."""
    entropy = -(probs * torch.log(probs.clamp_min(1e-7))).sum(-1)
    return entropy.exp().sum()


class GumbelVectorQuantizer(nn.Module):
    """Product quantiser: ``groups`` codebooks of ``entries`` vectors of size ``dim // groups``."""

    def __init__(self, in_dim: int, groups: int = 2, entries: int = 320, dim: int = 256) -> None:
        super().__init__()
        if groups < 1 or entries < 2:
            raise ValueError(f"need at least 1 group and 2 entries per group, got G={groups}, V={entries}")
        if dim % groups:
            raise ValueError(f"codevector dim {dim} must be divisible by the number of groups {groups}")
        self.groups, self.entries, self.dim = groups, entries, dim
        self.weight_proj = nn.Linear(in_dim, groups * entries)
        nn.init.normal_(self.weight_proj.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.weight_proj.bias)
        self.codebook = nn.Parameter(torch.rand(groups, entries, dim // groups))

    @property
    def num_codes(self) -> int:
        """``G * V``: the number of entries over all groups."""
        return self.groups * self.entries

    def logits(self, z: Tensor) -> Tensor:
        """Entry logits ``[N, G, V]`` for latents ``z`` ``[N, in_dim]``."""
        return self.weight_proj(z).float().view(-1, self.groups, self.entries)

    def forward(self, z: Tensor, temperature: float = 2.0, generator: torch.Generator | None = None,
                uniform: Tensor | None = None, weight: Tensor | None = None) -> QuantizerOutput:
        """Quantise ``z`` ``[N, in_dim]``.

        In training mode entries are drawn by straight-through Gumbel softmax at ``temperature``
        with noise from ``uniform`` (``[N, G, V]`` values in [0, 1), e.g. keyed by frame so they do
        not depend on the process count) or else from ``generator``; in eval mode the arg-max
        entry is used. ``weight`` ``[N]`` (bool or 0/1) says which rows count in the usage
        statistics (the diversity penalty and perplexities): pass every frame with the mask as
        weight rather than selecting frames, whose count the host would have to read. ``None``:
        every row counts.
        """
        logits = self.logits(z)
        if self.training:
            if uniform is None:
                uniform = torch.rand(logits.shape, generator=generator, device=logits.device)
            # 1 - 2**-24 is the largest float32 below 1 (1 - 1e-9 would round to 1, where the noise is inf)
            u = uniform.view(logits.shape).clamp(1e-9, 1.0 - 2.0**-24)
            soft = F.softmax((logits - torch.log(-torch.log(u))) / temperature, dim=-1)
            codes = soft.argmax(-1)
            hard = F.one_hot(codes, self.entries).to(soft.dtype)
            onehot = hard - soft.detach() + soft
        else:
            codes = logits.argmax(-1)
            onehot = F.one_hot(codes, self.entries).to(logits.dtype)
        q = torch.einsum("ngv,gvd->ngd", onehot.to(self.codebook.dtype), self.codebook).reshape(z.shape[0], self.dim)
        # the batch-averaged softmax over the global batch (every rank's counted frames)
        w = logits.new_ones(z.shape[0]) if weight is None else weight.to(logits.dtype)
        count = w.sum()  # on the device: no blocking copy
        probs = F.softmax(logits, dim=-1) * w[:, None, None]
        avg_probs = D.all_reduce_with_grad(probs.sum(0)) / D.all_reduce_with_grad(count).clamp_min(1)
        prob_ppl = perplexity(avg_probs)
        hist = (F.one_hot(codes, self.entries).float() * w[:, None, None]).sum(0) / count.clamp_min(1)
        code_ppl = perplexity(hist).detach()
        diversity = (self.num_codes - prob_ppl) / self.num_codes
        return QuantizerOutput(q=q, codes=codes, diversity_loss=diversity, prob_perplexity=prob_ppl.detach(),
                               code_perplexity=code_ppl)


def annealed_temperature(progress: float, step: int, start: float = 2.0, end: float = 0.5,
                         decay: float | None = None) -> float:
    """Gumbel temperature at a point in training.

    With ``decay`` (the paper: 0.999995 per update, from 2 to 0.5 over ~277k of 400k updates):
    ``max(end, start * decay ** step)``. Without it, the same geometric path from ``start`` to
    ``end`` is stretched over the run (``start * (end / start) ** progress``), so short CPU runs
    anneal too.
    """
    if decay is not None:
        return max(end, start * decay**step)
    return start * (end / start) ** min(1.0, max(0.0, progress))
