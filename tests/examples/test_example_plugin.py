"""The example third-party plugin installs, shows in `ssl list`, and trains through `ssl run`
(the console entry point, in-process)."""

from __future__ import annotations

import json
from pathlib import Path


def test_example_plugin_is_listed_with_its_package(ssl_cli) -> None:  # type: ignore[no-untyped-def]
    out = ssl_cli("list", "--kind", "objective").stdout
    line = next(l for l in out.splitlines() if l.split()[1:2] == ["vicreg"])
    assert "sslkit-vicreg" in line and "vision" in line


def test_example_plugin_trains_via_ssl_run(tmp_path: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    res = ssl_cli("run", "-m", "vision", "-o", "vicreg", "--steps", "4", "--batch-size", "32", "--out", str(tmp_path),
                  "--set", "encoder_kwargs.widths=[8,8,8,8]", "--set", "objective_kwargs.expander_dim=32",
                  "--set", "evaluators=[knn]")
    assert res.returncode == 0, res.stderr
    metrics = json.loads((tmp_path / "eval.json").read_text())
    # 10 digit classes, chance 0.1: 4 steps of VICReg reach 0.52 (a random encoder 0.45)
    assert metrics["trained"]["knn_top1"] > 0.4, metrics
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert {"invariance", "variance", "covariance"} <= set(json.loads(lines[-1]))
