"""The conformance suite passes good objectives and names the contract a broken one breaks."""

from __future__ import annotations

import copy
import random
import types

import pytest
import torch
from torch import nn

from ssl_core import hookimpl
from ssl_core.registry import Registry
from ssl_core.testing import OBJECTIVE_CONTRACTS, ContractError, check_objective, check_objective_contract


@pytest.mark.parametrize("contract", OBJECTIVE_CONTRACTS)
def test_toy_objective_conforms(contract: str) -> None:
    check_objective_contract("toy_align", contract)


def _registry_with(name: str, cls: type) -> Registry:
    reg = Registry()
    mod = types.ModuleType(f"broken_{name}")

    def register_objectives(register):  # type: ignore[no-untyped-def]
        register(name, cls, modality="toy", summary="deliberately broken",
                 recipe={"encoder": "toy_mlp", "augmenter": "toy_noise", "dataset": "toy_mixture",
                         "train": {"batch_size": 16, "steps": 5}})

    mod.register_objectives = hookimpl(register_objectives)  # type: ignore[attr-defined]
    reg.add_plugin(mod, name=f"broken_{name}")
    assert not reg.failures, reg.failures
    return reg


def _base():  # type: ignore[no-untyped-def]
    from sslkit_testplugins.toy import AlignUniform

    return AlignUniform


class LeakyTeacher(_base()):
    """Declares an EMA teacher but forgets to freeze it and lets gradients into it."""

    def __init__(self, encoder, augmenter):  # type: ignore[no-untyped-def]
        super().__init__(encoder, augmenter)
        self.teacher = copy.deepcopy(encoder)

    def teacher_modules(self):  # type: ignore[no-untyped-def]
        return [self.teacher]

    def training_step(self, batch, step):  # type: ignore[no-untyped-def]
        v1, v2 = self.augmenter(batch, step.generator)
        loss = (self.encoder(v1) - self.teacher(v2)).pow(2).mean()  # no detach, no freeze
        return {"loss": loss}


class HiddenState(_base()):
    """Keeps a tensor outside the state dict (should be a registered buffer)."""

    def __init__(self, encoder, augmenter):  # type: ignore[no-untyped-def]
        super().__init__(encoder, augmenter)
        self.center = torch.randn(encoder.embed_dim)

    def training_step(self, batch, step):  # type: ignore[no-untyped-def]
        v1, _ = self.augmenter(batch, step.generator)
        return {"loss": (self.encoder(v1) - self.center).pow(2).mean()}


class Unseeded(_base()):
    """Draws noise from Python's random module, outside sslkit's seeding."""

    def training_step(self, batch, step):  # type: ignore[no-untyped-def]
        out = super().training_step(batch, step)
        return {"loss": out["loss"] + random.random()}


class DetachedEncoder(_base()):
    """Trains only a head: the encoder output is detached, so the encoder learns nothing."""

    def __init__(self, encoder, augmenter):  # type: ignore[no-untyped-def]
        super().__init__(encoder, augmenter)
        self.head = nn.Linear(encoder.embed_dim, 4)

    def training_step(self, batch, step):  # type: ignore[no-untyped-def]
        v1, _ = self.augmenter(batch, step.generator)
        return {"loss": self.head(self.encoder(v1).detach()).pow(2).mean()}


class NaNLoss(_base()):
    def training_step(self, batch, step):  # type: ignore[no-untyped-def]
        out = super().training_step(batch, step)
        return {"loss": out["loss"] * float("inf") if step.step > 10 else out["loss"]}


@pytest.mark.parametrize("cls,contract", [
    (LeakyTeacher, "frozen-teacher"),
    (HiddenState, "state-dict-round-trip"),
    (Unseeded, "deterministic"),
    (DetachedEncoder, "gradients-reach-encoder"),
    (NaNLoss, "finite-loss"),
])
def test_broken_objective_fails_the_named_contract(cls: type, contract: str) -> None:
    name = cls.__name__.lower()
    reg = _registry_with(name, cls)
    with pytest.raises(ContractError, match=f"contract '{contract}' failed for objective '{name}'"):
        check_objective_contract(name, contract, registry=reg)


def test_full_suite_stops_at_the_first_broken_contract() -> None:
    reg = _registry_with("leakyteacher", LeakyTeacher)
    with pytest.raises(ContractError, match="contract 'frozen-teacher'.*requires_grad=True"):
        check_objective("leakyteacher", registry=reg)
