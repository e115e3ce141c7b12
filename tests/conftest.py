"""Shared test settings: small thread count, quiet progress bars."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from dataclasses import dataclass
from typing import Callable

import pytest

# Idle OpenMP threads sleep instead of spinning: tests run CLI commands in-process next to
# subprocesses (and xdist workers) on a 2-core machine, where spinning threads starve the rest.
# Read when torch loads its OpenMP runtime, so it is set before the import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402

os.environ.setdefault("TQDM_DISABLE", "1")
# Under pytest-xdist (`-n auto`) each worker gets its share of the cores, not all of them: two
# workers with two threads each on a 2-core machine spend their time switching, not computing.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))


@pytest.fixture(autouse=True)
def no_child_process_outlives_its_test():
    """Fail the test that leaves a ``multiprocessing`` child running (a DataLoader worker, a
    spawned rank), and kill it: such a child makes the interpreter's exit handler wait for it, so
    the suite would print its summary and then never exit."""
    import multiprocessing
    import time

    yield
    deadline = time.monotonic() + 15.0  # a child that was told to stop may take a moment to exit
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [p for p in multiprocessing.active_children() if p.is_alive()]
    for p in left:
        p.kill()
        p.join(5)
    assert not left, f"child processes still running after the test: {left}"


@pytest.fixture
def registry():
    """A fresh registry built from the installed entry points."""
    from ssl_core.registry import Registry

    return Registry()


@pytest.fixture(scope="session")
def fashion_root(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A folder holding Fashion-MNIST's four idx files: Debian's copy when installed (CI installs
    it), else a stand-in written here in the same layout from real images (the UCI digits at
    28x28, first 1,400 as "train", the rest as "t10k"), so the data tests still run."""
    from pathlib import Path

    from ssl_vision.fashion_mnist import DEBIAN_DIR, locate

    if locate()[0] == DEBIAN_DIR:
        return DEBIAN_DIR
    import warnings

    import numpy as np
    from sklearn.datasets import load_digits

    from ssl_vision.idx import write_idx

    warnings.warn("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist): the tests that need it "
                  "read a stand-in idx folder made from the UCI digits.", stacklevel=1)
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = torch.nn.functional.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    images = (x[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    labels = bunch.target.astype(np.uint8)
    root = Path(tmp_path_factory.mktemp("fashion-standin"))
    for stem, sl in (("train", slice(0, 1400)), ("t10k", slice(1400, None))):
        write_idx(root / f"{stem}-images-idx3-ubyte.gz", images[sl])
        write_idx(root / f"{stem}-labels-idx1-ubyte.gz", labels[sl])
    return root


@dataclass
class CliResult:
    """What ``ssl ARGS`` did: the same fields as ``subprocess.CompletedProcess``."""

    returncode: int
    stdout: str
    stderr: str


@dataclass
class ScriptResult:
    """What ``python SCRIPT ARGS`` did, run in this process: ``code`` is the ``SystemExit`` code
    (``None`` when the script returned), and what it printed."""

    code: object
    stdout: str
    stderr: str


def _run_script(path: str | os.PathLike, *args: str) -> ScriptResult:
    import runpy

    path = str(path)
    argv, sys_path, threads = sys.argv, list(sys.path), torch.get_num_threads()
    sys.argv, sys.path[:0] = [path, *args], [os.path.dirname(path)]
    out, err = io.StringIO(), io.StringIO()
    code: object = None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
    finally:  # a script may set its own thread count; later tests keep theirs
        sys.argv, sys.path[:] = argv, sys_path
        torch.set_num_threads(threads)
    return ScriptResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def run_script() -> Callable[..., ScriptResult]:
    """Run a Python script (an example, a benchmark) as ``__main__`` in this process, with its own
    ``sys.argv`` and its folder first on ``sys.path``: it skips the 5-15 s of starting Python and
    importing torch that a subprocess costs, where the process itself is not under test."""
    return _run_script


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


@pytest.fixture
def reevaluate() -> Callable[..., dict[str, float]]:
    """Evaluate a finished run's exported encoder again, in this process, on the data its config
    names: what its eval.json reports as ``trained`` must equal this (the metric was computed on
    the trained weights the run exported, whatever launched or fed the run)."""
    from ssl_core.runner import evaluate_encoder, load_run

    def run(run_dir: object, evaluators: tuple[str, ...] = ("knn",)) -> dict[str, float]:
        cfg, data, encoder = load_run(str(run_dir))
        cfg.evaluators = list(evaluators)
        return evaluate_encoder(encoder, data, cfg)

    return run
