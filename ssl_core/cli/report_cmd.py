"""``ssl report RUN_DIR`` and ``ssl compare RUN_DIR...``."""

from __future__ import annotations

from pathlib import Path

import typer

from ssl_core.cli._table import format_table


def report(run_dir: Path = typer.Argument(..., help="A directory written by `ssl run` or Experiment.fit().")) -> None:
    """Write RUN_DIR/report/index.html: loss (per objective for an Experiment), LR, throughput,
    probe, health and objective-specific plots, the evaluation table (trained - random, with
    metrics where training made things worse flagged), and the pictures the run wrote
    (nearest-neighbour grids, reconstructions)."""
    from ssl_core.report import write_report

    typer.echo(f"Report: {write_report(run_dir)}")


def compare(
    run_dirs: list[Path] = typer.Argument(..., help="Two or more run directories (ssl run or Experiment)."),
    out: Path = typer.Option(Path("runs/compare"), "--out", help="Folder for the comparison page."),
) -> None:
    """Put runs side by side: a table (a column per run) of settings, speed and evaluation, plus
    one figure per logged metric with every run overlaid, grouped (loss, probe, health, ...)."""
    from ssl_core.report import write_comparison

    from ssl_core.report import comparison_table

    rows, index = write_comparison(run_dirs, out)
    typer.echo(format_table(*comparison_table(rows)))  # a column per run: fits a terminal
    typer.echo(f"Comparison page: {index}")
