"""benchmarks/bench_table.py end to end at smoke-test size: one method, JSON + Markdown + the docs
page between its markers, rows merged across piecewise runs, overrides marked non-default.

The script runs in this process (``runpy``, as ``__main__`` with its own ``sys.argv``): a
subprocess would add only the start-up of Python and torch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_table.py"
TINY = ["--set", "train.epochs=1", "--set", "train.batch_size=32", "--set", "dataset=digits",
        "--set", "encoder_kwargs.widths=[8,8,8,8]", "--set", "evaluators=[knn,linear_probe,health]"]


def _run(run_script, tmp_path: Path, *args: str) -> None:  # type: ignore[no-untyped-def]
    res = run_script(SCRIPT, "--threads", "1", "--json", str(tmp_path / "t.json"), "--md", str(tmp_path / "t.md"), *args)
    assert res.code in (None, 0), (res.code, res.stderr[-3000:])


def test_table_rows_probes_and_docs(tmp_path: Path, run_script) -> None:  # type: ignore[no-untyped-def]
    page = tmp_path / "page.md"
    page.write_text("# B\n\nintro\n\n<!-- bench_table:begin -->\nold\n<!-- bench_table:end -->\n\noutro\n")
    readme = tmp_path / "README.md"
    readme.write_text("# P\n\n<!-- headline:begin -->\n<!-- headline:end -->\n\nrest\n")
    _run(run_script, tmp_path, "--only", "simclr", *TINY, "--docs", str(page), "--readme", str(readme))
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert [(r["method"], r["implementation"], r["dataset"]) for r in rows] == [("simclr", "sslkit", "digits")]
    probes = {p["probe"]: p for p in rows[0]["probes"]}
    assert set(probes) == {"knn_top1", "linear_top1"}  # health statistics are not probes
    for p in probes.values():
        assert p["delta"] == pytest.approx(p["trained"] - p["random"]) and p["ahead"] == (p["trained"] > p["random"])
    assert rows[0]["epochs"] == 1 and rows[0]["steps"] > 0 and rows[0]["samples_per_s"] > 0
    assert 0 < rows[0]["cpu_s"] < 10 * rows[0]["total_s"]  # CPU seconds of this process, at most a few per wall s
    md = (tmp_path / "t.md").read_text()
    assert "| simclr | sslkit (non-default, train.epochs=1" in md and "knn_top1" in md
    text = page.read_text()
    assert "old" not in text and "intro" in text and "outro" in text and "| simclr |" in text
    assert "python benchmarks/bench_table.py" in text  # the command that wrote it
    head = readme.read_text()
    assert "rest" in head and "kNN top-1, trained / random" in head and "zero-shot" not in head  # no CLIP row
    knn = probes["knn_top1"]
    assert f"| simclr (non-default) | digits | 1 ({rows[0]['steps']}) |" in head
    assert f"{knn['trained']:.3f} / {knn['random']:.3f}" in head

    # a second, piecewise run adds its rows and keeps the earlier ones
    _run(run_script, tmp_path, "--only", "byol", *TINY)
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["byol", "simclr"]  # by modality, then name


def test_a_run_stopped_after_a_row_keeps_that_row(tmp_path: Path, run_script, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import ssl_core.runner

    real, started = ssl_core.runner.run_experiment, []

    def stops_during_the_second(cfg, *a, **kw):  # type: ignore[no-untyped-def]
        started.append(cfg.objective)
        if len(started) == 2:
            raise RuntimeError("stopped during the second method")
        return real(cfg, *a, **kw)

    monkeypatch.setattr(ssl_core.runner, "run_experiment", stops_during_the_second)  # the script imports it from here
    with pytest.raises(RuntimeError, match="second method"):
        run_script(SCRIPT, "--threads", "1", "--json", str(tmp_path / "t.json"), "--md", str(tmp_path / "t.md"),
                   "--only", "simclr,byol", *TINY)
    assert sorted(started) == ["byol", "simclr"]
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert [r["method"] for r in rows] == started[:1]  # the finished row was written before the second began
    assert f"| {started[0]} |" in (tmp_path / "t.md").read_text()


def _row(method: str, impl: str, knn: float) -> dict:
    return {"method": method, "implementation": impl, "modality": "vision", "dataset": "fashion_mnist", "epochs": 2,
            "steps": 78, "total_s": 60.0, "cpu_s": 100.0, "samples_per_s": 90.0, "overrides": {},
            "probes": [{"probe": "knn_top1", "trained": knn, "random": 0.5, "delta": knn - 0.5, "ahead": knn > 0.5}]}


def test_tables_run_in_parallel_are_merged_without_training(tmp_path: Path, run_script) -> None:  # type: ignore[no-untyped-def]
    mine, theirs = tmp_path / "t.json", tmp_path / "other.json"
    mine.write_text(json.dumps({"rows": [{**_row("simclr", "sslkit", 0.7), "command": "run A"},
                                         {**_row("dino", "sslkit", 0.6), "command": "run A"}]}))
    theirs.write_text(json.dumps({"rows": [{**_row("simclr", "sslkit", 0.8), "command": "run B"},
                                           {**_row("simclr", "lightly 1.6.0", 0.75), "command": "run B"}]}))
    page = tmp_path / "page.md"
    page.write_text("<!-- bench_table:begin -->\n<!-- bench_table:end -->\n")
    res = run_script(SCRIPT, "--json", str(mine), "--md", str(tmp_path / "t.md"), "--merge", str(theirs),
                     "--docs", str(page))
    assert res.code in (None, 0), res.stderr[-2000:]
    assert "== " not in res.stdout  # nothing trained
    rows = {(r["method"], r["implementation"]): r for r in json.loads(mine.read_text())["rows"]}
    assert set(rows) == {("simclr", "sslkit"), ("simclr", "lightly 1.6.0"), ("dino", "sslkit")}
    assert rows[("simclr", "sslkit")]["probes"][0]["trained"] == 0.8  # the merged file's newer row wins
    assert "| simclr | lightly 1.6.0 |" in (tmp_path / "t.md").read_text()
    # the page says the rows come from two runs and where their commands are, not the merge's own
    # command line (which names the other run's file)
    text = page.read_text()
    assert "Rows from 2 runs" in text and "`t.json`" in text and "other.json" not in text


def test_unknown_method_is_refused(tmp_path: Path, run_script) -> None:  # type: ignore[no-untyped-def]
    code = run_script(SCRIPT, "--only", "simclrr", "--json", str(tmp_path / "t.json")).code
    assert code not in (None, 0) and "Unknown objective" in str(code)  # SystemExit(message): printed, exit 1
    assert not (tmp_path / "t.json").exists()
