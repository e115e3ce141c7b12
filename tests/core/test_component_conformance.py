"""Conformance for every component kind (issue 15, point 4): sslkit's own encoders, augmenters,
datasets and evaluators pass; a component that breaks a contract fails with that contract's name."""

from __future__ import annotations

import random
import types
from typing import Any

import pytest
import torch
from torch import nn

from ssl_core import hookimpl
from ssl_core.data import TensorDictDataset
from ssl_core.errors import DataError
from ssl_core.interfaces import DataModule, Evaluator
from ssl_core.randomness import sample_rand
from ssl_core.registry import Registry
from ssl_core.testing import (
    AUGMENTER_CONTRACTS, DATASET_CONTRACTS, ENCODER_CONTRACTS, EVALUATOR_CONTRACTS, ComponentHarness, ContractError,
    EvaluatorHarness, check_augmenter, check_augmenter_contract, check_dataset_contract, check_encoder,
    check_encoder_contract, check_evaluator, check_evaluator_contract,
)
from sslkit_testplugins.toy import MLPEncoder, NoiseViews, gaussian_mixture

# ------------------------------------------------------------------ sslkit's own components
RES = {"encoder_kwargs": {"widths": [8, 8, 8, 8]}, "train": {"batch_size": 8}}
AUDIO = {"encoder_kwargs": {"size": "tiny"}, "augmenter_kwargs": {"crop_seconds": 0.2}}
TEXT = {"encoder_kwargs": {"d_model": 32, "n_layers": 1}, "dataset_kwargs": {"vocab_size": 1024, "block_size": 64}}
BUILTIN = {  # component -> (kind, objective whose recipe data it runs on, small overrides)
    "resnet_small": ("encoder", "simclr", RES), "vit_nano": ("encoder", "dino", {}),
    "wav2vec2_small": ("encoder", "wav2vec2", AUDIO), "bert_small": ("encoder", "mlm", TEXT),
    "gpt_small": ("encoder", "clm", TEXT), "open_clip": ("encoder", "clip", {}),
    "simclr_views": ("augmenter", "simclr", RES), "byol_views": ("augmenter", "byol", RES),
    "multicrop": ("augmenter", "dino", {}), "mae_views": ("augmenter", "mae", {}),
    "audio_crop": ("augmenter", "wav2vec2", AUDIO), "bert_masking": ("augmenter", "mlm", TEXT),
    "clip_crop": ("augmenter", "clip", {}),
}
EVALUATORS = {  # evaluator -> (objective, overrides, eval_kwargs sized for a test)
    "knn": ("simclr", RES, {}), "linear_probe": ("simclr", RES, {"epochs": 20}), "few_shot": ("simclr", RES, {}),
    "health": ("wav2vec2", AUDIO, {}), "nn_grid": ("simclr", RES, {}),
    "perplexity": ("clm", TEXT, {"max_tokens": 2048}), "masked_accuracy": ("mlm", TEXT, {"max_tokens": 2048}),
    "clip_zero_shot": ("clip", {}, {}), "clip_retrieval": ("clip", {}, {}),
}
DATASETS = {"digits": {}, "spoken_words": {}, "pydocs": {"vocab_size": 1024, "block_size": 64}, "digit_captions": {}}
_harnesses: dict[str, Any] = {}


def _component(name: str) -> ComponentHarness:
    if name not in _harnesses:
        kind, objective, overrides = BUILTIN[name]
        _harnesses[name] = ComponentHarness(kind, name, objective, overrides)
    return _harnesses[name]


@pytest.mark.parametrize("contract", ENCODER_CONTRACTS)
@pytest.mark.parametrize("name", [n for n, v in BUILTIN.items() if v[0] == "encoder"])
def test_builtin_encoder_conforms(name: str, contract: str) -> None:
    check_encoder_contract(name, contract, harness=_component(name))


@pytest.mark.parametrize("contract", AUGMENTER_CONTRACTS)
@pytest.mark.parametrize("name", [n for n, v in BUILTIN.items() if v[0] == "augmenter"])
def test_builtin_augmenter_conforms(name: str, contract: str) -> None:
    check_augmenter_contract(name, contract, harness=_component(name))


@pytest.mark.parametrize("name", sorted(EVALUATORS))
def test_builtin_evaluator_conforms(name: str) -> None:
    objective, overrides, eval_kwargs = EVALUATORS[name]
    h = EvaluatorHarness(name, objective, overrides, eval_kwargs, max_samples=96)
    for contract in EVALUATOR_CONTRACTS:
        check_evaluator_contract(name, contract, harness=h)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_builtin_dataset_conforms(name: str) -> None:
    from ssl_core.registry import get_registry

    built = get_registry().get("dataset", name).build(path=None, **DATASETS[name])
    for contract in DATASET_CONTRACTS:
        check_dataset_contract(name, contract, dataset_kwargs=DATASETS[name], built=built)


def test_toy_components_conform_through_the_one_call_api() -> None:
    check_encoder("toy_mlp")  # finds the recipe that uses it (toy_align)
    check_augmenter("toy_noise")
    check_evaluator("knn", objective="toy_align")


