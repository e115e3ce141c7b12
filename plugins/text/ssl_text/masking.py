"""BERT's masked-LM corruption as a batched, seeded augmenter.

Devlin, Chang, Lee & Toutanova, "BERT: Pre-training of Deep Bidirectional Transformers for
Language Understanding", NAACL 2019, Sec. 3.1: 15% of the (non-special) tokens are selected
for prediction; a selected token is replaced by ``[MASK]`` 80% of the time, by a random token
10% of the time, and left unchanged 10% of the time. The loss is computed on selected tokens only.

Selection is an independent Bernoulli(15%) draw per token (as in RoBERTa's dynamic masking), done
on the training device from the step's generator, so every step draws a fresh, reproducible mask.
The draws of a token depend only on the step, its sequence's place in the global batch and its
position (:func:`ssl_core.randomness.keyed_uniform`), so the mask does not change with the
number of processes or with how much padding a process's batch carries.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ssl_core.errors import ConfigError
from ssl_core.interfaces import Augmenter, Batch
from ssl_core.randomness import keyed_uniform, sample_keys

IGNORE_INDEX = -100
"""Label of tokens that carry no loss (``F.cross_entropy``'s default ``ignore_index``)."""


class BertMasking(Augmenter):
    """Returns ``(corrupted_input_ids, labels)``; labels are ``-100`` except at selected tokens."""

    def __init__(
        self,
        vocab_size: int,
        mask_id: int,
        special_ids: Sequence[int] = (0, 1, 2, 3, 4),
        mask_prob: float = 0.15,
        mask_token_frac: float = 0.8,
        random_token_frac: float = 0.1,
    ) -> None:
        if not 0 < mask_prob < 1:
            raise ConfigError(f"augmenter_kwargs.mask_prob must be in (0, 1), got {mask_prob}.")
        if mask_token_frac < 0 or random_token_frac < 0 or mask_token_frac + random_token_frac > 1:
            raise ConfigError(
                "augmenter_kwargs.mask_token_frac and random_token_frac must be >= 0 and sum to at "
                f"most 1 (BERT: 0.8 and 0.1), got {mask_token_frac} and {random_token_frac}."
            )
        self.vocab_size, self.mask_id = vocab_size, mask_id
        self.special_ids = sorted(set(int(i) for i in special_ids) | {mask_id})
        self.mask_prob, self.mask_token_frac, self.random_token_frac = mask_prob, mask_token_frac, random_token_frac
        ordinary = torch.ones(vocab_size, dtype=torch.bool)
        ordinary[[i for i in self.special_ids if i < vocab_size]] = False
        self._ordinary_ids = ordinary.nonzero().squeeze(1)
        self._is_special = ~ordinary

    def __call__(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        ids: Tensor = batch["input_ids"]
        device = ids.device
        if self._is_special.device != device:
            self._is_special = self._is_special.to(device)
            self._ordinary_ids = self._ordinary_ids.to(device)
        candidates = ~self._is_special[ids]
        if "attention_mask" in batch:
            candidates &= batch["attention_mask"].bool()
        # three draws per token, keyed by (sample, position): the same whatever the padded width
        # of this process's batch and however many processes share the global batch
        keys = sample_keys(generator, ids.shape[0], device)[:, None]
        pos = torch.arange(ids.shape[1], device=device)[None, :] * 3
        u = keyed_uniform(keys, pos)
        selected = candidates & (u < self.mask_prob)
        if not bool(selected.any()) and bool(candidates.any()):
            # keep the loss defined on a batch where no token happened to be drawn
            first = candidates.flatten().nonzero()[0]
            selected.view(-1)[first] = True
        labels = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))
        r = keyed_uniform(keys, pos + 1)
        to_mask = selected & (r < self.mask_token_frac)
        to_random = selected & (r >= self.mask_token_frac) & (r < self.mask_token_frac + self.random_token_frac)
        n_ordinary = len(self._ordinary_ids)
        pick = (keyed_uniform(keys, pos + 2) * n_ordinary).long().clamp_max(n_ordinary - 1)
        corrupted = torch.where(to_mask, torch.full_like(ids, self.mask_id), ids)
        corrupted = torch.where(to_random, self._ordinary_ids[pick], corrupted)
        return corrupted, labels
