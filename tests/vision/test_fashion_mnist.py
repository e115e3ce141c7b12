"""The built-in Fashion-MNIST: where it is found, the official split, balanced seeded subsets, and
the loud fallback to the digits when it is not installed (never a silent switch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_core.errors import DataError
from ssl_core.runner import build_data, resolve_config
from ssl_vision import fashion_mnist as fm
from ssl_vision.idx import find_idx_split, read_idx_split


@pytest.fixture()
def no_fashion(monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A machine without Fashion-MNIST: no env var, and the Debian folder does not exist."""
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "not-installed")


def test_builtin_uses_the_official_split_and_a_balanced_seeded_subset(fashion_root: Path) -> None:
    data = fm.fashion_mnist(root=str(fashion_root), train_size=200, test_size=50, seed=5)
    tr, te = data.train.fields, data.eval_test.fields  # type: ignore[attr-defined]
    assert np.bincount(tr["label"].numpy()).tolist() == [20] * 10
    assert np.bincount(te["label"].numpy()).tolist() == [5] * 10
    # every training image is a row of the official training file, every test image of t10k, at
    # the indices the seeded balanced subset names
    for split, fields, size, seed in (("train", tr, 200, 5), ("test", te, 50, 6)):
        images, labels = read_idx_split(*find_idx_split(fashion_root, split))  # type: ignore[misc]
        idx = fm.balanced_subset(labels, size, seed)
        assert torch.equal(fields["image"][:, 0], torch.from_numpy(images[idx]))
        assert torch.equal(fields["label"], torch.from_numpy(labels[idx]))
    again = fm.fashion_mnist(root=str(fashion_root), train_size=200, test_size=50, seed=5)
    assert torch.equal(again.train.fields["image"], tr["image"])  # type: ignore[attr-defined]
    other = fm.fashion_mnist(root=str(fashion_root), train_size=200, test_size=50, seed=6)
    assert not torch.equal(other.train.fields["image"], tr["image"])  # type: ignore[attr-defined]
    assert data.class_names == fm.CLASS_NAMES and data.extras["dataset"] == "fashion_mnist"
    assert data.extras["augmenter_kwargs"]["image_size"] == 28 and data.train[0]["image"].shape == (1, 28, 28)


def test_env_var_names_the_folder(monkeypatch, fashion_root: Path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(fm.ENV_VAR, str(fashion_root))
    folder, looked = fm.locate()
    assert folder == fashion_root and f"${fm.ENV_VAR}" in looked[-1]


def test_a_named_folder_without_the_files_is_an_error_not_a_fallback(monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(fm.ENV_VAR, str(tmp_path))
    with pytest.raises(DataError, match=f"\\${fm.ENV_VAR} names .* does not hold Fashion-MNIST"):
        fm.fashion_mnist()
    with pytest.raises(DataError, match="dataset_kwargs.root names .* not a folder"):
        fm.fashion_mnist(root=str(tmp_path / "nope"))


def test_fallback_to_digits_is_loud_and_recorded(no_fashion, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.warns(UserWarning, match="Fashion-MNIST was not found"):
        data = fm.fashion_mnist()
    banner = capsys.readouterr().err
    assert "WARNING" in banner and "apt-get install dataset-fashion-mnist" in banner and fm.ENV_VAR in banner
    assert "INSTEAD" in banner
    assert data.extras["dataset"] == "digits" and data.description.startswith("FALLBACK")
    with pytest.raises(DataError, match="not found"):
        fm.fashion_mnist(fallback=False)


def test_the_run_config_names_the_dataset_actually_used(no_fashion) -> None:  # type: ignore[no-untyped-def]
    cfg = resolve_config("simclr", "vision")
    assert cfg.dataset == "fashion_mnist"
    with pytest.warns(UserWarning):
        data = build_data(cfg)
    assert cfg.dataset == "digits" and cfg.dataset_kwargs == {"image_size": 16, "seed": 0}
    assert len(data.train) + len(data.eval_test) == 1797  # type: ignore[arg-type]


def test_cli_header_names_the_fallback(no_fashion, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from ssl_core.cli.app import app

    res = CliRunner().invoke(app, ["run", "-m", "vision", "-o", "simclr", "--steps", "1", "--batch-size", "32",
                                   "--no-eval", "--no-progress", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert "dataset digits: FALLBACK (Fashion-MNIST not installed)" in res.output
    assert "dataset: digits" in (tmp_path / "run" / "config.yaml").read_text()


def test_recipes_default_to_fashion_mnist() -> None:
    for name in ("simclr", "byol", "dino", "mae"):
        assert resolve_config(name, "vision").dataset == "fashion_mnist"
    assert resolve_config("clip", "image-text").dataset == "fashion_captions"


@pytest.mark.parametrize("name", ["simclr", "byol", "dino", "mae"])
def test_every_vision_recipe_builds_its_views_on_fashion_mnist(name: str, fashion_root: Path) -> None:
    """The data's augmentation hints reach each recipe's augmenter without breaking it (a hint one
    augmenter needs must not crash another), and its views of real 28x28 images have the recipe's sizes."""
    from ssl_core.runner import build_encoder, build_objective

    cfg = resolve_config(name, "vision", overrides={"dataset_kwargs": {"root": str(fashion_root), "train_size": 40,
                                                                       "test_size": 20, "fallback": False}})
    data = build_data(cfg)
    objective = build_objective(cfg, build_encoder(cfg, data), data)
    assert cfg.augmenter_kwargs["image_size"] == 28 and cfg.augmenter_kwargs["hflip_p"] == 0.5
    batch = {"image": torch.stack([data.train[i]["image"] for i in range(8)])}
    views = objective.augmenter(batch, torch.Generator().manual_seed(0))  # type: ignore[union-attr]
    views = [views] if torch.is_tensor(views) else list(views)
    assert views[0].shape[-2:] == (28, 28)
    if name == "dino":
        assert [v.shape[-1] for v in views[2:]] == [12] * cfg.augmenter_kwargs["n_local"]  # 96/224 of 28, patch multiple
