"""Export a finished run: pick the format, rebuild the encoder, write the folder (``ssl export``)."""

from __future__ import annotations

from pathlib import Path

from ssl_core.errors import ConfigError
from ssl_core.exporters import ExportContext
from ssl_core.jsonio import loads_metrics
from ssl_core.registry import Registry, get_registry

EXPORT_DIR = "export"


def export_run(run_dir: str | Path, fmt: str, out: str | Path | None = None,
               registry: Registry | None = None) -> Path:
    """Write ``run_dir``'s trained encoder as format ``fmt`` into ``out`` (default ``RUN_DIR/export/FMT``)."""
    from ssl_core.runner import EVAL_FILE, load_run

    registry = registry or get_registry()
    run_dir = Path(run_dir)
    cfg, data, encoder = load_run(run_dir, registry)
    spec = registry.get("exporter", fmt, modality=cfg.modality)
    exporter = spec.build()
    reason = exporter.supports(encoder)
    if reason:
        raise ConfigError(f"Format '{fmt}' cannot export {run_dir} (encoder '{cfg.encoder}'): {reason}")
    results = loads_metrics((run_dir / EVAL_FILE).read_text()) if (run_dir / EVAL_FILE).exists() else {}
    target = Path(out) if out is not None else run_dir / EXPORT_DIR / fmt
    ctx = ExportContext(run_dir=run_dir, config=cfg.to_dict(), data=data, results=results)
    return exporter.export(encoder.eval(), target, ctx)


def formats_for(run_dir: str | Path, registry: Registry | None = None) -> list[tuple[str, str, str | None]]:
    """``(format, summary, None or why not)`` for every registered exporter, for this run's encoder."""
    from ssl_core.runner import load_run

    registry = registry or get_registry()
    cfg, _, encoder = load_run(run_dir, registry)
    rows = []
    for spec in registry.list("exporter", modality=cfg.modality):
        rows.append((spec.name, spec.summary, spec.build().supports(encoder)))
    return rows
