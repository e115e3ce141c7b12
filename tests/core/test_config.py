"""Config files, overrides, validation messages and precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssl_core.config import RunConfig, TrainConfig, from_dict, load_file, nest, parse_override
from ssl_core.errors import ConfigError
from ssl_core.registry import Registry
from ssl_core.runner import resolve_config


def test_precedence_recipe_file_overrides(tmp_path: Path, registry: Registry) -> None:
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("train:\n  lr: 0.5\n  batch_size: 32\nobjective_kwargs:\n  t: 3.0\n")
    cfg = resolve_config("toy_align", config_file=cfg_file, overrides=nest({"train.lr": 0.25}), registry=registry)
    assert cfg.train.lr == 0.25  # command line beats file
    assert cfg.train.batch_size == 32  # file beats recipe (64)
    assert cfg.train.steps == 30  # recipe beats dataclass default
    assert cfg.objective_kwargs == {"t": 3.0}
    assert cfg.encoder == "toy_mlp"


def test_toml_file(tmp_path: Path, registry: Registry) -> None:
    f = tmp_path / "c.toml"
    f.write_text('objective = "toy_align"\n[train]\nsteps = 7\nlr = 1e-3\n')
    cfg = resolve_config(config_file=f, registry=registry)
    assert cfg.train.steps == 7 and cfg.train.lr == pytest.approx(1e-3)


def test_unknown_field_names_file_and_suggests(tmp_path: Path, registry: Registry) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("train:\n  batchsize: 32\n")
    with pytest.raises(ConfigError) as err:
        resolve_config("toy_align", config_file=f, registry=registry)
    msg = str(err.value)
    assert str(f) in msg and "unknown field 'train.batchsize'" in msg and "train.batch_size" in msg


def test_wrong_type_names_field(tmp_path: Path, registry: Registry) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("train:\n  batch_size: lots\n")
    with pytest.raises(ConfigError, match=r"field 'train.batch_size' must be an integer, got 'lots'"):
        resolve_config("toy_align", config_file=f, registry=registry)


def test_yaml_scientific_string_is_read_as_float() -> None:
    cfg = from_dict(TrainConfig, {"lr": "1e-3"})
    assert cfg.lr == pytest.approx(1e-3)


def test_choices_and_ranges_are_checked(registry: Registry) -> None:
    with pytest.raises(ConfigError, match="train.optimizer.*adamw, lars, sgd"):
        resolve_config("toy_align", overrides=nest({"train.optimizer": "adam"}), registry=registry)
    with pytest.raises(ConfigError, match="divisible"):
        resolve_config("toy_align", overrides=nest({"train.batch_size": 10, "train.grad_accum": 3}), registry=registry)


def test_missing_file_and_bad_syntax(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_file(tmp_path / "nope.yaml")
    bad = tmp_path / "x.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="could not be parsed"):
        load_file(bad)


def test_override_parsing() -> None:
    assert parse_override("train.lr=3e-4") == ("train.lr", 3e-4)
    assert parse_override("evaluators=[knn]") == ("evaluators", ["knn"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("train.lr")


def test_round_trip_of_resolved_config(tmp_path: Path, registry: Registry) -> None:
    import yaml

    cfg = resolve_config("toy_align", registry=registry)
    again = from_dict(RunConfig, yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
    assert again == cfg


def test_recipe_component_settings_do_not_follow_a_different_component() -> None:
    """The mlm recipe sizes its bert_small; choosing another encoder drops those settings,
    while the user's own settings for the chosen encoder are kept."""
    recipe = resolve_config("mlm")
    assert recipe.encoder == "bert_small" and recipe.encoder_kwargs["d_model"] == 128
    same = resolve_config("mlm", overrides=nest({"encoder": "bert_small"}))
    assert same.encoder_kwargs == recipe.encoder_kwargs  # naming the recipe's own encoder changes nothing
    other = resolve_config("clm", overrides=nest({"encoder": "bert_small", "encoder_kwargs.n_layers": 1}))
    assert other.encoder_kwargs == {"n_layers": 1}
    assert other.dataset_kwargs == {"mode": "clm", "block_size": 64}  # the dataset was not changed
