"""The byte-level BPE: exact round trips, deterministic training, special tokens, file errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssl_core.errors import DataError
from ssl_text.tokenizer import SPECIAL_TOKENS, load_tokenizer, special_ids, train_tokenizer

from .conftest import topic_docs

SAMPLES = [
    "Return the number of items in a container.",
    "def f(x):\n    return x ** 2  # square\n\n\tindented\ttabs",
    "Unicode: naïve café, Ελληνικά, 日本語, emoji 🙂 and trailing spaces   ",
    "  leading spaces and a blank line\n\nbetween paragraphs",
]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer((d["text"] for d in topic_docs()), vocab_size=600)


def test_round_trip_is_exact(tok) -> None:
    for text in SAMPLES:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert tok.decode(ids) == text
        assert len(ids) < len(text.encode("utf-8"))  # merges learned: fewer tokens than bytes


def test_special_tokens_get_the_first_ids_and_never_split(tok) -> None:
    sp = special_ids(tok)
    assert [sp.pad, sp.eos, sp.cls, sp.sep, sp.mask] == [0, 1, 2, 3, 4]
    assert tok.encode("a <mask> b", add_special_tokens=False).ids.count(sp.mask) == 1
    assert tok.get_vocab_size() == 600


def test_training_is_deterministic(tok) -> None:
    again = train_tokenizer((d["text"] for d in topic_docs()), vocab_size=600)
    assert again.to_str() == tok.to_str()


def test_save_and_load_round_trip(tok, tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    loaded = load_tokenizer(path)
    assert loaded.encode(SAMPLES[0]).ids == tok.encode(SAMPLES[0]).ids


def test_loading_a_tokenizer_without_our_special_tokens_adds_them(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    plain = Tokenizer(models.BPE())
    plain.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    plain.train_from_iterator(["some text " * 50], trainer=trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    path = tmp_path / "plain.json"
    plain.save(str(path))
    loaded = load_tokenizer(path)
    ids = [loaded.token_to_id(t) for t in SPECIAL_TOKENS]
    assert None not in ids and len(set(ids)) == len(SPECIAL_TOKENS)


def test_missing_or_bad_tokenizer_file_is_explained(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_tokenizer(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="Could not read tokenizer"):
        load_tokenizer(bad)


def test_too_small_vocab_is_rejected() -> None:
    with pytest.raises(DataError, match="vocab_size"):
        train_tokenizer(["text"], vocab_size=100)
