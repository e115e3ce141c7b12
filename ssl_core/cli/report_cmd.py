"""``ssl report RUN_DIR`` and ``ssl compare RUN_DIR...``."""

from __future__ import annotations

from pathlib import Path

import typer

from ssl_core.cli._table import format_table


def report(run_dir: Path = typer.Argument(..., help="A directory written by `ssl run`.")) -> None:
    """Write RUN_DIR/report/index.html: loss, LR, throughput, probe and health plots, the
    evaluation table, and the pictures the run wrote (nearest-neighbour grids, reconstructions)."""
    from ssl_core.report import write_report

    typer.echo(f"Report: {write_report(run_dir)}")


def compare(
    run_dirs: list[Path] = typer.Argument(..., help="Two or more run directories."),
    out: Path = typer.Option(Path("runs/compare"), "--out", help="Folder for the comparison page."),
) -> None:
    """Put runs side by side: a table of settings, speed and evaluation, plus overlaid curves."""
    from ssl_core.report import write_comparison

    rows, index = write_comparison(run_dirs, out)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    typer.echo(format_table(keys, [[r.get(k, "-") for k in keys] for r in rows]))
    typer.echo(f"Comparison page: {index}")
