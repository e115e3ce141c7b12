"""The two language-modelling objectives: masked LM (BERT) and causal LM (GPT).

- MLM: Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for Language
  Understanding", NAACL 2019 (without next-sentence prediction, as in RoBERTa: Liu et al., 2019).
- CLM: Radford et al., "Improving Language Understanding by Generative Pre-Training", 2018, and
  "Language Models are Unsupervised Multitask Learners", 2019: next-token cross-entropy.

Both keep their LM head inside the encoder (tied to the input embedding), so the exported
encoder can be scored for perplexity / masked accuracy and can generate text.
"""

from __future__ import annotations

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

    def loss_on(self, input_ids: Tensor, attention_mask: Tensor | None, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(cross-entropy, accuracy) over the positions whose label is not ignored.

        Under torch.distributed the loss is this rank's share of the mean over every rank's
        selected tokens (:func:`ssl_core.distributed.global_mean_share`): ranks select different
        numbers of tokens, and a mean of per-rank means would weight their tokens unequally.
        """
        h = self.encoder.forward_features(input_ids, attention_mask)
        sel = labels != IGNORE_INDEX
        logits = self.encoder.lm_logits(h[sel])  # only the selected ~15%: saves most of the head
        target = labels[sel]
        loss = D.global_mean_share(F.cross_entropy(logits.float(), target, reduction="sum"), sel.sum())
        acc = (logits.argmax(-1) == target).float().mean()
        return loss, acc

    def training_step(self, batch: Batch, step: StepInfo) -> dict[str, Tensor]:
        corrupted, labels = self.augmenter(batch, step.generator)
        loss, acc = self.loss_on(corrupted, batch.get("attention_mask"), labels)
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
            valid = torch.ones_like(target, dtype=torch.bool)
        else:
            valid = attention_mask[:, 1:].bool()
        logits = self.encoder.lm_logits(h[valid])
        return D.global_mean_share(F.cross_entropy(logits.float(), target[valid], reduction="sum"), valid.sum())

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
