"""Image-caption readers: built-in digit captions, CSV/TSV, WebDataset shards, and bad input."""

from __future__ import annotations

import gzip
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_clip.data import (
    DIGIT_WORDS, _digit_attributes, caption_pairs, csv_pairs, digit_captions, expand_braces, webdataset_pairs,
)
from ssl_core.data import default_collate
from ssl_core.errors import ConfigError, DataError


# ---------------------------------------------------------------------- built-in set
def test_digit_captions_describe_their_images(digit_data) -> None:
    d = digit_data
    assert len(d.train) + len(d.eval_test) == 1797 and len(d.eval_test) == 450
    assert d.class_names == DIGIT_WORDS and d.num_classes == 10
    for ds in (d.train, d.eval_test):
        for i in range(0, len(ds), 37):
            s = ds[i]
            assert s["image"].dtype == torch.uint8 and s["image"].shape == (1, 16, 16)
            c = s["label"]
            # the caption names the image's own class, as a word or a numeral, and no other class
            named = {k for k, w in enumerate(DIGIT_WORDS) if re.search(rf"\b({w}|{k})\b", s["caption"])}
            assert named == {c}, s["caption"]
    batch = default_collate([d.train[i] for i in range(4)])
    assert isinstance(batch["caption"], list) and batch["image"].shape == (4, 1, 16, 16)
    assert batch["label"].dtype == torch.long
    again = digit_captions()
    assert again.train.captions == d.train.captions  # deterministic for a seed


def test_digit_attributes_are_measured_from_pixels() -> None:
    img = np.zeros((6, 8, 8))
    for r in range(8):
        img[0, r, 3] = 16                       # upright, thin
        img[1, r, min(7, 7 - r)] = 16           # top at the right: leaning right
        img[2, r, min(7, r)] = 16               # top at the left: leaning left
        img[3, r, 3:5] = 16                     # upright, thick
        img[4, r, 2:6] = 16                     # upright, thicker
        img[5, r, 3] = 8                        # upright, faint
    stroke, slant = _digit_attributes(img)
    assert slant[1] == "leaning right" and slant[2] == "leaning left"
    assert slant[0] == slant[3] == slant[4] == slant[5] == ""  # upright strokes get no slant phrase
    assert stroke[4] == "with thick strokes" and stroke[5] == "with thin strokes"


def test_builtin_refuses_a_path() -> None:
    with pytest.raises(ConfigError, match="--dataset captions"):
        digit_captions(path="x.csv")


# ---------------------------------------------------------------------- CSV / TSV
def test_csv_pairs_read_paths_relative_to_the_file(csv_pairs_dir: Path, digit_rgb) -> None:
    d = csv_pairs(str(csv_pairs_dir / "pairs.csv"), image_size=24, test_fraction=0.2)
    assert len(d.train) + len(d.eval_test) == 30 and len(d.eval_test) == 6
    assert d.class_names == ["one", "two", "zero"]
    s = d.train[0]
    assert s["image"].shape == (3, 24, 24) and s["image"].dtype == torch.uint8
    # the pixels are the file's (decoded, same size, so no resampling)
    k = int(re.search(r"number (\d+)", s["caption"]).group(1))
    expected = torch.from_numpy(digit_rgb(10)[k][0].copy()).permute(2, 0, 1)
    assert torch.equal(s["image"], expected)
    assert d.class_names[s["label"]] in s["caption"]
    assert d.extras["encoder_kwargs"] == {"image_size": 24}


def test_tsv_with_open_clip_column_names(csv_pairs_dir: Path) -> None:
    lines = (csv_pairs_dir / "pairs.csv").read_text().splitlines()[1:]
    rows = ["filepath\ttitle"]
    for line in lines:
        path, rest = line.split(",", 1)
        rows.append(f"{csv_pairs_dir / path}\t{rest.rsplit(',', 1)[0].strip(chr(34))}")  # absolute paths
    (csv_pairs_dir / "pairs.tsv").write_text("\n".join(rows) + "\n")
    d = caption_pairs(str(csv_pairs_dir / "pairs.tsv"))
    assert d.eval_test is None and d.class_names is None  # no label column: no probes
    assert len(d.train) + len(d.extras["retrieval_split"]) == 30
    assert d.train[0]["caption"].startswith("a handwritten")


def test_missing_column_names_the_columns_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("picture,caption\na.png,hello\n")
    with pytest.raises(DataError) as err:
        csv_pairs(str(tmp_path / "p.csv"))
    msg = str(err.value)
    assert "p.csv" in msg and "no image column" in msg and "'picture'" in msg
    assert "dataset_kwargs.image_column" in msg
    with pytest.raises(DataError, match="column 'img' .* not in the header"):
        csv_pairs(str(tmp_path / "p.csv"), image_column="img")


def test_missing_image_file_names_the_line(csv_pairs_dir: Path) -> None:
    text = (csv_pairs_dir / "pairs.csv").read_text().replace("imgs/004.png", "imgs/nope.png")
    (csv_pairs_dir / "bad.csv").write_text(text)
    with pytest.raises(DataError) as err:
        csv_pairs(str(csv_pairs_dir / "bad.csv"))
    msg = str(err.value)
    assert "line 6" in msg and "imgs/nope.png" in msg and "skip_missing" in msg
    with pytest.warns(UserWarning, match="line 6"):
        d = csv_pairs(str(csv_pairs_dir / "bad.csv"), skip_missing=True)
    assert len(d.train) + len(d.eval_test) == 29


