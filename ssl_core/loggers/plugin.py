"""The core's own logger plugin: registers the built-in loggers exactly as a third party would.

Importing this module imports no tracking library; each logger imports its own on construction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ssl_core.hookspecs import hookimpl
from ssl_core.loggers import Logger


def jsonl(run_dir: Path, **kwargs: Any) -> Logger:
    """metrics.jsonl in the run directory (read by `ssl report` and `ssl compare`)."""
    from ssl_core.loggers.jsonl import JSONLLogger

    return JSONLLogger(run_dir, **kwargs)


def tensorboard(run_dir: Path, **kwargs: Any) -> Logger:
    """TensorBoard event files in RUN_DIR/tensorboard (extra: sslkit[tensorboard])."""
    from ssl_core.loggers.tensorboard import TensorBoardLogger

    return TensorBoardLogger(run_dir, **kwargs)


def mlflow(run_dir: Path, **kwargs: Any) -> Logger:
    """A run in a local MLflow store, sqlite:///<runs>/mlflow.db by default (extra: sslkit[mlflow])."""
    from ssl_core.loggers.mlflow import MLflowLogger

    return MLflowLogger(run_dir, **kwargs)


def wandb(run_dir: Path, **kwargs: Any) -> Logger:
    """A Weights & Biases run, offline by default, in RUN_DIR/wandb (extra: sslkit[wandb])."""
    from ssl_core.loggers.wandb import WandbLogger

    return WandbLogger(run_dir, **kwargs)


@hookimpl
def register_loggers(register):  # type: ignore[no-untyped-def]
    """Register the jsonl, tensorboard, mlflow and wandb loggers."""
    register("jsonl", jsonl, summary="One JSON line per log step in RUN_DIR/metrics.jsonl (default; `ssl report` reads it)")
    register("tensorboard", tensorboard, summary="TensorBoard events in RUN_DIR/tensorboard: scalars, pictures, config "
             "(pip install 'sslkit[tensorboard]')")
    register("mlflow", mlflow, summary="MLflow run in a local store (sqlite:///runs/mlflow.db): params, metrics, "
             "eval.json and pictures as artifacts (pip install 'sslkit[mlflow]')")
    register("wandb", wandb, summary="Weights & Biases run, offline by default (RUN_DIR/wandb; `wandb sync` uploads it) "
             "(pip install 'sslkit[wandb]')")
