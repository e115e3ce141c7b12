"""Experiment loggers: where a run's metrics, results, settings and pictures go.

A logger is a plugin component like an encoder: a factory registered through the
``register_loggers`` hook, called as ``factory(run_dir=Path, **logger_kwargs[name])`` on rank 0
only. The core registers four (``ssl_core.loggers.plugin``): ``jsonl`` (``metrics.jsonl``, always
on by default; ``ssl report`` reads it), ``tensorboard``, ``mlflow`` and ``wandb`` (offline).
The trackers are optional extras and are imported only when a run asks for them.

What a run sends, in order: :meth:`Logger.log_params` (the resolved config, flattened),
:meth:`Logger.resume` when continuing from a checkpoint, :meth:`Logger.log_metrics` at every
log step (loss, LR, ``health/*``, ``probe/*``, ...), then after training
:meth:`Logger.log_results` (``eval.json``'s numbers), :meth:`Logger.log_image` for every
picture written into the run directory and :meth:`Logger.log_artifact` for ``eval.json``,
and finally :meth:`Logger.close`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping


class Logger:
    """Receives a run's records. Every method is optional: the defaults do nothing."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        """The resolved run config as flat ``{"train.lr": 0.001, ...}`` (scalars and short lists)."""

    def resume(self, step: int) -> None:
        """The run continues from a checkpoint at ``step``: records after it will be sent again."""

    def log_metrics(self, record: Mapping[str, Any]) -> None:
        """One training record: ``step`` and ``epoch`` plus scalars (``loss``, ``health/...``)."""

    def log_results(self, results: Mapping[str, Mapping[str, float]], step: int) -> None:
        """Evaluation after training: ``{"trained": {...}, "random": {...}}``, at the final step."""

    def log_image(self, name: str, path: Path, step: int) -> None:
        """A picture the run wrote (PNG), under a stable ``name`` such as ``nn_grid``."""

    def log_artifact(self, path: Path) -> None:
        """A file of the run worth keeping with the tracker's record (``eval.json``)."""

    def close(self, status: str = "finished") -> None:
        """Flush and release; ``status`` is ``finished``, ``failed`` or ``interrupted``."""


class LoggerGroup(Logger):
    """Several loggers behind one :class:`Logger`; what the trainer and runner talk to."""

    def __init__(self, loggers: Iterable[Logger] = ()) -> None:
        self.loggers = list(loggers)

    def log_params(self, params: Mapping[str, Any]) -> None:
        for lg in self.loggers:
            lg.log_params(params)

    def resume(self, step: int) -> None:
        for lg in self.loggers:
            lg.resume(step)

    def log_metrics(self, record: Mapping[str, Any]) -> None:
        for lg in self.loggers:
            lg.log_metrics(record)

    def log_results(self, results: Mapping[str, Mapping[str, float]], step: int) -> None:
        for lg in self.loggers:
            lg.log_results(results, step)

    def log_image(self, name: str, path: Path, step: int) -> None:
        for lg in self.loggers:
            lg.log_image(name, path, step)

    def log_artifact(self, path: Path) -> None:
        for lg in self.loggers:
            lg.log_artifact(path)

    def close(self, status: str = "finished") -> None:
        errors = []
        for lg in self.loggers:
            try:
                lg.close(status)
            except Exception as exc:  # one tracker failing to close must not keep the others open
                errors.append(exc)
        self.loggers = []
        if errors:
            raise errors[0]


def flatten_config(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``; lists and ``None`` kept as values."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_config(value, name + "."))
        else:
            out[name] = value
    return out


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries of a training record, without the ``step`` counter."""
    return {k: float(v) for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


__all__ = ["Logger", "LoggerGroup", "flatten_config", "scalars"]
