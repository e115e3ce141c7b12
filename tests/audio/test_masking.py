"""Span masking: fraction of masked frames, span structure, padding, reproducibility."""

from __future__ import annotations

import pytest
import torch

from ssl_audio.masking import expected_mask_fraction, mask_runs, masked_fraction, span_mask


@pytest.mark.parametrize("p,span", [(0.065, 10), (0.08, 10), (0.2, 3)])
def test_mask_covers_expected_fraction_of_interior_frames(p, span):
    g = torch.Generator().manual_seed(0)
    frames = torch.full((64,), 1500)
    mask = span_mask(frames, 1500, p=p, span=span, min_spans=0, generator=g)
    interior = mask[:, span:-span].float().mean().item()  # away from the edges every frame can be covered
    expected = expected_mask_fraction(p, span)
    assert abs(interior - expected) < 0.015, (interior, expected)
    if (p, span) == (0.065, 10):
        assert 0.47 < expected < 0.50  # "about 49% of all time steps" (wav2vec 2.0, Sec. 4.2)


def test_masked_frames_come_in_spans_of_at_least_the_span_length():
    g = torch.Generator().manual_seed(1)
    frames = torch.tensor([300, 250, 120, 60])
    mask = span_mask(frames, 300, p=0.065, span=10, min_spans=2, generator=g)
    for row, n in zip(mask, frames.tolist()):
        runs = mask_runs(row[:n])
        assert runs, "every utterance gets masked frames"
        assert min(runs) >= 10, runs  # overlapping spans merge into longer runs, never shorter
        assert sum(runs) >= 10


def test_no_mask_on_padding_and_short_utterances_masked_whole():
    g = torch.Generator().manual_seed(2)
    frames = torch.tensor([40, 7, 0])
    mask = span_mask(frames, 40, p=0.5, span=10, min_spans=1, generator=g)
    assert not mask[1, 7:].any() and not mask[2].any()
    assert mask[1, :7].all()  # shorter than one span: the span from frame 0 covers it


def test_min_spans_guarantees_masked_frames():
    g = torch.Generator().manual_seed(3)
    frames = torch.full((200,), 25)
    mask = span_mask(frames, 25, p=0.0, span=10, min_spans=1, generator=g)
    assert (mask.sum(1) == 10).all()  # exactly one span when p=0
    mask0 = span_mask(frames, 25, p=0.0, span=10, min_spans=0, generator=g)
    assert not mask0.any()


def test_mask_is_reproducible_and_differs_per_utterance():
    frames = torch.full((8,), 100)
    a = span_mask(frames, 100, generator=torch.Generator().manual_seed(5))
    b = span_mask(frames, 100, generator=torch.Generator().manual_seed(5))
    c = span_mask(frames, 100, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({tuple(r.tolist()) for r in a}) == 8


def test_bad_arguments_are_reported():
    with pytest.raises(ValueError, match="probability"):
        span_mask(torch.tensor([10]), 10, p=1.5)
    with pytest.raises(ValueError, match="span"):
        span_mask(torch.tensor([10]), 10, span=0)


def test_masked_fraction_counts_valid_frames_and_is_zero_for_an_empty_batch() -> None:
    valid = torch.tensor([[True, True, True, False], [True, False, False, False]])
    mask = torch.tensor([[True, False, True, False], [False, False, False, False]])
    assert masked_fraction(mask, valid).item() == pytest.approx(2 / 4)  # padding is not in the denominator
    one = torch.tensor([[True, False]])
    assert masked_fraction(one, one).item() == 1.0  # one valid frame, masked: all of it
    none = torch.zeros(2, 3, dtype=torch.bool)
    assert masked_fraction(none, none).item() == 0.0  # a rank with no frames logs 0, not NaN
