"""``ssl info OBJECTIVE``: what an objective needs and the defaults it runs with."""

from __future__ import annotations

import typer
import yaml


def info(objective: str = typer.Argument(..., help="Objective name, e.g. simclr.")) -> None:
    """Show an objective's summary, plugin, and fully resolved default config."""
    from ssl_core.registry import get_registry
    from ssl_core.runner import resolve_config

    registry = get_registry()
    spec = registry.get("objective", objective)
    cfg = resolve_config(objective, registry=registry)
    typer.echo(f"{spec.name} ({spec.modality}) from {spec.package} [plugin {spec.plugin}]")
    typer.echo(spec.summary)
    doc = (spec.factory.__doc__ or "").strip()
    if doc:
        typer.echo("\n" + doc)
    typer.echo("\nDefault config (override with --config FILE or --set key=value):\n")
    typer.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
