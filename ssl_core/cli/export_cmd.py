"""``ssl export RUN --format NAME``: the run's encoder in another library's format, with a model card."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ssl_core.cli._table import format_table


def export(
    run_dir: Path = typer.Argument(..., help="A directory written by `ssl run`."),
    format_: Optional[str] = typer.Option(None, "--format", "-f", help="Export format (omit to list the formats that fit this run)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder to write (default RUN_DIR/export/FORMAT)."),
) -> None:
    """Export RUN_DIR's encoder for torchvision, timm, torchaudio, open_clip or as safetensors.

    The folder holds the weights (safetensors), config.json (how to build the target model and
    preprocess inputs) and README.md, a model card with the training config, data and probe
    results. Without --format, list every format and whether it can hold this run's encoder.
    """
    from ssl_core.exporters.run import export_run, formats_for

    if format_ is None:
        rows = [(name, "yes" if why is None else "no: " + why, summary) for name, summary, why in formats_for(run_dir)]
        typer.echo(format_table(["format", "fits this run", "summary"], rows))
        return
    path = export_run(run_dir, format_, out)
    typer.echo(f"Exported {run_dir} as {format_} to {path}")
