"""The example third-party plugin installs, shows in `ssl list`, and trains through `ssl run`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def ssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from ssl_core.cli import main; main()", *args],
                          capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"}, timeout=600)


def test_example_plugin_is_listed_with_its_package() -> None:
    out = ssl("list", "--kind", "objective").stdout
    line = next(l for l in out.splitlines() if l.split()[1:2] == ["vicreg"])
    assert "sslkit-vicreg" in line and "vision" in line


def test_example_plugin_trains_via_ssl_run(tmp_path: Path) -> None:
    res = ssl("run", "-m", "vision", "-o", "vicreg", "--steps", "4", "--batch-size", "32", "--out", str(tmp_path),
              "--set", "encoder_kwargs.widths=[8,8,8,8]", "--set", "objective_kwargs.expander_dim=32",
              "--set", "evaluators=[knn]")
    assert res.returncode == 0, res.stderr
    metrics = json.loads((tmp_path / "eval.json").read_text())
    assert 0.0 <= metrics["trained"]["knn_top1"] <= 1.0
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert {"invariance", "variance", "covariance"} <= set(json.loads(lines[-1]))
