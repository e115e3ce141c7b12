"""The built-in image-caption pairs: Fashion-MNIST images, captions from the class name and
properties measured from each image, the official split, and the loud fallback to digit captions."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_clip.fashion_captions import describe, fashion_caption_texts, fashion_captions, measure
from ssl_core.errors import ConfigError, DataError
from ssl_vision import fashion_mnist as fm


def _square(size: int, side: int, value: int, height: int | None = None) -> np.ndarray:
    img = np.zeros((size, size), np.uint8)
    img[2:2 + (height or side), 2:2 + side] = value
    return img


def test_properties_are_measured_from_the_pixels() -> None:
    imgs = np.stack([
        _square(28, 6, 200), _square(28, 12, 200), _square(28, 20, 200),   # sizes grow
        _square(28, 20, 200, height=5), _square(28, 5, 200, height=20),     # wide, narrow
        _square(28, 10, 60), _square(28, 10, 250), _square(28, 10, 250),    # dim, bright, striped
    ])
    imgs[7, 2:12:2, 2:12] = 120  # stripes: a detailed (uneven) article
    m = measure(imgs)
    assert m["size"][0] < m["size"][1] < m["size"][2]
    assert m["shape"][3] == pytest.approx(4.0) and m["shape"][4] == pytest.approx(0.25)
    assert m["tone"][5] < 0.3 < 0.9 < m["tone"][6]
    assert m["detail"][0] == pytest.approx(0.0, abs=1e-6) and m["detail"][7] > 0.1
    # thirds within a class: the smallest of three is "small", the largest "large", the middle unsaid
    words = describe(imgs[:3], np.zeros(3, np.int64))
    assert "small" in words[0] and "large" in words[2]
    assert not {"small", "large"} & set(words[1])


def test_each_caption_names_its_own_class_only_and_reads_right() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 6)
    imgs = np.stack([_square(28, int(rng.integers(4, 24)), int(rng.integers(40, 255)),
                            height=int(rng.integers(4, 24))) for _ in labels])
    caps = fashion_caption_texts(imgs, labels, fm.CLASS_NAMES, seed=0)
    for c, cap in zip(labels, caps):
        named = {k for k, name in enumerate(fm.CLASS_NAMES) if re.search(rf"(?<![\w-]){re.escape(name)}\b", cap)}
        assert named == {c}, cap
        assert " a ankle" not in cap and not cap.startswith("a ankle"), cap
    assert caps == fashion_caption_texts(imgs, labels, fm.CLASS_NAMES, seed=0)  # seeded


def test_builtin_pairs_are_the_vision_sets_images(fashion_root: Path) -> None:
    pairs = fashion_captions(root=str(fashion_root), train_size=100, test_size=50, seed=2)
    images = fm.fashion_mnist(root=str(fashion_root), train_size=100, test_size=50, seed=2)
    assert torch.equal(pairs.train.images, images.train.fields["image"])  # type: ignore[attr-defined]
    assert torch.equal(pairs.eval_test.images, images.eval_test.fields["image"])  # type: ignore[attr-defined]
    assert torch.equal(pairs.eval_test.labels, images.eval_test.fields["label"])  # type: ignore[attr-defined]
    s = pairs.eval_test[3]
    assert fm.CLASS_NAMES[s["label"]] in s["caption"]
    assert pairs.class_names == fm.CLASS_NAMES and pairs.extras["dataset"] == "fashion_captions"
    assert pairs.extras["encoder_kwargs"]["image_size"] == 28
    with pytest.raises(ConfigError, match="takes no --data"):
        fashion_captions(path="x.csv")


def test_fallback_to_digit_captions_is_loud(monkeypatch, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "absent")
    with pytest.warns(UserWarning, match="Fashion-MNIST was not found"):
        data = fashion_captions()
    err = capsys.readouterr().err
    assert "WARNING" in err and "apt-get install dataset-fashion-mnist" in err and "digit captions" in err
    assert data.extras["dataset"] == "digit_captions" and data.description.startswith("FALLBACK")
    with pytest.raises(DataError, match="not found"):
        fashion_captions(fallback=False)
