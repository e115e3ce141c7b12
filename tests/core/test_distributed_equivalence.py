"""Every built-in objective (and the example VICReg plugin) on 2 gloo processes at global batch 8
takes the same steps as on 1 process at batch 8, and trains a few steps of its recipe under DDP.
A test objective averaging over a data-dependent number of items shows the check catches a
per-rank mean.

One launch of two processes runs all objectives (:func:`ssl_core.equivalence.run_equivalence`):
for each, the loss and every gradient of two SGD steps, the state dict after them (EMA teachers,
DINO's centre, BatchNorm statistics), and a 3-step Trainer run of the recipe's own settings
(optimiser, schedules, gradient clipping, DINO's frozen last layer) under the Trainer's DDP
strategy. Tolerances are the ones stated in ssl_core.equivalence. Dropout is set to 0 where a
recipe has it: dropout masks come from the global RNG, which differs per rank on purpose. The
text objectives read a small real corpus (Python's pydoc topics) instead of WordNet.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import ssl_core.equivalence
from ssl_core.equivalence import EquivalenceCase, EquivalenceResult, run_equivalence
from ssl_core.testing import ContractError, check_distributed_equivalence

RESNET = {"encoder_kwargs": {"widths": [8, 8, 8, 8]}}
TEXT = {"encoder_kwargs": {"d_model": 32, "n_layers": 1, "dropout": 0.0}, "dataset": "textfiles",
        "dataset_kwargs": {"vocab_size": 1024, "block_size": 64}}  # + "data": a small corpus (below)
AUDIO = {"encoder_kwargs": {"size": "tiny"}}  # the tiny preset has no dropout
CASES = {
    "simclr": RESNET, "byol": RESNET, "mae": {}, "vicreg": RESNET,
    # DINO's head with BatchNorm and its centre, at a quarter of the recipe's width, 2 local crops
    "dino": {"augmenter_kwargs": {"n_local": 2}, "objective_kwargs": {"out_dim": 1024, "hidden_dim": 128}},
    "mlm": TEXT, "clm": TEXT,
    "wav2vec2": {**AUDIO, "objective_kwargs": {"feature_dropout": 0.0}}, "hubert": AUDIO,
    "clip": {},
    "toy_masked": {"encoder_kwargs": {"dropout": 0.0}},  # ranks average over different counts
}
LOCAL_MEAN = {"encoder_kwargs": {"dropout": 0.0}, "objective_kwargs": {"local_mean": True}}
"""toy_masked averaging each rank's items on their own: the check must refuse it."""


def _overrides(name: str, corpus: Path) -> dict:
    if name not in ("mlm", "clm"):
        return CASES[name]
    # the text objectives' maths does not depend on the corpus: a small one tokenizes in a second
    return {**TEXT, "data": str(corpus), "dataset_kwargs": {**TEXT["dataset_kwargs"], "mode": name}}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, pydoc_corpus: Path) -> dict[str, EquivalenceResult]:
    """Every case, and toy_masked with a local mean, in one launch of two processes."""
    os.environ.setdefault("SSL_TEXT_CACHE", str(tmp_path_factory.mktemp("text_cache")))
    cases = [EquivalenceCase(name, _overrides(name, pydoc_corpus), batch_size=8) for name in CASES]
    cases.append(EquivalenceCase("toy_masked", LOCAL_MEAN, batch_size=8, trainer_steps=0))
    measured = run_equivalence(cases, nproc=2)
    return {**{r.name: r for r in measured[:-1]}, "toy_masked_local_mean": measured[-1]}


@pytest.mark.parametrize("objective", sorted(CASES))
def test_two_processes_take_the_steps_of_one(results: dict[str, EquivalenceResult], objective: str) -> None:
    r = results[objective]
    assert r.problems() == [], f"{objective}: {r.problems()}"
    assert len(r.losses_many) == 2 and len(r.trainer_losses_many) == 3
    assert r.grad_error <= 2e-3 and r.state_error <= 2e-3


def test_the_check_fails_a_mean_over_the_local_batch(results: dict[str, EquivalenceResult],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """toy_masked with local_mean=True averages each rank's items on their own: the measurement
    shows it (with global_mean_share, the case above, it passes), and the public check refuses
    it. The check is given the measurement of the shared launch instead of launching its own."""
    measured = results["toy_masked_local_mean"]
    assert any("loss" in p for p in measured.problems()) and any("gradient of" in p for p in measured.problems())
    asked = []

    def measured_launch(cases, nproc=2, timeout_s=1200.0, seed=0):  # type: ignore[no-untyped-def]
        asked.append((cases, nproc))
        return [measured]

    monkeypatch.setattr(ssl_core.equivalence, "run_equivalence", measured_launch)
    with pytest.raises(ContractError, match="distributed-equivalence.*toy_masked.*loss") as err:
        check_distributed_equivalence("toy_masked", LOCAL_MEAN, trainer_steps=0)
    assert "gradient of" in str(err.value)
    [(cases, nproc)] = asked
    assert nproc == 2 and [(c.name, dict(c.overrides), c.batch_size, c.trainer_steps) for c in cases] == [
        ("toy_masked", LOCAL_MEAN, 8, 0)]


def test_gradient_floor_passes_rounding_noise_and_fails_real_differences() -> None:
    """The gradient floor lets a gradient that is zero in exact arithmetic (a conv bias before
    BatchNorm: pure rounding noise, measured 1e-7 to 3e-7 of the whole gradient on the example
    time-series CNN) differ freely, while a 1% error on a large parameter and a wrong gradient on
    a parameter holding 0.1% of the whole gradient still fail. The state floor, 50x smaller,
    would have refused the noise."""
    from ssl_core.equivalence import GRAD_FLOOR, GRAD_RTOL, RELATIVE_FLOOR, _relative_errors

    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(64, 32, generator=gen)  # carries nearly all of |G|
    whole = float(weight.norm())

    def noise(n: int, scale: float) -> torch.Tensor:
        v = torch.randn(n, generator=gen)
        return v / v.norm() * scale * whole

    bias_one, bias_many = noise(64, 1e-7), noise(64, 3e-7)  # rounding noise on both sides
    small = noise(16, 1e-3)  # a real parameter with a small gradient

    def worst(ref: dict, got: dict, floor: float) -> tuple[float, str]:
        r = EquivalenceResult("case", 2)
        out = _relative_errors(ref, got, r, "gradient", floor)
        assert r.mismatched == []
        return out

    ref = {"conv.weight": weight, "conv.bias": bias_one, "head.bias": small}
    err, _ = worst(ref, {"conv.weight": weight.clone(), "conv.bias": bias_many, "head.bias": small.clone()}, GRAD_FLOOR)
    assert err <= GRAD_RTOL
    err, where = worst(ref, {"conv.weight": weight.clone(), "conv.bias": bias_many, "head.bias": small.clone()},
                       RELATIVE_FLOOR)
    assert err > GRAD_RTOL and where == "conv.bias"
    err, where = worst(ref, {"conv.weight": weight * 1.01, "conv.bias": bias_one.clone(), "head.bias": small.clone()},
                       GRAD_FLOOR)
    assert err > GRAD_RTOL and where == "conv.weight"
    err, where = worst(ref, {"conv.weight": weight.clone(), "conv.bias": bias_one.clone(), "head.bias": -small},
                       GRAD_FLOOR)
    assert err > GRAD_RTOL and where == "head.bias"
