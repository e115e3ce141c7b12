"""sslkit's own vision and audio objectives pass the same conformance suite third parties run.

(The text and image-text plugins run it in tests/text and tests/clip.)
"""

from __future__ import annotations

import pytest

from ssl_core.testing import OBJECTIVE_CONTRACTS, ObjectiveHarness, check_objective_contract

TINY = {
    "simclr": {"encoder_kwargs": {"widths": [8, 8, 8, 8]}},
    "byol": {"encoder_kwargs": {"widths": [8, 8, 8, 8]}},
    "dino": {},
    "mae": {},
    "wav2vec2": {"encoder_kwargs": {"size": "tiny"}},
    "hubert": {"encoder_kwargs": {"size": "tiny"}},
}
_harnesses: dict[str, ObjectiveHarness] = {}


def _harness(name: str) -> ObjectiveHarness:
    if name not in _harnesses:
        _harnesses[name] = ObjectiveHarness(name, overrides={"train": {"batch_size": 8}, **TINY[name]})
    return _harnesses[name]


@pytest.mark.parametrize("contract", OBJECTIVE_CONTRACTS)
@pytest.mark.parametrize("objective", sorted(TINY))
def test_builtin_objective_conforms(objective: str, contract: str) -> None:
    check_objective_contract(objective, contract, harness=_harness(objective))
