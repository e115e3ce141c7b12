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


@pytest.fixture
def ssl_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Run the ``ssl`` command line inside this process (no interpreter start-up, so fast).

    ``ssl_cli("run", "-o", "toy_align", ...)`` returns ``(returncode, stdout, stderr)`` as a
    namespace with the field names of ``subprocess.CompletedProcess``."""
    import sys
    import types

    from ssl_core.cli.app import main

    def run(*args: object) -> types.SimpleNamespace:
        monkeypatch.setattr(sys, "argv", ["ssl", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return types.SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return run
