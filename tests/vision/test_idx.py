"""The idx(.gz) reader of the MNIST family, the `idx` folder dataset and the built-in Fashion-MNIST."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_core.errors import DataError
from ssl_vision import fashion_mnist as fm
from ssl_vision.idx import find_idx_split, read_idx, read_idx_split, write_idx


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip_every_type_raw_and_gz(tmp_path: Path, dtype, suffix: str) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal((5, 3, 4)) * 100).astype(dtype)
    path = write_idx(tmp_path / f"a-idx3-ubyte{suffix}", arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    out = read_idx(path)
    assert out.shape == (5, 3, 4) and out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, arr)


def test_header_is_the_documented_big_endian_layout(tmp_path: Path) -> None:
    # hand-written bytes, not our writer: magic 00 00 08 03, sizes 2, 2, 3 big-endian, then the pixels
    raw = bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(12))
    (tmp_path / "x").write_bytes(raw)
    np.testing.assert_array_equal(read_idx(tmp_path / "x"), np.arange(12, dtype=np.uint8).reshape(2, 2, 3))
    # int16 values are big-endian on disk: 0x0102 = 258
    (tmp_path / "y").write_bytes(bytes([0, 0, 0x0B, 1, 0, 0, 0, 1, 1, 2]))
    assert read_idx(tmp_path / "y").tolist() == [258]


def _bad(tmp_path: Path, name: str, payload: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(payload)
    return path


GOOD = bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2]) + bytes(8)


@pytest.mark.parametrize("name,payload,message", [
    ("empty-idx3-ubyte", b"", "is empty"),
    ("short-idx3-ubyte", b"\x00\x00", "too short for the 4-byte magic"),
    ("magic-idx3-ubyte", b"\x01\x02" + GOOD[2:], "is not an idx file"),
    ("type-idx3-ubyte", bytes([0, 0, 0x07, 3]) + GOOD[4:], "unknown type code 0x07"),
    ("nodims-idx3-ubyte", bytes([0, 0, 8, 0]), "0 dimensions"),
    ("header-idx3-ubyte", GOOD[:10], "truncated inside its header"),
    ("cut-idx3-ubyte", GOOD[:-3], "is truncated"),
    ("long-idx3-ubyte", GOOD + b"\x00", "longer than its header says"),
    ("notgz-idx3-ubyte.gz", GOOD, "is named .gz but is not gzip"),
    ("cutgz-idx3-ubyte.gz", gzip.compress(GOOD, mtime=0)[:-12], "truncated gzip"),
    ("badgz-idx3-ubyte.gz", gzip.compress(GOOD, mtime=0)[:10] + b"garbage that is not deflate data" * 2, "corrupt gzip"),
    ("truncated-data-in-gz-idx3-ubyte.gz", gzip.compress(GOOD[:-1], mtime=0), "is truncated"),
])
def test_damaged_files_fail_with_a_message_naming_the_file(tmp_path: Path, name: str, payload: bytes, message: str) -> None:
    path = _bad(tmp_path, name, payload)
    with pytest.raises(DataError, match=message) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as err:
        read_idx(tmp_path / "nope-idx1-ubyte.gz")
    assert "nope-idx1-ubyte.gz" in str(err.value)


def test_split_checks_images_and_labels_belong_together(tmp_path: Path) -> None:
    img = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 2, 2), np.uint8))
    lab = write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(3, dtype=np.uint8))
    with pytest.raises(DataError, match="4 images but .* 3") as err:
        read_idx_split(img, lab)
    assert str(img) in str(err.value)
    with pytest.raises(DataError, match=r"labels \[N\]"):
        read_idx_split(img, img)
    with pytest.raises(DataError, match=r"images \[N, height, width\]"):
        read_idx_split(lab, lab)


def write_mnist_like(root: Path, n_train: int = 60, n_test: int = 20, classes: int = 3, gz: bool = True,
                     size: int = 8, prefix: str = "") -> Path:
    """A tiny MNIST-layout folder whose classes are separable (class c lights row block c)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    sfx = ".gz" if gz else ""
    for stem, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % classes
        images = rng.integers(0, 60, (n, size, size)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, c * 2:(c * 2) + 2] = 250
        write_idx(root / f"{prefix}{stem}-images-idx3-ubyte{sfx}", images)
        write_idx(root / f"{prefix}{stem}-labels-idx1-ubyte{sfx}", labels.astype(np.uint8))
    return root


