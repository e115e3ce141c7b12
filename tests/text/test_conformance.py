"""Both text objectives pass sslkit's plugin conformance suite (built as `ssl run` builds them).

They run on the built-in Python-documentation corpus at the settings of the session's
``builtin_clm`` store, so the harness reuses that cached store: the recipes' default data (all
117,659 WordNet glosses) would cost a tokenizer and a store of their own (about 25 s) for checks
that only need one batch. WordNet reading is tested in test_wordnet.py and test_beats_random.py."""

from __future__ import annotations

import pytest

from ssl_core.testing import OBJECTIVE_CONTRACTS, ObjectiveHarness, check_objective_contract

TINY = {"encoder_kwargs": {"d_model": 32, "n_layers": 1}, "dataset": "pydocs",
        "dataset_kwargs": {"vocab_size": 1024, "block_size": 64}}  # the session's built-in store


@pytest.fixture(scope="module")
def harnesses(builtin_clm) -> dict[str, ObjectiveHarness]:
    return {name: ObjectiveHarness(name, {**TINY, "dataset_kwargs": {**TINY["dataset_kwargs"], "mode": name}})
            for name in ("mlm", "clm")}  # another dataset than the recipe's: its dataset_kwargs (mode) are not kept


@pytest.mark.parametrize("objective", ["mlm", "clm"])
@pytest.mark.parametrize("contract", OBJECTIVE_CONTRACTS)
def test_objective_conforms(harnesses, objective: str, contract: str) -> None:
    check_objective_contract(objective, contract, harness=harnesses[objective])
