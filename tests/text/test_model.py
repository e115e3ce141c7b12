"""The Transformer: causality, document masking, padding, pooling, generation."""

from __future__ import annotations

import pytest
import torch

from ssl_core.errors import ConfigError
from ssl_text.model import bert_small, gpt_small

V = 300


def _models():
    torch.manual_seed(0)
    kw = dict(vocab_size=V, max_len=32, d_model=32, n_layers=2, n_heads=4)
    return gpt_small(**kw).eval(), bert_small(**kw).eval()


def _logits(model, ids, mask=None):
    with torch.no_grad():
        return model.lm_logits(model.forward_features(ids, mask))


def test_causal_model_cannot_see_the_future() -> None:
    gpt, bert = _models()
    ids = torch.randint(5, V, (3, 20), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[:, 12] = (changed[:, 12] + 7 - 5) % (V - 5) + 5
    a, b = _logits(gpt, ids), _logits(gpt, changed)
    assert torch.allclose(a[:, :12], b[:, :12], atol=1e-5)  # earlier positions unchanged
    assert not torch.allclose(a[:, 12:], b[:, 12:], atol=1e-3)  # the changed token and later ones move
    # the same probe on the bidirectional model does see the change everywhere
    a, b = _logits(bert, ids), _logits(bert, changed)
    assert not torch.allclose(a[:, :12], b[:, :12], atol=1e-3)


def test_document_mask_stops_attention_at_eos() -> None:
    gpt, _ = _models()
    ids = torch.randint(5, V, (2, 20), generator=torch.Generator().manual_seed(2))
    ids[:, 10] = gpt.eos_id  # a new document starts at position 10
    changed = ids.clone()
    changed[:, 3] = (changed[:, 3] + 11 - 5) % (V - 5) + 5  # edit the previous document
    a, b = _logits(gpt, ids), _logits(gpt, changed)
    assert torch.allclose(a[:, 10:], b[:, 10:], atol=1e-5)
    assert not torch.allclose(a[:, 3:10], b[:, 3:10], atol=1e-3)


def test_padding_does_not_change_real_tokens() -> None:
    gpt, bert = _models()
    ids = torch.randint(5, V, (2, 16), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[:, 10:] = 0
    other = ids.clone()
    other[:, 10:] = torch.randint(5, V, (2, 6))  # garbage in the padded positions
    for model in (gpt, bert):
        a, b = _logits(model, ids, mask), _logits(model, other, mask)
        assert torch.allclose(a[:, :10], b[:, :10], atol=1e-5)
        ea = model.embed({"input_ids": ids, "attention_mask": mask})
        eb = model.embed({"input_ids": other, "attention_mask": mask})
        assert ea.shape == (2, 32) and torch.allclose(ea, eb, atol=1e-5)
        short = model.embed({"input_ids": ids[:, :10], "attention_mask": mask[:, :10]})
        assert torch.allclose(ea, short, atol=1e-5)  # trimming padding columns changes nothing


def test_the_path_that_does_not_read_masks_computes_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """On an accelerator the model builds its masks without looking at the data (no host read);
    that path must give what the CPU path, which skips masks that change nothing, gives."""
    import ssl_text.model

    gpt, bert = _models()
    ids = torch.randint(5, V, (3, 16), generator=torch.Generator().manual_seed(4))
    with_eos = ids.clone()
    with_eos[:, 7] = gpt.eos_id
    full = torch.ones_like(ids)
    padded = full.clone()
    padded[1, 11:] = 0
    only_special = torch.full_like(ids, gpt.eos_id)  # pooling falls back to every real token
    cases = [(ids, None), (ids, full), (ids, padded), (with_eos, full), (with_eos, padded), (only_special, padded)]
    looked = [[(_logits(m, i, a), m.embed({"input_ids": i, "attention_mask": a} if a is not None else {"input_ids": i}))
               for i, a in cases] for m in (gpt, bert)]
    monkeypatch.setattr(ssl_text.model, "reads_are_free", lambda device: False)
    for m, expected in zip((gpt, bert), looked):
        for (i, a), (logits, emb) in zip(cases, expected):
            mask, _ = m.attention_mask(i, a)
            if a is not None or m.causal and m.doc_mask:
                assert mask is not None  # built without looking
            got = m.embed({"input_ids": i, "attention_mask": a} if a is not None else {"input_ids": i})
            assert torch.allclose(_logits(m, i, a), logits, atol=1e-5)
            assert torch.allclose(got, emb, atol=1e-5)


def test_sampling_is_seeded_and_only_causal_models_generate() -> None:
    gpt, bert = _models()
    prompt = torch.tensor([[1, 50, 60]])
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    a = gpt.sample(prompt, max_new_tokens=8, generator=g(0), stop_at_eos=False)
    b = gpt.sample(prompt, max_new_tokens=8, generator=g(0), stop_at_eos=False)
    assert a.shape == (1, 11) and torch.equal(a, b) and torch.equal(a[:, :3], prompt)
    assert (a[0, 3:] >= 5).all()  # no special tokens are sampled
    greedy = gpt.sample(prompt, max_new_tokens=4, temperature=0, stop_at_eos=False)
    with torch.no_grad():
        first = gpt.lm_logits(gpt.forward_features(prompt))[0, -1]
    first[:5] = -float("inf")
    assert greedy[0, 3] == first.argmax()
    with pytest.raises(ConfigError, match="causal"):
        bert.sample(prompt, max_new_tokens=2)


def test_bad_shapes_are_reported() -> None:
    with pytest.raises(ConfigError, match="divisible"):
        gpt_small(vocab_size=V, d_model=30, n_heads=4)
