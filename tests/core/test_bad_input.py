"""Bad input gets one clear message naming the file/field and the fix, and leaves nothing behind.

Each case runs ``ssl ...`` through the console entry point in-process (the ``ssl_cli`` fixture):
the message and exit status are the same as from a fresh process, without its start-up time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import ssl_core.registry


def _assert_clean_error(res, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    for n in needles:
        assert n in res.stderr, (n, res.stderr)


def test_missing_data_folder(tmp_path: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    res = ssl_cli("run", "-m", "vision", "-o", "simclr", "--data", str(tmp_path / "nope"), "--out", str(out))
    _assert_clean_error(res, str(tmp_path / "nope"), "--data")
    assert not out.exists()  # nothing half-written


def test_empty_data_folder(tmp_path: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    empty = tmp_path / "empty"
    empty.mkdir()
    res = ssl_cli("run", "-m", "vision", "-o", "simclr", "--data", str(empty), "--out", str(tmp_path / "run"))
    _assert_clean_error(res, "No images found", str(empty))
    assert not (tmp_path / "run").exists()


def test_batch_larger_than_data(tmp_path: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    res = ssl_cli("run", "-o", "toy_align", "--batch-size", "4096", "--out", str(tmp_path / "run"))
    _assert_clean_error(res, "batch_size (4096) is larger than the training data (256 samples)", "--batch-size 128")
    assert not (tmp_path / "run").exists()


def test_wrong_type_in_config_file(tmp_path: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "cfg.toml"
    f.write_text('objective = "toy_align"\n[train]\nsteps = "many"\n')
    _assert_clean_error(ssl_cli("run", "--config", str(f)), str(f), "train.steps", "integer")


def test_unknown_encoder_name(ssl_cli) -> None:  # type: ignore[no-untyped-def]
    _assert_clean_error(ssl_cli("run", "-o", "toy_align", "--encoder", "toy_mpl"), "Unknown encoder 'toy_mpl'",
                        "Did you mean 'toy_mlp'?")


def test_modality_mismatch(ssl_cli) -> None:  # type: ignore[no-untyped-def]
    _assert_clean_error(ssl_cli("run", "-m", "vision", "-o", "toy_align"), "toy objective, not a vision one")


def test_plugin_that_raises_during_registration_does_not_break_cli(ssl_cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(ssl_core.registry, "_GLOBAL", None)  # a registry built for this call only
    res = ssl_cli("list", env={"SSLKIT_TEST_FLAKY": "register"})
    assert res.returncode == 0
    assert "toy_align" in res.stdout
    assert "Plugin 'flaky' failed to load: RuntimeError: flaky plugin: simulated bug during registration" in res.stderr
