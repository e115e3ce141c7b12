"""The metric files are standard JSON: NaN and infinities are written as null (strict readers
such as JavaScript's JSON.parse refuse Python's bare NaN token) and read back as NaN, and files
written before, holding bare tokens, still read."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ssl_core.jsonio import dumps_metrics, loads_metrics


def _strict(text: str):  # type: ignore[no-untyped-def]
    return json.loads(text, parse_constant=lambda token: pytest.fail(f"non-standard JSON token {token}"))


def test_non_finite_values_are_written_as_null_and_read_back_as_nan() -> None:
    record = {"step": 4, "loss": math.nan, "grad": math.inf, "low": -math.inf, "lr": 0.5, "name": "knn",
              "table": {"trained": {"knn_top1": 0.7, "x": math.nan}}, "curve": [1.0, math.nan]}
    text = dumps_metrics(record)
    assert _strict(text) == {"step": 4, "loss": None, "grad": None, "low": None, "lr": 0.5, "name": "knn",
                             "table": {"trained": {"knn_top1": 0.7, "x": None}}, "curve": [1.0, None]}
    back = loads_metrics(text)
    assert back["step"] == 4 and back["lr"] == 0.5 and back["name"] == "knn"
    assert all(math.isnan(back[k]) for k in ("loss", "grad", "low"))
    assert back["table"]["trained"]["knn_top1"] == 0.7 and math.isnan(back["table"]["trained"]["x"])
    assert back["curve"][0] == 1.0 and math.isnan(back["curve"][1])


def test_files_written_before_with_bare_tokens_still_read() -> None:
    back = loads_metrics('{"step": 4, "loss": NaN, "x": Infinity}')
    assert math.isnan(back["loss"]) and back["x"] == math.inf


def test_eval_json_is_standard_and_the_report_reads_nan(tmp_path: Path) -> None:
    from ssl_core.report import evaluation_rows
    from ssl_core.runner import write_evaluation

    write_evaluation(tmp_path, {"trained": {"knn_top1": 0.8, "broken": math.nan},
                                "random": {"knn_top1": 0.5, "broken": 0.1}})
    text = (tmp_path / "eval.json").read_text()
    assert _strict(text)["trained"]["broken"] is None
    headers, rows, _ = evaluation_rows(loads_metrics(text))
    assert any(row[0] == "broken" for row in rows) and any(row[0] == "knn_top1" for row in rows)
