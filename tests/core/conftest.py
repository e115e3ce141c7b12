"""Fixtures shared by the core tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def toy_run(tmp_path: Path, ssl_cli) -> Path:  # type: ignore[no-untyped-def]
    """A finished 4-step toy run (checkpoints at steps 2 and 4, no evaluation) in ``tmp_path/run``."""
    out = tmp_path / "run"
    res = ssl_cli("run", "-o", "toy_align", "--steps", "4", "--no-eval", "--set", "train.checkpoint_every=2",
                  "--out", out)
    assert res.returncode == 0, res.stderr
    return out
