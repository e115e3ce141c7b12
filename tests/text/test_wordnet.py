"""The WordNet reader on files written here in WordNet 3.0's wndb(5WN) format, and the built-in set."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ssl_core.errors import DataError
from ssl_text import wordnet as wn

HEADER = "  1 This software and database is being provided to you, the LICENSEE, by  \n"


def synset_line(offset: int, lex: int, ss_type: str, words: list[str], gloss: str, pointers: int = 1,
                frames: str = "") -> str:
    """One synset line as WordNet's grind writes it (pointers point at offset 0 of the same part)."""
    word_fields = " ".join(f"{w} {i % 16:x}" for i, w in enumerate(words))
    pos = {"s": "a"}.get(ss_type, ss_type)
    ptrs = "".join(f" @ {0:08d} {pos} 0000" for _ in range(pointers))
    return f"{offset:08d} {lex:02d} {ss_type} {len(words):02x} {word_fields} {pointers:03d}{ptrs}{frames} | {gloss}  \n"


def write_wordnet(root: Path, per_class: dict[str, int] | None = None) -> Path:
    """A small WordNet 'dict' folder: licence header, then synsets of the named classes."""
    per_class = per_class or {"noun.animal": 12, "noun.plant": 12, "noun.artifact": 12}
    root.mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {p: [HEADER] for p in wn.PARTS}
    for name, n in per_class.items():
        part = name.split(".")[0]
        lex = wn.LEXNAMES.index(name)
        for i in range(n):
            kind = name.split(".")[1]
            ss_type = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}[part]
            frames = " 01 + 02 00" if part == "verb" else ""
            lines[part].append(synset_line(len(lines[part]), lex, ss_type, [f"{kind}_{i}", f"{kind}{i}"],
                                           f'a {kind} thing number {i}; "the {kind} example {i}"', frames=frames))
    for part in wn.PARTS:
        if len(lines[part]) == 1:  # every part needs one synset
            lex = {"noun": 5, "verb": 38, "adj": 0, "adv": 2}[part]
            ss_type = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}[part]
            lines[part].append(synset_line(1, lex, ss_type, ["filler"], "a filler entry", pointers=0,
                                           frames=" 01 + 02 00" if part == "verb" else ""))
        (root / f"data.{part}").write_text("".join(lines[part]), encoding="utf-8")
    return root


def test_parses_nouns_verbs_and_adjectives_in_the_real_format(tmp_path: Path) -> None:
    path = tmp_path / "data.x"
    noun = wn.parse_line(
        "02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 002 @ 02083346 n 0000 ~ 01322604 n 0000 | "
        'a member of the genus Canis; "the dog barked all night"  ', "noun", path, 30)
    assert noun.offset == 2084071 and noun.lexname == "noun.animal" and noun.part == "noun"
    assert noun.words == ("dog", "domestic dog", "Canis familiaris")
    assert noun.gloss == 'a member of the genus Canis; "the dog barked all night"'
    assert noun.text == 'dog, domestic dog, Canis familiaris: a member of the genus Canis; "the dog barked all night"'
    verb = wn.parse_line("00060063 29 v 01 abort 1 001 @ 00358431 v 0000 01 + 01 00 | cease development  ",
                         "verb", path, 31)
    assert verb.lexname == "verb.body" and verb.words == ("abort",)
    adj = wn.parse_line("01017738 00 s 01 galore(ip) 0 001 & 01017439 a 0000 | in great numbers; \"apples galore\"",
                        "adj", path, 32)
    assert adj.lexname == "adj.all" and adj.words == ("galore",)
    many = wn.parse_line("00001740 03 n 0b " + " ".join(f"w{i} 0" for i in range(11)) + " 000 | eleven words",
                         "noun", path, 33)
    assert len(many.words) == 11  # w_cnt is hexadecimal


@pytest.mark.parametrize("line, problem", [
    ("02084071 05 n 01 dog 0 001 @ 02083346 n 0000", "no '|'"),                  # truncated before the gloss
    ("02084071 77 n 01 dog 0 000 | a dog", "lex_filenum 77"),                     # no such lexicographer file
    ("02084071 29 n 01 dog 0 000 | a dog", "verb.body"),                          # a verb class in data.noun
    ("02084071 05 n 01 dog 0 003 @ 02083346 n 0000 | a dog", "p_cnt says 3"),     # pointers missing
    ("02084071 05 n 0x dog 0 000 | a dog", "not a number"),                       # bad w_cnt
    ("02084071 05 n 01 dog 0 000 01 + 01 00 | a dog", "unexpected fields"),       # verb frames on a noun
    ("02084071 05 n 01 dog 0 000 |   ", "gloss is empty"),
])
def test_a_corrupt_line_names_the_file_the_line_and_the_problem(tmp_path: Path, line: str, problem: str) -> None:
    root = write_wordnet(tmp_path / "dict")
    path = root / "data.noun"
    good = path.read_text().splitlines(keepends=True)
    path.write_text("".join(good[:4] + [line + "\n"] + good[4:]))
    with pytest.raises(DataError) as err:
        list(wn.read_synsets(root, "noun"))
    msg = str(err.value)
    assert str(path) in msg and "line 5" in msg and problem in msg and "wordnet-base" in msg


def test_a_truncated_or_binary_file_is_reported_by_name(tmp_path: Path) -> None:
    root = write_wordnet(tmp_path / "dict")
    path = root / "data.noun"
    text = path.read_text()
    path.write_text(text[: text.rindex("|") - 3])  # a download cut off inside the last line
    n_lines = len(path.read_text().splitlines())
    with pytest.raises(DataError, match=f"{path}, line {n_lines}: "):
        list(wn.read_synsets(root, "noun"))
    path.write_bytes(b"\x00\xff\xfe garbage" * 10)
    with pytest.raises(DataError, match="data.noun"):
        list(wn.read_synsets(root, "noun"))
    path.write_text(HEADER)  # the header alone: no synsets
    with pytest.raises(DataError, match="holds no synsets"):
        list(wn.read_synsets(root, "noun"))


