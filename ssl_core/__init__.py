"""sslkit core: interfaces, plugin registry, the shared Trainer, evaluators and the `ssl` CLI."""

import os as _os

# OpenMP threads that spin while waiting make small CPU steps many times slower when other work
# shares the cores (measured 3-90x here); sleeping waits cost little elsewhere. Must be set before
# torch loads its OpenMP runtime; an explicit user setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ssl_core.config import RunConfig, TrainConfig
from ssl_core.errors import (
    ConfigError, DataError, DuplicateComponentError, NonFiniteLossError, SSLKitError, UnknownComponentError,
)
from ssl_core.experiment import Experiment
from ssl_core.hookspecs import hookimpl
from ssl_core.interfaces import Augmenter, Batch, DataModule, Encoder, Evaluator, Objective, StepInfo
from ssl_core.registry import ComponentSpec, Registry, get_registry
from ssl_core.runner import resolve_config, run_experiment
from ssl_core.trainer import Trainer, TrainResult

__version__ = "0.1.0"

__all__ = [
    "Augmenter", "Batch", "ComponentSpec", "ConfigError", "DataError", "DataModule",
    "DuplicateComponentError", "Encoder", "Evaluator", "Experiment", "NonFiniteLossError", "Objective", "Registry",
    "RunConfig", "SSLKitError", "StepInfo", "TrainConfig", "TrainResult", "Trainer",
    "UnknownComponentError", "get_registry", "hookimpl", "resolve_config", "run_experiment",
]
