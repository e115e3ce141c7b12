"""``ssl info NAME``: what a component is, who ships it, what it accepts, and its defaults.

Works for every kind (objective, encoder, augmenter, dataset, evaluator) without importing the
component's module: the docstring and keyword arguments are read from its source file.
"""

from __future__ import annotations

from typing import Optional

import typer
import yaml


def info(
    name: str = typer.Argument(..., help="Component name, e.g. simclr, resnet_small, digits, knn (see `ssl list`)."),
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help="encoder, augmenter, objective, evaluator, dataset, "
                                       "logger or exporter (only needed when several kinds share the name)."),
) -> None:
    """Show a component's summary, plugin, package, documentation and settings.

    For an objective, also the fully resolved default config of `ssl run --objective NAME`.
    """
    from ssl_core.errors import UnknownComponentError
    from ssl_core.registry import KINDS, get_registry

    registry = get_registry()
    if kind is not None and kind not in KINDS:
        raise UnknownComponentError("kind", kind, KINDS)
    specs = [s for s in registry.list(kind) if s.name == name]
    if not specs:
        if kind is not None:
            registry.get(kind, name)  # raises with a close match
        raise UnknownComponentError("component", name, {s.name for s in registry.list()},
                                    "Run `ssl list` to see every installed component.")
    for i, spec in enumerate(specs):
        if i:
            typer.echo("\n" + "-" * 60 + "\n")
        _show(spec, registry)


def _show(spec, registry) -> None:  # type: ignore[no-untyped-def]
    from ssl_core.registry import describe_factory

    typer.echo(f"{spec.name} ({spec.kind}, modality {spec.modality}) from {spec.package} [plugin {spec.plugin}]")
    typer.echo(spec.summary)
    doc, params = describe_factory(spec)
    if doc:
        typer.echo("\n" + doc)
    typer.echo(f"\nFactory: {spec.where}")
    settable = {k: v for k, v in params.items() if k not in ("encoder", "augmenter", "path", "run_dir")}
    if settable:
        where = {"encoder": "encoder_kwargs", "augmenter": "augmenter_kwargs", "objective": "objective_kwargs",
                 "dataset": "dataset_kwargs", "evaluator": f"eval_kwargs.{spec.name}",
                 "logger": f"logger_kwargs.{spec.name}"}.get(spec.kind)
        typer.echo(f"Settings ({where}.NAME=VALUE):" if where else "Settings:")
        for k, v in settable.items():
            typer.echo(f"  {k}" + ("" if v is None else f" = {v}"))
    if spec.kind == "dataset":
        if spec.builtin:
            typer.echo("Built in: works offline without --data.")
            if spec.reader:
                typer.echo(f"With --data PATH, read by the first of: {', '.join(spec.reader)} that accepts the path.")
        else:
            typer.echo(f"Reads --data PATH: {spec.accepts.describe() if spec.accepts else 'not declared'}.")
    if spec.kind == "objective":
        from ssl_core.resolve import resolve_config

        cfg = resolve_config(spec.name, registry=registry, check_kwargs=False)  # imports nothing
        typer.echo("\nDefault config (override with --config FILE or --set key=value):\n")
        typer.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
