"""`ssl export --format safetensors` for any encoder, and `ssl run --init` from weights on disk."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from ssl_core.cli.app import app
from ssl_core.errors import ConfigError
from ssl_core.exporters.native import load_exported_encoder
from ssl_core.exporters.run import export_run
from ssl_core.init_weights import init_encoder, read_state
from ssl_core.runner import load_run, resolve_config, run_experiment

TINY = {"steps": 4, "epochs": None, "progress": False, "checkpoint_every": 0, "health_every": 0}


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "run"
    cfg = resolve_config("toy_align", overrides={"out": str(out), "train": TINY})
    return run_experiment(cfg).run_dir


def test_safetensors_export_reloads_the_same_encoder(toy_run, tmp_path) -> None:
    out = export_run(toy_run, "safetensors", tmp_path / "st")
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "config.json", "README.md"}
    card = (out / "README.md").read_text()
    assert "toy_align" in card and "knn_top1" in card and "| metric | trained | random |" in card
    _, data, encoder = load_run(toy_run)
    loaded = load_exported_encoder(out)
    x = torch.randn(5, 8)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), encoder.eval()(x))


def test_run_starts_from_init_weights(toy_run, tmp_path) -> None:
    out = tmp_path / "warm"
    res = CliRunner().invoke(app, ["run", "-o", "toy_align", "--steps", "1", "--lr", "1e-9", "--no-eval",
                                   "--init", str(toy_run / "encoder.pt"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "tensors loaded (sslkit key names)" in res.output
    start = read_state(toy_run / "encoder.pt")[0]
    after = read_state(out / "encoder.pt")[0]  # one step at lr 1e-9 barely moves the loaded weights
    for k, v in start.items():
        torch.testing.assert_close(after[k], v, atol=1e-6, rtol=0)
    fresh = resolve_config("toy_align", overrides={"out": str(tmp_path / "cold"), "train": {**TINY, "steps": 1}})
    assert fresh.init is None


def test_partial_state_is_refused_unless_allowed(toy_run, tmp_path, registry) -> None:
    cfg, data, encoder = load_run(toy_run)
    state = read_state(toy_run / "encoder.pt")[0]
    dropped = sorted(state)[0]
    partial = {k: v for k, v in state.items() if k != dropped}
    partial["extra.weight"] = torch.zeros(2)
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(ConfigError) as err:
        init_encoder(encoder, tmp_path / "partial.pt", registry)
    msg = str(err.value)
    assert f"missing from the file, left as initialised: {dropped}" in msg and "extra.weight" in msg
    assert "--init-partial" in msg
    report = init_encoder(encoder, tmp_path / "partial.pt", registry, allow_partial=True)
    assert report.missing == [dropped] and report.unexpected == ["extra.weight"] and report.loaded == len(state) - 1
