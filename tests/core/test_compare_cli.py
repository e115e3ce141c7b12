"""`ssl compare` through the command-line entry point (in-process), and SSL_CORE_TRACE_PLUGINS.

The run directories are written by hand with known metrics, so the table's numbers can be
checked exactly: the final loss is the last logged one, the speed the mean of the logged
speeds, the evaluation columns those of the trained encoder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from ssl_core.cli import main


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``ssl ARGS`` in this process: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["ssl", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _fake_run(root: Path, name: str, objective: str, losses: list[float], speeds: list[float], knn: float) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"objective": objective, "encoder": "toy_mlp", "modality": "toy"}))
    lines = [{"step": 10 * (i + 1), "loss": loss, "samples_per_s": speed, "probe/knn_top1": knn * (i + 1) / len(losses)}
             for i, (loss, speed) in enumerate(zip(losses, speeds))]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 99, "lo')  # cut short
    (run / "eval.json").write_text(json.dumps({"trained": {"knn_top1": knn}, "random": {"knn_top1": 0.25}}))
    return run


def test_compare_prints_a_table_of_the_runs_and_writes_the_page(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    a = _fake_run(tmp_path, "run_a", "simclr", [2.0, 1.5, 1.25], [100.0, 200.0, 300.0], 0.875)
    b = _fake_run(tmp_path, "run_b", "byol", [0.5, 0.375], [40.0, 60.0], 0.625)
    code, out, err = run_cli(monkeypatch, capsys, "compare", str(a), str(b), "--out", str(tmp_path / "cmp"))
    assert code == 0, err
    # a column per run and a row per field, so many metrics still fit a terminal
    header = out.splitlines()[0].split()
    assert header == ["run_a", "run_b"]
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:] if line.strip()}
    col = {name: header.index(name) for name in ("run_a", "run_b")}
    assert rows["objective"][col["run_a"]] == "simclr" and rows["objective"][col["run_b"]] == "byol"
    assert rows["steps"] == ["30", "20"]
    assert float(rows["final_loss"][col["run_a"]]) == pytest.approx(1.25)  # the last record, not the cut line
    assert float(rows["samples_per_s"][col["run_a"]]) == pytest.approx(200.0)  # mean of the logged speeds
    assert float(rows["knn_top1"][col["run_b"]]) == pytest.approx(0.625)  # the trained encoder's, not random's
    index = tmp_path / "cmp" / "index.html"
    assert f"Comparison page: {index}" in out
    page = index.read_text()
    assert page.count("<tr>") == 7 and "<th>run_a</th><th>run_b</th>" in page  # header + 6 fields
    for png in ("loss.png", "probe_knn_top1.png", "samples_per_s.png"):  # one figure per metric
        assert f'src="{png}"' in page and (tmp_path / "cmp" / png).read_bytes().startswith(b"\x89PNG")


def test_compare_of_a_directory_that_is_not_a_run_says_which_file_is_missing(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    a = _fake_run(tmp_path, "run_a", "simclr", [1.0], [10.0], 0.5)
    empty = tmp_path / "not_a_run"
    empty.mkdir()
    code, _, err = run_cli(monkeypatch, capsys, "compare", str(a), str(empty), "--out", str(tmp_path / "cmp"))
    assert code == 2
    assert str(empty / "metrics.jsonl") in err and "Traceback" not in err


def test_trace_plugins_prints_each_plugin_and_what_it_registered(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from ssl_core.registry import Registry

    monkeypatch.delenv("SSL_CORE_TRACE_PLUGINS", raising=False)
    Registry()
    assert "[ssl_core]" not in capsys.readouterr().err  # quiet unless asked
    monkeypatch.setenv("SSL_CORE_TRACE_PLUGINS", "1")
    reg = Registry()
    err = capsys.readouterr().err
    assert "loading entry point 'toy' = sslkit_testplugins.toy" in err
    assert "plugin 'toy' registered objective 'toy_align' (toy)" in err
    assert "registered evaluator 'knn' (any)" in err
    # every component the registry holds was announced when it was registered
    for spec in reg.list():
        assert f"plugin '{spec.plugin}' registered {spec.kind} '{spec.name}' ({spec.modality})" in err
