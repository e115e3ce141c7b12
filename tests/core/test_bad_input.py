"""Bad input gets one clear message naming the file/field and the fix, and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def ssl(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-c", "from ssl_core.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def _assert_clean_error(res: subprocess.CompletedProcess, *needles: str) -> None:
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    for n in needles:
        assert n in res.stderr, (n, res.stderr)


def test_missing_data_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = ssl("run", "-m", "vision", "-o", "simclr", "--data", str(tmp_path / "nope"), "--out", str(out))
    _assert_clean_error(res, str(tmp_path / "nope"), "--data")
    assert not out.exists()  # nothing half-written


def test_empty_data_folder(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    res = ssl("run", "-m", "vision", "-o", "simclr", "--data", str(empty), "--out", str(tmp_path / "run"))
    _assert_clean_error(res, "No images found", str(empty))
    assert not (tmp_path / "run").exists()


def test_batch_larger_than_data(tmp_path: Path) -> None:
    res = ssl("run", "-o", "toy_align", "--batch-size", "4096", "--out", str(tmp_path / "run"))
    _assert_clean_error(res, "batch_size (4096) is larger than the training data (256 samples)", "--batch-size 128")
    assert not (tmp_path / "run").exists()


def test_wrong_type_in_config_file(tmp_path: Path) -> None:
    f = tmp_path / "cfg.toml"
    f.write_text('objective = "toy_align"\n[train]\nsteps = "many"\n')
    _assert_clean_error(ssl("run", "--config", str(f)), str(f), "train.steps", "integer")


def test_unknown_encoder_name() -> None:
    _assert_clean_error(ssl("run", "-o", "toy_align", "--encoder", "toy_mpl"), "Unknown encoder 'toy_mpl'",
                        "Did you mean 'toy_mlp'?")


def test_modality_mismatch() -> None:
    _assert_clean_error(ssl("run", "-m", "vision", "-o", "toy_align"), "toy objective, not a vision one")


def test_plugin_that_raises_during_registration_does_not_break_cli() -> None:
    env = {**os.environ, "SSLKIT_TEST_FLAKY": "register"}
    res = subprocess.run([sys.executable, "-c", "from ssl_core.cli import main; main()", "list"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0
    assert "toy_align" in res.stdout
    assert "Plugin 'flaky' failed to load: RuntimeError: flaky plugin: simulated bug during registration" in res.stderr
