"""``ssl report RUN_DIR`` and ``ssl compare RUN_DIR...``."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Optional

import typer

from ssl_core.cli._table import format_table


def report(run_dir: Path = typer.Argument(..., help="A directory written by `ssl run` or Experiment.fit().")) -> None:
    """Write RUN_DIR/report/index.html: loss (per objective for an Experiment), LR, throughput,
    probe, health and objective-specific plots, the evaluation table (trained - random, with
    metrics where training made things worse flagged), and the pictures the run wrote
    (nearest-neighbour grids, reconstructions)."""
    from ssl_core.report import write_report
    from ssl_core.streaming import never_run_pipes

    with never_run_pipes():  # a report reads the run's files; it never runs a shard command
        typer.echo(f"Report: {write_report(run_dir)}")


def compare(
    run_dirs: list[Path] = typer.Argument(..., help="Two or more run directories (ssl run or Experiment)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the comparison page (default: runs/compare-<time>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the comparison already in --out."),
) -> None:
    """Put runs side by side: a table (a column per run) of settings, speed and evaluation, plus
    one figure per logged metric with every run overlaid, grouped (loss, probe, health, ...).

    Each comparison gets a new folder; an existing comparison in --out is refused unless
    --overwrite is given."""
    from ssl_core.errors import RunDirError
    from ssl_core.report import comparison_table, write_comparison

    if out is None:
        out = Path("runs") / f"compare-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise RunDirError(f"{out} already holds a comparison (or other files). Replace it with --overwrite, "
                          "or choose another --out.")
    rows, index = write_comparison(run_dirs, out)
    typer.echo(format_table(*comparison_table(rows)))  # a column per run: fits a terminal
    typer.echo(f"Comparison page: {index}")