# ------------------------------------------------------------------ broken components fail by name
def _registry(kind: str, name: str, factory: Any, **extra: Any) -> Registry:
    reg = Registry()
    mod = types.ModuleType(f"broken_{name}")
    hook = {"encoder": "register_encoders", "augmenter": "register_augmenters", "dataset": "register_datasets",
            "evaluator": "register_evaluators"}[kind]

    def register(register):  # type: ignore[no-untyped-def]
        register(name, factory, modality="toy", summary="deliberately broken", **extra)

    setattr(mod, hook, hookimpl(register, specname=hook))
    reg.add_plugin(mod, name=f"broken_{name}")
    assert not reg.failures, reg.failures
    return reg


class PlainTensorAttr(MLPEncoder):
    def __init__(self, in_dim: int = 8) -> None:
        super().__init__(in_dim, dropout=0.0)
        self.shift = torch.ones(self.embed_dim)  # not a buffer: stays behind on .to(device)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return super().forward(x) + self.shift


class DetachedEmbed(MLPEncoder):
    def forward(self, x):  # type: ignore[no-untyped-def]
        return super().forward(x).detach()


class DropoutInEval(MLPEncoder):
    def forward(self, x):  # type: ignore[no-untyped-def]
        return nn.functional.dropout(super().forward(x), 0.5, training=True)


class Float32Only(MLPEncoder):
    def forward(self, x):  # type: ignore[no-untyped-def]
        z = super().forward(x)
        assert z.dtype == torch.float32, "mixed precision is not supported"
        return z


class UnsavedScale(MLPEncoder):
    def __init__(self, in_dim: int = 8) -> None:
        super().__init__(in_dim, dropout=0.0)
        self.scale = float(torch.rand(()))  # state outside state_dict

    def forward(self, x):  # type: ignore[no-untyped-def]
        return super().forward(x) * self.scale


class WrongModality(MLPEncoder):
    modality = "vision"


@pytest.mark.parametrize("cls,contract", [
    (PlainTensorAttr, "encoder-registered-state"),
    (DetachedEmbed, "encoder-gradients"),
    (DropoutInEval, "encoder-embed"),
    (Float32Only, "encoder-autocast"),
    (UnsavedScale, "encoder-state-dict-round-trip"),
    (WrongModality, "encoder-metadata"),
])
def test_broken_encoder_fails_the_named_contract(cls: type, contract: str) -> None:
    name = cls.__name__.lower()
    reg = _registry("encoder", name, cls)
    with pytest.raises(ContractError, match=f"contract '{contract}' failed for encoder '{name}'"):
        check_encoder_contract(name, contract, objective="toy_align", registry=reg)
    others = [c for c in ENCODER_CONTRACTS if c != contract and not (cls is DropoutInEval and c.endswith("trip"))]
    for other in others:  # each broken encoder breaks exactly the contract it targets
        check_encoder_contract(name, other, objective="toy_align", registry=reg)


class DrawsWithoutDevice(NoiseViews):
    """Would raise on a GPU: the step generator lives there, torch.randn makes a CPU tensor."""

    def __call__(self, batch, generator):  # type: ignore[no-untyped-def]
        x = batch["x"].float()
        return x + torch.randn(x.shape, generator=generator), x + torch.randn(x.shape, generator=generator)


class PerRankDraws(NoiseViews):
    """Draws for the local batch: under DDP every rank's first sample would get the same noise."""

    def __call__(self, batch, generator):  # type: ignore[no-untyped-def]
        x = batch["x"].float()
        return (x + torch.randn(x.shape, generator=generator, device=x.device),
                x + torch.randn(x.shape, generator=generator, device=x.device))


class PerSampleWithoutDevice(NoiseViews):
    """Per-sample helper, but no device: sample_rand's torch.rand would raise on a GPU."""

    def __call__(self, batch, generator):  # type: ignore[no-untyped-def]
        x = batch["x"].float()
        return x + sample_rand(generator, x.shape), x + sample_rand(generator, x.shape)


class GlobalRNG(NoiseViews):
    def __call__(self, batch, generator):  # type: ignore[no-untyped-def]
        x = batch["x"].float()
        return x + torch.randn_like(x), x + torch.randn_like(x)


class PythonRandom(NoiseViews):
    def __call__(self, batch, generator):  # type: ignore[no-untyped-def]
        v1, v2 = super().__call__(batch, generator)
        return v1 * random.random(), v2


class InPlace(NoiseViews):
    def __call__(self, batch, generator):  # type: ignore[no-untyped-def]
        x = batch["x"]
        x.add_(torch.randn(x.shape, generator=generator, device=x.device))
        return x, x.clone()


