"""The vision plugin through the registry, as `ssl run --modality vision --objective NAME` sees it."""

from __future__ import annotations

import pytest
import torch

from ssl_core.interfaces import StepInfo
from ssl_core.runner import build_data, build_encoder, build_objective, resolve_config

METHODS = ["byol", "dino", "mae", "simclr"]


def test_components_are_registered(registry) -> None:  # type: ignore[no-untyped-def]
    names = {(s.kind, s.name) for s in registry.list(modality="vision")}
    for obj in METHODS:
        assert ("objective", obj) in names
    for enc in ("resnet_small", "resnet18", "resnet50", "vit_nano", "vit_micro", "vit_tiny", "vit_small", "vit_base"):
        assert ("encoder", enc) in names
    for aug in ("simclr_views", "byol_views", "multicrop", "mae_views"):
        assert ("augmenter", aug) in names
    for ds in ("fashion_mnist", "digits", "imagefolder", "idx", "webdataset", "webdataset_stream"):
        assert ("dataset", ds) in names
    assert registry.get("dataset", "fashion_mnist").builtin and not registry.get("dataset", "idx").builtin
    assert registry.get("evaluator", "nn_grid").modality == "vision"


@pytest.mark.parametrize("method", METHODS)
def test_recipe_builds_and_takes_one_step(method: str, registry) -> None:  # type: ignore[no-untyped-def]
    cfg = resolve_config(method, "vision", registry=registry)
    assert cfg.dataset == "fashion_mnist"
    assert cfg.evaluators == ["knn", "linear_probe", "few_shot", "health", "nn_grid"]
    data = build_data(cfg, registry)
    enc = build_encoder(cfg, data, registry)
    obj = build_objective(cfg, enc, data, registry)
    batch = {"image": torch.stack([data.train[i]["image"] for i in range(4)])}
    out = obj.training_step(batch, StepInfo(0, 10, 0, torch.Generator().manual_seed(0)))
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])


@pytest.mark.parametrize("method,encoder", [("simclr", "vit_micro"), ("byol", "vit_micro"), ("dino", "resnet_small")])
def test_methods_accept_either_encoder_family(method: str, encoder: str, registry) -> None:  # type: ignore[no-untyped-def]
    cfg = resolve_config(method, "vision", overrides={"encoder": encoder}, registry=registry)
    data = build_data(cfg, registry)
    obj = build_objective(cfg, build_encoder(cfg, data, registry), data, registry)
    batch = {"image": torch.stack([data.train[i]["image"] for i in range(4)])}
    loss = obj.training_step(batch, StepInfo(0, 10, 0, torch.Generator().manual_seed(0)))["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in obj.encoder.parameters() if p.requires_grad)


def test_mae_with_a_resnet_fails_with_a_fix(registry) -> None:  # type: ignore[no-untyped-def]
    cfg = resolve_config("mae", "vision", overrides={"encoder": "resnet_small"}, registry=registry)
    data = build_data(cfg, registry)
    with pytest.raises(TypeError, match="--encoder vit_micro"):
        build_objective(cfg, build_encoder(cfg, data, registry), data, registry)
