"""Shared test settings: small thread count, quiet progress bars."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("TQDM_DISABLE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def registry():
    """A fresh registry built from the installed entry points."""
    from ssl_core.registry import Registry

    return Registry()
