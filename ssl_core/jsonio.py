"""Standard JSON for the metric files a run writes (``metrics.jsonl``, ``eval.json``).

Python's :mod:`json` writes a non-finite float as the bare token ``NaN`` or ``Infinity``,
which is not JSON: JavaScript's ``JSON.parse``, Go, Rust's serde and other strict readers
refuse the whole line. Runs do produce such values: a step skipped for a non-finite loss logs
its loss, and an evaluator can return NaN. :func:`dumps_metrics` writes them as ``null``;
:func:`loads_metrics` reads ``null`` back as NaN (and still reads the bare tokens that runs
written before this change hold).
"""

from __future__ import annotations

import json
import math
from typing import Any


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def _none_as_nan(value: Any) -> Any:
    if value is None:
        return math.nan
    if isinstance(value, dict):
        return {k: _none_as_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_none_as_nan(v) for v in value]
    return value


def dumps_metrics(metrics: Any, **kwargs: Any) -> str:
    """``json.dumps`` of a metrics record or table, with NaN and infinities written as ``null``."""
    return json.dumps(_finite_or_none(metrics), allow_nan=False, **kwargs)


def loads_metrics(text: str) -> Any:
    """Parse what :func:`dumps_metrics` wrote: every ``null`` becomes NaN (a metric that had no
    finite value)."""
    return _none_as_nan(json.loads(text))