def test_missing_caption_file_and_empty_fields(tmp_path: Path, csv_pairs_dir: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        caption_pairs(str(tmp_path / "none.csv"))
    text = (csv_pairs_dir / "pairs.csv").read_text().splitlines()
    text[3] = "imgs/002.png,,zero"
    (csv_pairs_dir / "blank.csv").write_text("\n".join(text) + "\n")
    with pytest.warns(UserWarning, match=r"line 4 \('caption'\)"):
        d = csv_pairs(str(csv_pairs_dir / "blank.csv"))
    assert len(d.train) + len(d.eval_test) == 29


def test_unreadable_image_is_skipped_with_a_warning(csv_pairs_dir: Path) -> None:
    (csv_pairs_dir / "imgs" / "000.png").write_bytes(b"this is not a png")
    d = csv_pairs(str(csv_pairs_dir / "pairs.csv"), test_fraction=0.0)
    idx = [i for i, s in enumerate(d.train.sources) if s.path.name == "000.png"][0]
    with pytest.warns(UserWarning, match=r"000\.png.*pairs\.csv line 2"):
        s = d.train[idx]
    # the pair is replaced whole: caption and image belong together
    assert s["caption"] == d.train.captions[idx + 1]
    assert torch.equal(s["image"], d.train[idx + 1]["image"])


# ---------------------------------------------------------------------- WebDataset
def _samples(digit_rgb, png_bytes, start: int, n: int, with_cls: bool = True):
    words = ["zero", "one", "two"]
    out = []
    for k, (arr, c) in list(enumerate(digit_rgb(10)))[start:start + n]:
        out.append((f"s{k:04d}", png_bytes(arr), f"a handwritten {words[c]}", words[c] if with_cls else None))
    return out


def test_webdataset_shards_by_file_folder_and_pattern(tmp_path: Path, digit_rgb, png_bytes, write_shard) -> None:
    write_shard(tmp_path / "data-000.tar", _samples(digit_rgb, png_bytes, 0, 15))
    write_shard(tmp_path / "data-001.tar", _samples(digit_rgb, png_bytes, 15, 15))
    one = webdataset_pairs(str(tmp_path / "data-000.tar"), image_size=24, test_fraction=0.2)
    assert len(one.train) + len(one.eval_test) == 15
    both = caption_pairs(str(tmp_path / "data-{000..001}.tar"), image_size=24)
    folder = caption_pairs(str(tmp_path), image_size=24)
    assert len(both.train) + len(both.eval_test) == 30 == len(folder.train) + len(folder.eval_test)
    assert both.class_names == ["one", "two", "zero"]
    s = both.train[0]
    k = int(both.train.sources[0].where.split("member s")[1].split(".")[0])
    assert torch.equal(s["image"], torch.from_numpy(digit_rgb(10)[k][0].copy()).permute(2, 0, 1))
    assert both.class_names[s["label"]] in s["caption"]
    assert expand_braces("a-{08..10}-{x,y}.tar") == ["a-08-x.tar", "a-08-y.tar", "a-09-x.tar", "a-09-y.tar",
                                                     "a-10-x.tar", "a-10-y.tar"]


def test_webdataset_bad_input(tmp_path: Path, digit_rgb, png_bytes, write_shard) -> None:
    samples = _samples(digit_rgb, png_bytes, 0, 6, with_cls=False)
    samples[2] = (samples[2][0], samples[2][1], None, None)  # image without caption
    write_shard(tmp_path / "ok.tar", samples)
    with pytest.warns(UserWarning, match=r"ok\.tar:s0002"):
        d = webdataset_pairs(str(tmp_path / "ok.tar"), test_fraction=0.0)
    assert len(d.train) == 5 and d.eval_test is None  # no .cls: unlabelled
    (tmp_path / "fake.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(DataError, match="fake.tar is not a readable uncompressed tar"):
        webdataset_pairs(str(tmp_path / "fake.tar"))
    (tmp_path / "ok.tar.gz").write_bytes(gzip.compress((tmp_path / "ok.tar").read_bytes()))
    with pytest.raises(DataError, match="decompress"):
        webdataset_pairs(str(tmp_path / "ok.tar.gz"))
    with pytest.raises(DataError, match=r"missing-\{0..1\}|missing-0.tar does not exist"):
        webdataset_pairs(str(tmp_path / "missing-{0..1}.tar"))
    mixed = _samples(digit_rgb, png_bytes, 0, 4) + _samples(digit_rgb, png_bytes, 4, 2, with_cls=False)
    write_shard(tmp_path / "mixed.tar", mixed)
    with pytest.raises(DataError, match="some samples have a .cls label"):
        webdataset_pairs(str(tmp_path / "mixed.tar"))
    with pytest.raises(ConfigError, match="apply to CSV/TSV"):
        caption_pairs(str(tmp_path / "ok.tar"), caption_column="text")


def test_webdataset_unreadable_member_is_skipped(tmp_path: Path, digit_rgb, png_bytes, write_shard) -> None:
    samples = _samples(digit_rgb, png_bytes, 0, 4)
    samples[1] = (samples[1][0], b"\x89PNG broken", samples[1][2], samples[1][3])
    write_shard(tmp_path / "s.tar", samples)
    d = webdataset_pairs(str(tmp_path / "s.tar"), test_fraction=0.0)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        got = [d.train[i]["caption"] for i in range(4)]
    assert any("s.tar member s0001.png" in str(w.message) for w in rec)
    assert got == [samples[0][2], samples[2][2], samples[2][2], samples[3][2]]
