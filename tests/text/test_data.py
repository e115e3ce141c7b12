"""Readers (txt, folder, JSONL), their error messages, and the memory-mapped token store."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from ssl_core.errors import DataError
from ssl_text import corpus
from ssl_text.corpus import Piece, list_corpus_files, read_jsonl, read_text_file
from ssl_text.data import text_files
from ssl_text.store import build_store, sentence_segments

from .conftest import topic_docs


def _texts(pieces) -> list[str]:
    return [p.text for p in pieces]


def test_plain_text_document_splits(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("First paragraph\ncontinues here.\n\n\nSecond one.\n  \nThird.\n", encoding="utf-8")
    assert _texts(read_text_file(f)) == ["First paragraph\ncontinues here.", "Second one.", "Third."]
    assert _texts(read_text_file(f, "line")) == ["First paragraph", "continues here.", "Second one.", "Third."]
    assert _texts(read_text_file(f, "file")) == ["First paragraph\ncontinues here.\n\n\nSecond one.\n  \nThird."]
    with pytest.raises(DataError, match="doc_split"):
        list(read_text_file(f, "sentence"))


def test_a_document_larger_than_a_piece_streams_as_one_document(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(corpus, "MAX_PIECE_CHARS", 100)
    f = tmp_path / "long.txt"
    lines = [f"Line number {i} of a long document." for i in range(40)]
    f.write_text("\n".join(lines) + "\n\nShort doc.\n")
    pieces = list(read_text_file(f))
    assert len(pieces) > 5 and [p.end for p in pieces].count(True) == 2
    assert "".join(p.text for p in pieces[:-1]) == "\n".join(lines)


def test_jsonl_reader_and_labels(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text('{"text": "one", "label": "a"}\n\n{"text": "two"}\n{"body": "three", "topic": 3}\n')
    with pytest.raises(DataError) as err:
        list(read_jsonl(f))
    msg = str(err.value)
    assert str(f) in msg and "line 4" in msg and "'text'" in msg and "dataset_kwargs.text_field" in msg
    assert "body" in msg  # names the fields the line does have
    g = tmp_path / "ok.jsonl"
    g.write_text('{"body": "one", "topic": 3}\n{"body": "two"}\n')
    assert [(p.text, p.label) for p in read_jsonl(g, "body", "topic")] == [("one", "3"), ("two", None)]


def test_jsonl_syntax_and_type_errors_name_the_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text('{"text": "fine"}\n{"text": "unterminated}\n')
    with pytest.raises(DataError, match=r"bad.jsonl, line 2: not valid JSON"):
        list(read_jsonl(f))
    f.write_text('["a list"]\n')
    with pytest.raises(DataError, match="line 1: expected a JSON object"):
        list(read_jsonl(f))
    f.write_text('{"text": 5}\n')
    with pytest.raises(DataError, match="must be a string"):
        list(read_jsonl(f))


def test_path_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"does not exist.*--data"):
        list_corpus_files(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "image.png").write_bytes(b"\x89PNG")
    with pytest.raises(DataError, match=r"No text files found under .*empty.*\.txt"):
        list_corpus_files(empty)
    blank = tmp_path / "blank.txt"
    blank.write_text("")
    with pytest.raises(DataError, match="is empty"):
        list_corpus_files(blank)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("ok line\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.txt, line 2.*encoding"):
        list(read_text_file(latin))
    assert _texts(read_text_file(latin, encoding="latin-1")) == ["ok line\ncafé"]
    with pytest.raises(DataError, match="needs --data"):
        text_files(None)


def test_folder_labels_from_subfolders_and_gz(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    for label in ("news", "poems"):
        (root / label).mkdir(parents=True)
        (root / label / "x.txt").write_text(f"{label} text one.\n\n{label} text two.\n")
    with gzip.open(root / "poems" / "more.jsonl.gz", "wt") as fh:
        fh.write(json.dumps({"text": "a gzipped poem"}) + "\n")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "skip.txt").write_text("hidden")
    files, labels = list_corpus_files(root)
    assert [f.name for f in files] == ["x.txt", "more.jsonl.gz", "x.txt"]
    assert labels == ["news", "poems", "poems"]
    pieces = list(corpus.file_pieces(files, labels)())
    assert ("a gzipped poem", "poems") in [(p.text, p.label) for p in pieces]


def test_store_round_trips_tokens_and_splits_documents(tmp_path: Path, jsonl_corpus: Path) -> None:
    dm = text_files(str(jsonl_corpus), mode="clm", block_size=32, vocab_size=400, heldout_fraction=0.3,
                    cache_dir=str(tmp_path))
    tok = dm.extras["tokenizer"]
    train = dm.train
    blocks = [train[i] for i in range(len(train))]
    stream = np.concatenate([b["input_ids"][b["attention_mask"].bool()].numpy() for b in blocks])
    assert len(stream) == train.n  # blocks tile the stream exactly, last one padded
    text = tok.decode(stream.tolist(), skip_special_tokens=False)
    docs = [d["text"] for d in topic_docs()]
    pieces = text.split("<eos>")[:-1]
    assert 0.5 * len(docs) < len(pieces) < 0.9 * len(docs)  # ~30% went to held-out
    assert set(pieces) <= set(docs)  # documents survive tokenization exactly
    held = dm.extras["lm_heldout"]
    held_text = tok.decode(np.concatenate([held[i]["input_ids"].numpy() for i in range(len(held))]).tolist(),
                           skip_special_tokens=False).replace("<pad>", "")
    assert not set(held_text.split("<eos>")[:-1]) & set(pieces)  # held-out documents are unseen
    # probes: labelled document openings with labels from the JSONL field
    assert dm.class_names == ["class", "function", "import", "try"]
    sample = dm.eval_test[0]
    assert sample["input_ids"][0] == dm.extras["special_ids"].eos and 0 <= sample["label"] < 4
    # a second build reuses the cache
    again = text_files(str(jsonl_corpus), mode="mlm", block_size=32, vocab_size=400, heldout_fraction=0.3,
                       cache_dir=str(tmp_path))
    assert again.extras["store_dir"] == dm.extras["store_dir"]


def test_mlm_segments_are_whole_sentences_within_the_limit(tmp_path: Path, jsonl_corpus: Path) -> None:
    dm = text_files(str(jsonl_corpus), mode="mlm", block_size=48, vocab_size=400, cache_dir=str(tmp_path))
    sp = dm.extras["special_ids"]
    seg = dm.train.segments
    assert (seg[:, 1] <= 46).all() and (seg[:, 1] > 0).all()
    assert (seg[1:, 0] == seg[:-1, 0] + seg[:-1, 1]).all()  # contiguous, nothing dropped
    assert seg[:, 1].mean() > 30  # packed, not one short sentence per sample
    x = dm.train[3]
    ids = x["input_ids"][x["attention_mask"].bool()]
    assert ids[0] == sp.cls and ids[-1] == sp.sep
    tok = dm.extras["tokenizer"]
    last = [tok.decode([int(dm.train.tokens[s + n - 1])], skip_special_tokens=False) for s, n in seg[:-1]]
    ends = sum(t.rstrip(" \"')]").endswith((".", "!", "?")) or "\n" in t or t == "<eos>" or n == 46
               for t, (_, n) in zip(last, seg[:-1]))
    assert ends / (len(seg) - 1) > 0.9


def test_sentence_segments_on_a_toy_stream() -> None:
    boundary = np.zeros(10, dtype=bool)
    boundary[9] = True  # token 9 ends a sentence
    stream = np.array([1, 1, 9, 1, 1, 1, 9, 1, 1, 1, 1, 1, 1, 1, 9, 1])
    seg = sentence_segments(stream, boundary, max_tokens=7)
    assert seg.tolist() == [[0, 7], [7, 7], [14, 2]]
    seg = sentence_segments(stream, boundary, max_tokens=5)
    assert seg.tolist() == [[0, 3], [3, 4], [7, 5], [12, 4]]  # a long sentence is cut at the limit


def test_single_document_corpus_gets_a_heldout_tail(tmp_path: Path) -> None:
    text = " ".join(d["text"] for d in topic_docs())

    def pieces():
        yield Piece(text)

    store = build_store(pieces, "one-doc", vocab_size=400, heldout_fraction=0.2, cache_dir=tmp_path)
    n_train, n_held = store.meta["tokens"]["train"], store.meta["tokens"]["heldout"]
    assert store.meta["heldout_from_tail"] and 0.15 < n_held / (n_train + n_held) < 0.25
    joined = np.concatenate([store.tokens("train"), store.tokens("heldout")]).tolist()
    assert store.tokenizer.decode(joined, skip_special_tokens=False) == text + "<eos>"


def test_reader_errors_surface_through_tokenizer_training(tmp_path: Path) -> None:
    f = tmp_path / "c.jsonl"
    f.write_text('{"text": "fine line"}\n{"txt": "typo"}\n')
    with pytest.raises(DataError, match=r"c.jsonl, line 2: no 'text' field"):
        text_files(str(f), cache_dir=str(tmp_path / "cache"))