def test_find_idx_split_accepts_the_family_names(tmp_path: Path) -> None:
    write_mnist_like(tmp_path / "a", gz=False)
    files = find_idx_split(tmp_path / "a", "test")
    assert files is not None and files[0].name == "t10k-images-idx3-ubyte"
    (tmp_path / "b").mkdir()
    write_idx(tmp_path / "b" / "train-images.idx3-ubyte", np.zeros((1, 2, 2), np.uint8))  # Kaggle's spelling
    write_idx(tmp_path / "b" / "train-labels.idx1-ubyte", np.zeros(1, np.uint8))
    assert find_idx_split(tmp_path / "b", "train") is not None and find_idx_split(tmp_path / "b", "test") is None
    write_mnist_like(tmp_path / "c", prefix="emnist-letters-")
    write_mnist_like(tmp_path / "c", prefix="emnist-digits-")
    with pytest.raises(DataError, match="several train images files"):
        find_idx_split(tmp_path / "c", "train")
    assert find_idx_split(tmp_path / "c", "train", prefix="emnist-digits-")[0].name.startswith("emnist-digits-")  # type: ignore[index]


def test_idx_folder_dataset_uses_the_official_split(tmp_path: Path) -> None:
    root = write_mnist_like(tmp_path / "mnist", n_train=60, n_test=21)
    data = fm.idx_folder(str(root))
    assert len(data.train) == 60 and len(data.eval_test) == 21  # type: ignore[arg-type]
    assert data.train is data.eval_train and data.num_classes == 3
    s = data.train[0]
    assert s["image"].shape == (1, 8, 8) and s["image"].dtype == torch.uint8
    raw_test = read_idx(root / "t10k-images-idx3-ubyte.gz")
    assert torch.equal(data.eval_test.fields["image"][:, 0], torch.from_numpy(raw_test))  # type: ignore[attr-defined]
    assert data.extras["dataset"] == "idx" and data.extras["encoder_kwargs"]["in_channels"] == 1


def test_idx_folder_errors_name_the_folder_and_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="needs --data DIR"):
        fm.idx_folder(None)
    with pytest.raises(DataError, match="does not exist"):
        fm.idx_folder(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="No train-images-idx3-ubyte"):
        fm.idx_folder(str(tmp_path / "empty"))
    root = write_mnist_like(tmp_path / "broken")
    bad = root / "train-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(DataError, match="truncated gzip") as err:
        fm.idx_folder(str(root))
    assert str(bad) in str(err.value)


def test_idx_folder_without_test_files_holds_out_a_stratified_fraction(tmp_path: Path) -> None:
    root = write_mnist_like(tmp_path / "m", n_train=60)
    for p in root.glob("t10k-*"):
        p.unlink()
    data = fm.idx_folder(str(root), test_fraction=0.2)
    assert len(data.eval_test) == 12 and len(data.train) == 48  # type: ignore[arg-type]
    assert "stratified" in data.description


def test_balanced_subset_is_balanced_seeded_and_deterministic() -> None:
    labels = np.repeat(np.arange(4), [50, 30, 40, 60])
    a, b = fm.balanced_subset(labels, 40, seed=3), fm.balanced_subset(labels, 40, seed=3)
    np.testing.assert_array_equal(a, b)
    assert np.bincount(labels[a]).tolist() == [10, 10, 10, 10]
    assert not np.array_equal(a, fm.balanced_subset(labels, 40, seed=4))
    assert len(fm.balanced_subset(labels, 0, seed=0)) == len(labels)
    with pytest.raises(DataError, match="fewer than the 35 per class"):
        fm.balanced_subset(labels, 140, seed=0)


def test_data_path_picks_idx_for_an_idx_folder_and_imagefolder_for_images(tmp_path: Path) -> None:
    """The idx reader declares the training-images file as its marker: a folder holding it is an
    idx folder; a folder of class sub-folders of PNGs stays an image folder."""
    from PIL import Image

    from ssl_core.runner import resolve_config

    root = write_mnist_like(tmp_path / "m")
    assert resolve_config("simclr", "vision", overrides={"data": str(root)}).dataset == "idx"
    assert resolve_config("simclr", "vision", overrides={"data": str(root), "dataset": "idx"}).dataset == "idx"
    images = tmp_path / "images" / "cat"
    images.mkdir(parents=True)
    Image.new("L", (8, 8)).save(images / "a.png")
    assert resolve_config("simclr", "vision", overrides={"data": str(tmp_path / "images")}).dataset == "imagefolder"


def test_ssl_run_on_an_idx_folder(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ssl_core.cli.app import app

    root = write_mnist_like(tmp_path / "mnist", n_train=64, n_test=30)
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", "-m", "vision", "-o", "simclr", "--dataset", "idx", "--data", str(root),
                                   "--steps", "2", "--batch-size", "16", "--no-progress", "--out", str(out),
                                   "--set", "encoder_kwargs.widths=[8,8,8,8]", "--set", "evaluators=[knn]"])
    assert res.exit_code == 0, res.output
    assert f"dataset idx: idx files in {root}: 64 train / 30 test (official test split" in res.output
    assert "knn_top1" in res.output
    assert "dataset: idx" in (out / "config.yaml").read_text()
