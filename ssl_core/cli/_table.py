"""Plain-text tables and evaluation summaries for the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence


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
    """Rows = metric names, columns = encoders (trained, random), plus trained - random and a
    verdict that flags a metric where the trained encoder is worse than the random one."""
    from ssl_core.report import evaluation_rows

    headers, rows, _ = evaluation_rows(metrics)
    return format_table(headers, rows)


def report_failures(run_dir: Path, failures: Mapping[str, Mapping[str, str]]) -> None:
    """Tell the user, on stderr, which evaluators raised (the other metrics were written)."""
    import typer

    for encoder, errors in failures.items():
        for name, error in errors.items():
            typer.secho(f"Evaluator '{name}' failed on the {encoder} encoder: {error.splitlines()[0]}",
                        fg=typer.colors.YELLOW, err=True)
    if any(failures.values()):
        typer.secho(f"The other metrics are in {Path(run_dir) / 'eval.json'}; tracebacks in "
                    f"{Path(run_dir) / 'eval_errors.json'}.", fg=typer.colors.YELLOW, err=True)
