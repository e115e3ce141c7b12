"""``ssl list``: every registered component, by kind and modality, with its package."""

from __future__ import annotations

from typing import Optional

import typer

from ssl_core.cli._table import format_table


def list_components(
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help="encoder, augmenter, objective, evaluator, dataset, logger or exporter."),
    modality: Optional[str] = typer.Option(None, "--modality", "-m", help="Only components of this modality."),
) -> None:
    """List installed components and report plugins that failed to load or were disabled by a
    name clash (their components are not listed; everything else works)."""
    from ssl_core.registry import KINDS, get_registry

    registry = get_registry()
    if kind is not None and kind not in KINDS:
        from ssl_core.errors import UnknownComponentError

        raise UnknownComponentError("kind", kind, KINDS)
    if modality is not None:
        registry.check_modality(modality)
    specs = registry.list(kind, modality)
    rows = [(s.kind, s.name, s.modality, s.package, s.summary) for s in specs]
    typer.echo(format_table(["kind", "name", "modality", "package", "summary"], rows))
    if registry.failures:
        typer.echo("\nPlugins not loaded (their components are missing above; everything else works):")
        for f in registry.failures:
            reason = f.error if f.kind == "clash" else f"plugin '{f.plugin}' failed to load: {f.error}"
            typer.echo(f"  - {reason}")
        typer.echo("Set SSL_CORE_STRICT_PLUGINS=1 to make these errors fatal.")
        for f in registry.failures:
            if f.kind != "clash":  # clashes were already printed on stderr while loading
                typer.secho(f"Plugin '{f.plugin}' failed to load: {f.error}", fg=typer.colors.YELLOW, err=True)
