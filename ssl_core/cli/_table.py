"""Plain-text tables for the CLI."""

from __future__ import annotations

from typing import Sequence


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns separated by two spaces, with a rule under the header."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    """Rows = metric names, columns = encoders (trained, random), plus the difference."""
    columns = list(metrics)
    names: list[str] = []
    for values in metrics.values():
        names += [n for n in values if n not in names]
    headers = ["metric"] + columns + (["trained - random"] if {"trained", "random"} <= set(columns) else [])
    rows = []
    for n in names:
        row: list[object] = [n] + [metrics[c].get(n, "-") for c in columns]
        if len(headers) > len(columns) + 1:
            t, r = metrics["trained"].get(n), metrics["random"].get(n)
            row.append(f"{t - r:+.4f}" if isinstance(t, float) and isinstance(r, float) else "-")
        rows.append(row)
    return format_table(headers, rows)
