"""Shared data helpers in ssl_core.data."""

from __future__ import annotations


def test_stratified_split_keeps_class_proportions_and_both_sides() -> None:
    from ssl_core.data import stratified_split

    labels = [0] * 40 + [1] * 20 + [2] * 2
    tr, te = stratified_split(labels, 0.25, seed=0)
    assert sorted(tr.tolist() + te.tolist()) == list(range(62))
    counts = {c: sum(labels[i] == c for i in te) for c in (0, 1, 2)}
    assert counts == {0: 10, 1: 5, 2: 0}  # round(2 * 0.25) = 0: the tiny class is all train
    tr2, te2 = stratified_split(labels, 0.25, seed=0, both_sides=True)
    assert sum(labels[i] == 2 for i in te2) == 1 and sum(labels[i] == 2 for i in tr2) == 1
    assert stratified_split(labels, 0.25, seed=1)[1].tolist() != te.tolist()  # the seed matters
