"""The plugin's own tests: sslkit's conformance suite, plus a check of the loss terms."""

from __future__ import annotations

import pytest
import torch

from ssl_core.testing import OBJECTIVE_CONTRACTS, check_objective_contract
from ssl_vicreg.vicreg import vicreg_loss

TINY = {"train": {"batch_size": 8}, "encoder_kwargs": {"widths": [8, 8, 8, 8]}, "objective_kwargs": {"expander_dim": 32}}


@pytest.mark.parametrize("contract", OBJECTIVE_CONTRACTS)
def test_vicreg_conforms(contract: str) -> None:
    check_objective_contract("vicreg", contract, overrides=TINY)


def test_variance_term_penalises_collapse() -> None:
    g = torch.Generator().manual_seed(0)
    spread = torch.randn(64, 16, generator=g) * 2
    collapsed = torch.zeros(64, 16) + 1e-3 * torch.randn(64, 16, generator=g)
    assert vicreg_loss(spread, spread)["variance"] == 0
    assert vicreg_loss(collapsed, collapsed)["variance"] > 1.9  # ~gamma per view
    assert vicreg_loss(spread, spread)["invariance"] == 0
