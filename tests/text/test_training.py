"""Short CPU runs on the built-in corpus: the losses fall and the held-out scores improve."""

from __future__ import annotations

import pytest
import torch

from ssl_core.config import TrainConfig
from ssl_core.errors import ConfigError
from ssl_core.trainer import Trainer
from ssl_text.evaluators import MaskedAccuracyEvaluator, PerplexityEvaluator
from ssl_text.masking import BertMasking
from ssl_text.model import bert_small, gpt_small
from ssl_text.objectives import CausalLM, MaskedLM

TINY = dict(d_model=48, n_layers=2, n_heads=4)


def _train(objective, data, steps: int = 40) -> list[float]:
    cfg = TrainConfig(steps=steps, epochs=None, batch_size=16, lr=3e-3, warmup_fraction=0.1, weight_decay=0.01,
                      clip_grad=1.0, log_every=5, health_every=0, checkpoint_every=0, progress=False, device="cpu")
    result = Trainer(objective, data, cfg).fit()
    return [r["loss"] for r in result.history]


def test_clm_loss_and_heldout_perplexity_fall(builtin_clm) -> None:
    data = builtin_clm
    torch.manual_seed(0)
    encoder = gpt_small(**data.extras["encoder_kwargs"], **TINY)
    ppl = PerplexityEvaluator(max_tokens=8192)
    before = ppl.evaluate(encoder, data)["perplexity"]
    assert before > 0.5 * data.extras["encoder_kwargs"]["vocab_size"]  # untrained: close to uniform
    losses = _train(CausalLM(encoder, data_mode="clm"), data)
    after = ppl.evaluate(encoder, data)["perplexity"]
    assert losses[-1] < losses[0] - 0.5
    assert after < 0.6 * before, (before, after)


def test_mlm_loss_falls_and_masked_accuracy_rises(text_cache) -> None:
    from ssl_text.data import python_docs

    data = python_docs(mode="mlm", block_size=64, vocab_size=1024)  # shares the tokenized store with the clm fixture
    torch.manual_seed(0)
    encoder = bert_small(**data.extras["encoder_kwargs"], **TINY)
    acc = MaskedAccuracyEvaluator(max_tokens=8192)
    before = acc.evaluate(encoder, data)
    losses = _train(MaskedLM(encoder, BertMasking(**data.extras["augmenter_kwargs"]), data_mode="mlm"), data)
    after = acc.evaluate(encoder, data)
    assert losses[-1] < losses[0] - 0.5
    assert after["mlm_loss"] < before["mlm_loss"] - 0.5
    assert after["masked_acc"] > before["masked_acc"] + 0.03, (before, after)


def test_evaluators_refuse_the_wrong_kind_of_model(builtin_clm) -> None:
    kw = builtin_clm.extras["encoder_kwargs"]
    with pytest.raises(ConfigError, match="use 'masked_accuracy'"):
        PerplexityEvaluator().evaluate(bert_small(**kw, **TINY), builtin_clm)
    with pytest.raises(ConfigError, match="use 'perplexity'"):
        MaskedAccuracyEvaluator().evaluate(gpt_small(**kw, **TINY), builtin_clm)
