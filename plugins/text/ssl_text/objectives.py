"""The two language-modelling objectives: masked LM (BERT) and causal LM (GPT).

- MLM: Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for Language
  Understanding", NAACL 2019 (without next-sentence prediction, as in RoBERTa: Liu et al., 2019).
- CLM: Radford et al., "Improving Language Understanding by Generative Pre-Training", 2018, and
  "Language Models are Unsupervised Multitask Learners", 2019: next-token cross-entropy.

Both keep their LM head inside the encoder (tied to the input embedding), so the exported
encoder can be scored for perplexity / masked accuracy and can generate text.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_core import distributed as D
from ssl_core.errors import ConfigError
from ssl_core.interfaces import Augmenter, Batch, DataModule, Objective, StepInfo
from ssl_text.masking import IGNORE_INDEX, BertMasking
from ssl_text.model import TextTransformer


def _check(encoder: Any, causal: bool, name: str, data_mode: str | None) -> None:
    if not isinstance(encoder, TextTransformer):
        raise ConfigError(f"Objective '{name}' needs a text Transformer encoder with an LM head "
                          f"('{'gpt_small' if causal else 'bert_small'}'), got {type(encoder).__name__}.")
    if encoder.causal != causal:
        raise ConfigError(
            f"Objective '{name}' needs a {'causal' if causal else 'bidirectional'} encoder; use "
            f"--encoder {'gpt_small' if causal else 'bert_small'}."
        )
    expected = "clm" if causal else "mlm"
    if data_mode is not None and data_mode != expected:
        raise ConfigError(
            f"Objective '{name}' reads {expected} inputs but the dataset was built with "
            f"dataset_kwargs.mode={data_mode}; drop that override or set it to {expected}."
        )


class _LMObjective(Objective):
    """Shared end-of-training work: save the tokenizer next to the encoder."""

    def on_train_end(self, run_dir: Path | None, data: DataModule) -> None:
        if run_dir is None:
            return
        tok = data.extras.get("tokenizer")
        if tok is not None:
            tok.save(str(Path(run_dir) / "tokenizer.json"))


class MaskedLM(_LMObjective):
    """BERT masked-language modelling: predict the 15% selected tokens from their context."""

    def __init__(self, encoder: TextTransformer, augmenter: Augmenter | None = None,
                 data_mode: str | None = None) -> None:
        super().__init__()
        _check(encoder, False, "mlm", data_mode)
        if augmenter is None:
            raise ConfigError("Objective 'mlm' needs a masking augmenter: set augmenter: bert_masking.")
        self.encoder = encoder
        self.augmenter = augmenter

    def loss_on(self, input_ids: Tensor, attention_mask: Tensor | None, labels: Tensor,
                max_selected: int | None = None) -> tuple[Tensor, Tensor]:
        """(cross-entropy, accuracy) over the positions whose label is not ignored.

        Under torch.distributed the loss is this rank's share of the mean over every rank's
        selected tokens (:func:`ssl_core.distributed.global_mean_share`): ranks select different
        numbers of tokens, and a mean of per-rank means would weight their tokens unequally.

        With ``max_selected`` the LM head runs on that many positions, gathered with a fixed shape
        (no host-device sync, unlike boolean-mask indexing, whose size the host must read): the
        selected positions and, to fill up, unselected ones that carry no loss. Selected positions
        beyond ``max_selected`` would be left out, so pass a bound that cannot be reached in
        practice (:meth:`selection_bound`).
        """
        h = self.encoder.forward_features(input_ids, attention_mask)
        sel = labels != IGNORE_INDEX
        if max_selected is None or max_selected >= sel.numel():
            logits = self.encoder.lm_logits(h[sel])  # only the selected ~15%: saves most of the head
            target = labels[sel]
            weight = None
        else:
            # the selected positions first (top-k of a 0/1 tensor), then padding rows of the head
            idx = sel.flatten().to(torch.uint8).topk(max_selected, sorted=False).indices
            logits = self.encoder.lm_logits(h.flatten(0, 1)[idx])
            target = labels.flatten()[idx]
            weight = target != IGNORE_INDEX
        loss = D.global_mean_share(F.cross_entropy(logits.float(), target, reduction="sum",
                                                   ignore_index=IGNORE_INDEX), sel.sum())
        hits = logits.argmax(-1) == target
        acc = hits.float().mean() if weight is None else (hits & weight).sum() / weight.sum().clamp_min(1)
        return loss, acc

    def selection_bound(self, n_tokens: int) -> int | None:
        """An upper bound on the tokens the augmenter selects among ``n_tokens``: the mean of
        Binomial(n, mask_prob) plus 10 standard deviations (exceeded with probability below
        1e-20) plus one for the at-least-one rule. ``None`` when the augmenter has no ``mask_prob``."""
        p = getattr(self.augmenter, "mask_prob", None)
        if p is None:
            return None
        return int(math.ceil(n_tokens * p + 10 * math.sqrt(n_tokens * p * (1 - p)))) + 1

    def training_step(self, batch: Batch, step: StepInfo) -> dict[str, Tensor]:
        corrupted, labels = self.augmenter(batch, step.generator)
        loss, acc = self.loss_on(corrupted, batch.get("attention_mask"), labels,
                                 max_selected=self.selection_bound(labels.numel()))
        return {"loss": loss, "masked_acc": acc.detach()}


class CausalLM(_LMObjective):
    """GPT next-token prediction over packed blocks (padding and document starts respected)."""

    def __init__(self, encoder: TextTransformer, augmenter: Augmenter | None = None,
                 data_mode: str | None = None) -> None:
        super().__init__()
        _check(encoder, True, "clm", data_mode)
        self.encoder = encoder

    def loss_on(self, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        """Mean next-token cross-entropy over real target tokens (of the global batch under
        torch.distributed: ranks hold different numbers of padding tokens)."""
        h = self.encoder.forward_features(input_ids, attention_mask)[:, :-1]
        target = input_ids[:, 1:]
        if attention_mask is None:
            logits = self.encoder.lm_logits(h)
            return D.global_mean_share(F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), reduction="sum"),
                                       torch.full((), target.numel(), device=target.device))
        # padding targets are ignored rather than cut out by a boolean mask (whose size the host
        # would have to read): packed blocks carry little padding, so the head does little extra work
        valid = attention_mask[:, 1:].bool()
        logits = self.encoder.lm_logits(h)
        target = target.masked_fill(~valid, IGNORE_INDEX)
        return D.global_mean_share(F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), reduction="sum",
                                                   ignore_index=IGNORE_INDEX), valid.sum())

    def training_step(self, batch: Batch, step: StepInfo) -> dict[str, Tensor]:
        loss = self.loss_on(batch["input_ids"], batch.get("attention_mask"))
        return {"loss": loss, "ppl": loss.detach().exp()}

    def on_train_end(self, run_dir: Path | None, data: DataModule) -> None:
        super().on_train_end(run_dir, data)
        tok = data.extras.get("tokenizer")
        if run_dir is None or tok is None:
            return
        from ssl_text.generate import generate_text

        prompts = data.extras.get("sample_prompts") or ["The"]
        lines = []
        for i, prompt in enumerate(prompts):
            text = generate_text(self.encoder, tok, prompt, max_new_tokens=60, temperature=0.8, top_k=40, seed=i)[0]
            lines.append(f"--- prompt: {prompt!r}\n{text}\n")
        (Path(run_dir) / "samples.txt").write_text("\n".join(lines), encoding="utf-8")


__all__ = ["BertMasking", "CausalLM", "MaskedLM"]
