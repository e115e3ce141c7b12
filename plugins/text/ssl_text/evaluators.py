"""Language-model evaluators on held-out text: perplexity (causal) and masked-token accuracy.

Both read the held-out split from ``data.extras["lm_heldout"]`` (documents the training never
saw) and the LM head from the encoder itself, and are deterministic (fixed mask seed).
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from ssl_core.data import default_collate, move_to_device
from ssl_core.errors import ConfigError, DataError
from ssl_core.interfaces import DataModule, Encoder, Evaluator
from ssl_text.masking import IGNORE_INDEX, BertMasking


def _heldout_loader(data: DataModule, max_tokens: int, batch_size: int) -> DataLoader:
    ds = data.extras.get("lm_heldout")
    if ds is None:
        raise DataError("This dataset has no held-out text split (extras['lm_heldout']); use a text "
                        "dataset from the sslkit-text plugin.")
    if len(ds) == 0:
        raise DataError("The held-out text split is empty: set dataset_kwargs.heldout_fraction above 0 "
                        "(e.g. 0.1) or add more documents.")
    block = int(ds[0]["input_ids"].shape[0])
    n = min(len(ds), max(1, max_tokens // block))
    idx = torch.linspace(0, len(ds) - 1, n).round().long().unique().tolist()  # spread over the split
    return DataLoader(Subset(ds, idx), batch_size=batch_size, shuffle=False, collate_fn=data.collate or default_collate)


def _text_encoder(encoder: Encoder, causal: bool, metric: str) -> None:
    if not hasattr(encoder, "lm_logits") or getattr(encoder, "causal", None) is None:
        raise ConfigError(f"The '{metric}' evaluator needs a text Transformer with an LM head (sslkit-text).")
    if encoder.causal != causal:  # type: ignore[attr-defined]
        other = "perplexity" if encoder.causal else "masked_accuracy"  # type: ignore[attr-defined]
        raise ConfigError(
            f"The '{metric}' evaluator needs a {'causal' if causal else 'masked'} language model; "
            f"this encoder is {'causal' if encoder.causal else 'bidirectional'}: use '{other}'."  # type: ignore[attr-defined]
        )


class PerplexityEvaluator(Evaluator):
    """Held-out perplexity ``exp(mean next-token NLL)`` of a causal LM (lower is better)."""

    name = "perplexity"
    needs_labels = False

    def __init__(self, max_tokens: int = 65_536, batch_size: int = 32) -> None:
        self.max_tokens, self.batch_size = max_tokens, batch_size

    @torch.no_grad()
    def evaluate(self, encoder: Encoder, data: DataModule) -> Mapping[str, float]:
        _text_encoder(encoder, True, self.name)
        device = next(encoder.parameters()).device
        was_training = encoder.training
        encoder.eval()
        nll, count = 0.0, 0
        try:
            for batch in _heldout_loader(data, self.max_tokens, self.batch_size):
                batch = move_to_device(batch, device)
                ids, mask = batch["input_ids"], batch["attention_mask"]
                h = encoder.forward_features(ids, mask)[:, :-1]  # type: ignore[attr-defined]
                valid = mask[:, 1:].bool()
                logits = encoder.lm_logits(h[valid]).float()  # type: ignore[attr-defined]
                nll += F.cross_entropy(logits, ids[:, 1:][valid], reduction="sum").item()
                count += int(valid.sum())
        finally:
            encoder.train(was_training)
        mean = nll / max(count, 1)
        return {"heldout_loss": mean, "perplexity": math.exp(min(mean, 50.0))}


class MaskedAccuracyEvaluator(Evaluator):
    """Held-out masked-token accuracy (and MLM loss) under BERT's 15% / 80-10-10 corruption,
    with a fixed seed so every encoder is scored on the same masks."""

    name = "masked_accuracy"
    needs_labels = False

    def __init__(self, max_tokens: int = 65_536, batch_size: int = 32, seed: int = 1234) -> None:
        self.max_tokens, self.batch_size, self.seed = max_tokens, batch_size, seed

    @torch.no_grad()
    def evaluate(self, encoder: Encoder, data: DataModule) -> Mapping[str, float]:
        _text_encoder(encoder, False, self.name)
        kw = data.extras.get("augmenter_kwargs")
        if not kw:
            raise DataError("masked_accuracy needs the tokenizer's special ids in extras['augmenter_kwargs'].")
        masking = BertMasking(**kw)
        device = next(encoder.parameters()).device
        g = torch.Generator(device=device).manual_seed(self.seed)
        was_training = encoder.training
        encoder.eval()
        nll, correct, count = 0.0, 0, 0
        try:
            for batch in _heldout_loader(data, self.max_tokens, self.batch_size):
                batch = move_to_device(batch, device)
                corrupted, labels = masking(batch, g)
                h = encoder.forward_features(corrupted, batch["attention_mask"])  # type: ignore[attr-defined]
                sel = labels != IGNORE_INDEX
                logits = encoder.lm_logits(h[sel]).float()  # type: ignore[attr-defined]
                nll += F.cross_entropy(logits, labels[sel], reduction="sum").item()
                correct += int((logits.argmax(-1) == labels[sel]).sum())
                count += int(sel.sum())
        finally:
            encoder.train(was_training)
        return {"masked_acc": correct / max(count, 1), "mlm_loss": nll / max(count, 1)}
