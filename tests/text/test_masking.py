"""BERT masking statistics on a large sample: 15% selected, then 80% [MASK] / 10% random / 10% kept."""

from __future__ import annotations

import torch

from ssl_text.masking import IGNORE_INDEX, BertMasking

V, MASK, SPECIALS = 1000, 4, [0, 1, 2, 3, 4]


def _batch(b: int = 512, t: int = 128) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, V, (b, t), generator=g)
    ids[:, 0] = 2  # <cls>
    ids[:, 60] = 1  # <eos> inside the segment
    lengths = torch.randint(t // 2, t + 1, (b,), generator=g)
    mask = (torch.arange(t)[None] < lengths[:, None]).long()
    ids = torch.where(mask.bool(), ids, torch.zeros_like(ids))  # <pad> after each length
    return {"input_ids": ids, "attention_mask": mask}


def test_selection_and_replacement_rates_match_bert() -> None:
    batch = _batch()
    ids = batch["input_ids"]
    corrupted, labels = BertMasking(V, MASK, SPECIALS)(batch, torch.Generator().manual_seed(1))
    candidates = batch["attention_mask"].bool() & (ids >= 5)
    selected = labels != IGNORE_INDEX
    n = int(candidates.sum())
    assert n > 40_000
    assert abs(selected.sum().item() / n - 0.15) < 0.005  # 15% of eligible tokens
    assert not (selected & ~candidates).any()  # never pads or special tokens
    assert torch.equal(labels[selected], ids[selected])  # labels are the original tokens
    k = int(selected.sum())
    to_mask = (corrupted[selected] == MASK).sum().item() / k
    kept = (corrupted[selected] == ids[selected]).sum().item() / k
    randomised = 1 - to_mask - kept
    assert abs(to_mask - 0.8) < 0.015 and abs(kept - 0.1) < 0.012 and abs(randomised - 0.1) < 0.012
    swapped = corrupted[selected][(corrupted[selected] != MASK) & (corrupted[selected] != ids[selected])]
    assert (swapped >= 5).all()  # random replacements are ordinary tokens
    assert torch.equal(corrupted[~selected], ids[~selected])  # unselected tokens untouched


def test_masks_are_reproducible_per_generator_and_fresh_per_seed() -> None:
    batch = _batch(8, 64)
    m = BertMasking(V, MASK, SPECIALS)
    a = m(batch, torch.Generator().manual_seed(5))
    b = m(batch, torch.Generator().manual_seed(5))
    c = m(batch, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_at_least_one_token_is_always_selected() -> None:
    batch = {"input_ids": torch.tensor([[2, 7, 8, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    m = BertMasking(V, MASK, SPECIALS, mask_prob=0.01)
    for seed in range(20):
        _, labels = m(batch, torch.Generator().manual_seed(seed))
        assert (labels != IGNORE_INDEX).sum() >= 1
        assert labels[0, 0] == IGNORE_INDEX and labels[0, 3] == IGNORE_INDEX