@pytest.mark.parametrize("cls,contract,detail", [
    (DrawsWithoutDevice, "augmenter-generator-device", r"\['torch.randn'\] drew from the generator without device="),
    (PerSampleWithoutDevice, "augmenter-generator-device", r"\['torch.rand'\] drew from the generator without device="),
    (PerRankDraws, "augmenter-per-sample", "samples 0..3 got other views when a second process held them"),
    (GlobalRNG, "augmenter-generator-device", r"\['torch.randn_like'\] drew from the global RNG"),
    (GlobalRNG, "augmenter-per-sample", "got other views when a second process held them"),
    (GlobalRNG, "augmenter-deterministic", "the same generator seed gave different views"),
    (PythonRandom, "augmenter-deterministic", "the same generator seed gave different views"),
    (InPlace, "augmenter-leaves-batch", "changed the batch it was given in place"),
])
def test_broken_augmenter_fails_the_named_contract(cls: type, contract: str, detail: str) -> None:
    _assert_fails_by_name("augmenter", cls, contract, detail, check_augmenter_contract)


def _assert_fails_by_name(kind: str, cls: type, contract: str, detail: str, check: Any) -> None:
    """Registering ``cls`` as a ``kind`` and checking ``contract`` fails with that contract's name and ``detail``."""
    name = cls.__name__.lower()
    reg = _registry(kind, name, cls)
    with pytest.raises(ContractError, match=f"contract '{contract}' failed for {kind} '{name}': .*{detail}"):
        check(name, contract, objective="toy_align", registry=reg)


def test_correct_device_handling_passes_the_device_check() -> None:
    check_augmenter_contract("toy_noise", "augmenter-generator-device")  # draws with device=x.device
    check_augmenter_contract("toy_noise", "augmenter-per-sample")  # through sample_randn


def _unseen_test_class(path: str | None = None) -> DataModule:
    dm = gaussian_mixture(n=64, classes=4)
    test = TensorDictDataset(x=torch.randn(8, 8), label=torch.full((8,), 3))
    train = TensorDictDataset(x=torch.randn(8, 8), label=torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    return DataModule(train=dm.train, eval_train=train, eval_test=test, num_classes=4)


def _label_out_of_range(path: str | None = None) -> DataModule:
    dm = gaussian_mixture(n=64, classes=4)
    dm.num_classes = 3
    return dm


def _one_split(path: str | None = None) -> DataModule:
    dm = gaussian_mixture(n=64, classes=4)
    dm.eval_test = None
    return dm


def _unseeded(path: str | None = None) -> DataModule:
    return gaussian_mixture(n=64, classes=4, seed=int(torch.randint(0, 10_000, ())))


def _list_samples(path: str | None = None) -> DataModule:
    return DataModule(train=[[1, 2], [3, 4]])  # type: ignore[arg-type]


@pytest.mark.parametrize("factory,contract,detail", [
    (_unseen_test_class, "dataset-labelled-splits", r"classes \[3\] appear in eval_test but never in eval_train"),
    (_label_out_of_range, "dataset-labelled-splits", r"labels \[3\] are outside 0..2"),
    (_one_split, "dataset-labelled-splits", "set both eval_train and eval_test"),
    (_unseeded, "dataset-deterministic", "different 'train' samples"),
    (_list_samples, "dataset-batches", "training samples must be dicts"),
])
def test_broken_dataset_fails_the_named_contract(factory: Any, contract: str, detail: str) -> None:
    reg = _registry("dataset", "broken_set", factory, builtin=True)
    with pytest.raises(ContractError, match=f"contract '{contract}' failed for dataset 'broken_set': .*{detail}"):
        check_dataset_contract("broken_set", contract, registry=reg)


class TrainsTheEncoder(Evaluator):
    def evaluate(self, encoder, data):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            next(encoder.parameters()).add_(0.1)
        return {"x": 1.0}


class KeyErrorWithoutLabels(Evaluator):
    def evaluate(self, encoder, data):  # type: ignore[no-untyped-def]
        return {"n_labels": float(len({int(data.eval_test[i]["label"]) for i in range(len(data.eval_test))}))}


class ClaimsNoLabelsNeeded(Evaluator):
    needs_labels = False

    def evaluate(self, encoder, data):  # type: ignore[no-untyped-def]
        if "label" not in data.eval_test[0]:
            raise DataError("no labels")
        return {"x": 1.0}


class ReturnsNaN(Evaluator):
    def evaluate(self, encoder, data):  # type: ignore[no-untyped-def]
        return {"score": float("nan")}


@pytest.mark.parametrize("cls,contract,detail", [
    (TrainsTheEncoder, "evaluator-weights-unchanged", r"evaluate changed the encoder's \['net.0.weight'\]"),
    (KeyErrorWithoutLabels, "evaluator-needs-labels", "on samples without 'label' it raised KeyError"),
    (ClaimsNoLabelsNeeded, "evaluator-needs-labels", "needs_labels is False but it failed"),
    (ReturnsNaN, "evaluator-metrics", "metric 'score' is nan"),
])
def test_broken_evaluator_fails_the_named_contract(cls: type, contract: str, detail: str) -> None:
    _assert_fails_by_name("evaluator", cls, contract, detail, check_evaluator_contract)
