"""Data sources: image folders and WebDataset shards (with corrupt files), the built-in digits."""

from __future__ import annotations

import tarfile
import warnings
from pathlib import Path

import pytest
import torch

from ssl_core.config import RunConfig
from ssl_core.data import default_collate
from ssl_core.errors import DataError
from ssl_core.runner import build_data
from ssl_vision.data import digits, image_folder
from ssl_vision.shards import expand_shard_spec, split_key, webdataset


def _read_all(ds) -> list[dict]:  # type: ignore[no-untyped-def]
    return [ds[i] for i in range(len(ds))]


def test_digits_fields_stay_stable() -> None:
    d = digits(image_size=16)
    assert len(d.train) + len(d.eval_test) == 1797  # type: ignore[arg-type]
    s = d.train[0]
    assert s["image"].dtype == torch.uint8 and s["image"].shape == (1, 16, 16)
    assert d.num_classes == 10 and d.extras["encoder_kwargs"]["in_channels"] == 1
    assert d.extras["augmenter_kwargs"]["image_size"] == 16


def test_image_folder_reads_classes_and_skips_corrupt_file(image_dir: Path) -> None:
    data = image_folder(str(image_dir), image_size=16)
    assert data.num_classes == 3 and data.class_names == ["class_0", "class_1", "class_2"]
    assert len(data.train) + len(data.eval_test) == 19  # type: ignore[arg-type]  18 good + 1 corrupt
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples = _read_all(data.train) + _read_all(data.eval_test)
    reported = [str(w.message) for w in caught if "unreadable" in str(w.message)]
    assert len(reported) == 1 and "broken.png" in reported[0]
    assert all(s["image"].shape == (3, 16, 16) and s["image"].dtype == torch.uint8 for s in samples)
    bad_split = data.train if data.train.unreadable else data.eval_test  # type: ignore[attr-defined]
    assert bad_split.unreadable[0].endswith("broken.png")
    batch = default_collate(samples)
    assert batch["image"].shape == (19, 3, 16, 16)


def test_image_folder_flat_is_unlabelled_and_errors_are_helpful(tmp_path: Path, image_dir: Path, tar_member) -> None:  # type: ignore[no-untyped-def]
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in (image_dir / "class_0").iterdir():
        (flat / p.name).write_bytes(p.read_bytes())
    data = image_folder(str(flat))
    assert data.eval_train is None and "label" not in data.train[0]
    with pytest.raises(DataError, match="does not exist"):
        image_folder(str(tmp_path / "nope"))
    tars = tmp_path / "only_tars"
    tars.mkdir()
    with tarfile.open(tars / "a.tar", "w") as tar:
        tar_member(tar, "x.cls", b"0")
    with pytest.raises(DataError, match="--dataset webdataset"):
        image_folder(str(tars))


def test_webdataset_reads_shards_and_skips_corrupt_member(shard_dir: Path) -> None:
    data = webdataset(str(shard_dir), image_size=16)
    assert data.num_classes == 3 and data.class_names == ["0", "1", "2"]
    n = len(data.train) + len(data.eval_test)  # type: ignore[arg-type]
    assert n == 19
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples = _read_all(data.train) + _read_all(data.eval_test)
    reported = [str(w.message) for w in caught if "unreadable" in str(w.message)]
    assert len(reported) == 1 and "train-001.tar:bad_0001.jpg" in reported[0]
    labels = sorted(int(s["label"]) for s in samples)
    assert labels.count(0) >= 6 and labels.count(2) >= 6
    assert all(s["image"].shape == (3, 16, 16) for s in samples)
    # the same images as the decoded originals (label 2 images are green-ish: 255 - grey)
    two = [s["image"] for s in samples if s["label"] == 2]
    assert all(img[1].float().mean() > img[0].float().mean() for img in two)


def test_webdataset_truncated_shard_keeps_earlier_samples(shard_dir: Path, tmp_path: Path) -> None:
    src = (shard_dir / "train-000.tar").read_bytes()
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "cut.tar").write_bytes(src[: len(src) // 2 + 100])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = webdataset(str(cut), image_size=16, label=None)
        samples = _read_all(data.train)
    messages = " ".join(str(w.message) for w in caught)
    assert "cut.tar" in messages
    assert 1 <= len(data.train) < 9  # type: ignore[arg-type]
    assert all(s["image"].shape == (3, 16, 16) for s in samples)


def test_webdataset_specs_labels_and_registry(shard_dir: Path, registry) -> None:  # type: ignore[no-untyped-def]
    assert len(expand_shard_spec(str(shard_dir / "train-*.tar"))) == 2
    assert [p.name for p in expand_shard_spec(str(shard_dir / "train-{000..001}.tar"))] == ["train-000.tar", "train-001.tar"]
    assert len(expand_shard_spec(str(shard_dir / "train-000.tar"))) == 1
    assert split_key("a/b/n0144_10.seg.png") == ("a/b/n0144_10", "seg.png")
    by_txt = webdataset(str(shard_dir / "*.tar"), image_size=8, label="txt")
    assert by_txt.class_names == ["digit 0", "digit 1", "digit 2"]
    cfg = RunConfig(modality="vision", dataset="webdataset", data=str(shard_dir),
                    dataset_kwargs={"image_size": 16, "channels": 1})
    built = build_data(cfg, registry)
    assert built.train[0]["image"].shape == (1, 16, 16)
    with pytest.raises(DataError, match="No .tar shards"):
        webdataset(str(shard_dir / "missing-*.tar"))
