"""Shared test settings: small thread count, quiet progress bars."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from dataclasses import dataclass
from typing import Callable

import pytest
import torch

os.environ.setdefault("TQDM_DISABLE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def registry():
    """A fresh registry built from the installed entry points."""
    from ssl_core.registry import Registry

    return Registry()


@dataclass
class CliResult:
    """What ``ssl ARGS`` did: the same fields as ``subprocess.CompletedProcess``."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def ssl_cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """Run ``ssl ARGS`` in this process, through the console entry point ``ssl_core.cli.main``.

    For checking arguments, messages and exit codes: it skips the 5-15 s of starting Python and
    importing torch that a subprocess costs. Tests of process-level behaviour (signals, torchrun,
    the installed console script) still start a real process. ``env`` sets variables for the call.
    """
    from ssl_core.cli import main

    def run(*args: object, env: dict[str, str] | None = None) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        with monkeypatch.context() as m:
            m.setattr(sys, "argv", ["ssl", *map(str, args)])  # paths as the shell would pass them
            for key, value in (env or {}).items():
                m.setenv(key, value)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    main()
                    code = 0
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        return CliResult(code, out.getvalue(), err.getvalue())

    return run
