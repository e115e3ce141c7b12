"""Both text objectives pass sslkit's plugin conformance suite (built as `ssl run` builds them)."""

from __future__ import annotations

import pytest

from ssl_core.testing import OBJECTIVE_CONTRACTS, ObjectiveHarness, check_objective_contract

TINY = {"encoder_kwargs": {"d_model": 32, "n_layers": 1},
        "dataset_kwargs": {"vocab_size": 1024, "block_size": 64}}  # the session's built-in store


@pytest.fixture(scope="module")
def harnesses(builtin_clm) -> dict[str, ObjectiveHarness]:
    return {name: ObjectiveHarness(name, TINY) for name in ("mlm", "clm")}


@pytest.mark.parametrize("objective", ["mlm", "clm"])
@pytest.mark.parametrize("contract", OBJECTIVE_CONTRACTS)
def test_objective_conforms(harnesses, objective: str, contract: str) -> None:
    check_objective_contract(objective, contract, harness=harnesses[objective])
