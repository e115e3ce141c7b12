"""``ssl report RUN_DIR`` and ``ssl compare RUN_DIR...``."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Optional

import typer

from ssl_core.cli._table import format_table


def report(run_dir: Path = typer.Argument(..., help="A directory written by `ssl run`.")) -> None:
    """Write RUN_DIR/report/index.html: loss, LR, throughput, probe and health plots, the
    evaluation table, and the pictures the run wrote (nearest-neighbour grids, reconstructions)."""
    from ssl_core.report import write_report
    from ssl_core.streaming import never_run_pipes

    with never_run_pipes():  # a report reads the run's files; it never runs a shard command
        typer.echo(f"Report: {write_report(run_dir)}")


def compare(
    run_dirs: list[Path] = typer.Argument(..., help="Two or more run directories."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the comparison page (default: runs/compare-<time>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the comparison already in --out."),
) -> None:
    """Put runs side by side: a table of settings, speed and evaluation, plus overlaid curves.

    Each comparison gets a new folder; an existing comparison in --out is refused unless
    --overwrite is given."""
    from ssl_core.errors import RunDirError
    from ssl_core.report import write_comparison

    if out is None:
        out = Path("runs") / f"compare-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise RunDirError(f"{out} already holds a comparison (or other files). Replace it with --overwrite, "
                          "or choose another --out.")
    rows, index = write_comparison(run_dirs, out)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    typer.echo(format_table(keys, [[r.get(k, "-") for k in keys] for r in rows]))
    typer.echo(f"Comparison page: {index}")