def test_finding_wordnet_and_the_errors_when_it_is_missing(tmp_path: Path, monkeypatch) -> None:
    root = write_wordnet(tmp_path / "dict")
    assert wn.find_wordnet(root) == root
    monkeypatch.setenv("WNSEARCHDIR", str(root))
    assert wn.find_wordnet() == root
    monkeypatch.delenv("WNSEARCHDIR")
    monkeypatch.setenv("WNHOME", str(tmp_path))  # WNHOME/dict, as WordNet's own tools read it
    assert wn.find_wordnet() == root
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as err:
        wn.find_wordnet(empty)
    assert str(empty) in str(err.value) and "WNSEARCHDIR" in str(err.value) and "wordnet-base" in str(err.value)
    monkeypatch.setenv("WNSEARCHDIR", str(empty))  # an explicit setting never falls back silently
    with pytest.raises(DataError, match="WNSEARCHDIR"):
        wn.find_wordnet()
    monkeypatch.delenv("WNSEARCHDIR")
    monkeypatch.delenv("WNHOME")
    monkeypatch.setattr(wn, "DEFAULT_DIRS", (str(empty),))
    with pytest.raises(DataError, match="WordNet is not installed.*apt-get install --no-install-recommends wordnet-base"):
        wn.find_wordnet()
    (root / "data.verb").unlink()
    with pytest.raises(DataError, match="data.verb is missing"):
        wn.read_wordnet(root)


def test_the_probe_subset_is_balanced_disjoint_and_deterministic(tmp_path: Path) -> None:
    root = write_wordnet(tmp_path / "dict", {"noun.animal": 30, "noun.plant": 25, "noun.artifact": 40,
                                             "verb.motion": 20})
    synsets = wn.read_wordnet(root)
    classes = ["noun.plant", "noun.animal", "verb.motion"]
    tr, te = wn.balanced_probe_split(synsets, classes, 8, 4, seed=0)
    assert Counter(synsets[i].lexname for i in tr) == {c: 8 for c in classes}
    assert Counter(synsets[i].lexname for i in te) == {c: 4 for c in classes}
    assert not set(tr.tolist()) & set(te.tolist())
    tr2, te2 = wn.balanced_probe_split(synsets, list(reversed(classes)), 8, 4, seed=0)
    assert np.array_equal(tr, tr2) and np.array_equal(te, te2)  # the order of the classes does not matter
    tr3, _ = wn.balanced_probe_split(synsets, classes, 8, 4, seed=1)
    assert not np.array_equal(tr, tr3)
    with pytest.raises(DataError, match="verb.motion has 20 glosses"):
        wn.balanced_probe_split(synsets, classes, 18, 4)
    with pytest.raises(DataError, match="noun.animals"):
        wn.balanced_probe_split(synsets, ["noun.animals", "noun.plant"], 8, 4)


def test_the_dataset_holds_the_probe_test_entries_out_of_pretraining(tmp_path: Path) -> None:
    from ssl_text.data import wordnet

    root = write_wordnet(tmp_path / "dict", {"noun.animal": 30, "noun.plant": 30, "noun.artifact": 30,
                                             "noun.food": 30})
    classes = ["noun.animal", "noun.artifact", "noun.plant"]
    data = wordnet(str(root), mode="clm", vocab_size=300, classes=classes, train_per_class=10, test_per_class=5,
                   cache_dir=str(tmp_path / "cache"))
    assert data.class_names == classes and data.num_classes == 3
    ytr = [data.eval_train[i]["label"] for i in range(len(data.eval_train))]
    yte = [data.eval_test[i]["label"] for i in range(len(data.eval_test))]
    assert Counter(ytr) == {0: 10, 1: 10, 2: 10} and Counter(yte) == {0: 5, 1: 5, 2: 5}
    tok = data.extras["tokenizer"]
    train_text = tok.decode(np.asarray(data.train.tokens).tolist())
    test_texts = [tok.decode(data.eval_test[i]["input_ids"][1:].tolist()) for i in range(len(data.eval_test))]
    train_texts = [tok.decode(data.eval_train[i]["input_ids"][1:].tolist()) for i in range(len(data.eval_train))]
    assert all(t.split(":")[0] not in train_text for t in test_texts)  # e.g. "animal 3, animal3" never trained on
    assert all(t.split(":")[0] in train_text for t in train_texts)
    assert "food" in train_text  # classes outside the probe are still pre-training text
    again = wordnet(str(root), mode="mlm", vocab_size=300, classes=list(reversed(classes)), train_per_class=10,
                    test_per_class=5, cache_dir=str(tmp_path / "cache"))
    assert again.extras["store_dir"] == data.extras["store_dir"]  # same store for both modes and any order


@pytest.mark.skipif(not Path("/usr/share/wordnet/data.noun").is_file(),
                    reason="Debian's wordnet-base is not installed (scripts/install.sh installs it as root)")
def test_reads_every_synset_of_the_installed_wordnet() -> None:
    synsets = wn.read_wordnet(wn.find_wordnet("/usr/share/wordnet"))
    counts = wn.class_counts(synsets)
    assert len(synsets) == 117_659 and len(counts) == 45
    assert counts["noun.artifact"] == 11_587 and counts["noun.motive"] == 42
