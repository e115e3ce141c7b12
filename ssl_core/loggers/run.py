"""Opening a run's loggers from its config, and sending them what the run wrote after training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ssl_core.errors import ConfigError
from ssl_core.loggers import Logger, LoggerGroup, flatten_config

REPORT_DIR = "report"  # `ssl report`'s own plots are regenerated on demand, not logged


def open_loggers(cfg: Any, run_dir: Path, registry: Any) -> LoggerGroup:
    """Build every logger named in ``cfg.loggers`` (rank 0 only) and send them the config.

    A logger whose package is missing fails here, before training starts, with the pip extra
    to install; the loggers already opened are closed again.
    """
    group = LoggerGroup()
    names = list(dict.fromkeys(cfg.loggers))  # once each, in order
    unknown = set(cfg.logger_kwargs) - set(names)
    if unknown:
        raise ConfigError(f"logger_kwargs has settings for {sorted(unknown)}, which are not in loggers {names}. "
                          f"Add them with --logger NAME or drop the settings.")
    try:
        for name in names:
            spec = registry.get("logger", name)
            logger = spec.build(run_dir=run_dir, **cfg.logger_kwargs.get(name, {}))
            if not isinstance(logger, Logger):
                raise ConfigError(f"Logger '{name}' (plugin {spec.plugin}) returned {type(logger).__name__}, "
                                  "not an ssl_core.loggers.Logger.")
            group.loggers.append(logger)
        group.log_params(flatten_config(cfg.to_dict()))
    except BaseException:
        group.close("failed")
        raise
    return group


def log_run_outputs(group: Logger, run_dir: Path, results: dict[str, dict[str, float]], step: int) -> None:
    """After training: evaluation results, every picture the run wrote, and ``eval.json``."""
    if results:
        group.log_results(results, step)
    for path in sorted(run_dir.rglob("*.png")):
        rel = path.relative_to(run_dir)
        if rel.parts[0] in (REPORT_DIR, "tensorboard", "wandb", "export"):
            continue
        group.log_image(rel.with_suffix("").as_posix().replace("/", "_"), path, step)
    if (run_dir / "eval.json").exists():
        group.log_artifact(run_dir / "eval.json")
