"""sslkit core: interfaces, plugin registry, the shared Trainer, evaluators and the `ssl` CLI.

Public names are imported on first access (PEP 562), so ``from ssl_core import hookimpl`` in a
plugin's registration module, and commands such as ``ssl list``, do not import torch.
"""

import importlib as _importlib
import os as _os
from typing import TYPE_CHECKING, Any

# OpenMP threads that spin while waiting make small CPU steps many times slower when other work
# shares the cores (measured 3-90x here); sleeping waits cost little elsewhere. Must be set before
# torch loads its OpenMP runtime; an explicit user setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ssl_core.hookspecs import hookimpl  # noqa: E402  (light: pluggy only)

__version__ = "0.1.0"

_EXPORTS = {
    "RunConfig": "ssl_core.config", "TrainConfig": "ssl_core.config",
    "ConfigError": "ssl_core.errors", "DataError": "ssl_core.errors",
    "DuplicateComponentError": "ssl_core.errors", "NonFiniteLossError": "ssl_core.errors",
    "SSLKitError": "ssl_core.errors", "UnknownComponentError": "ssl_core.errors",
    "Experiment": "ssl_core.experiment",
    "Augmenter": "ssl_core.interfaces", "Batch": "ssl_core.interfaces", "DataModule": "ssl_core.interfaces",
    "Encoder": "ssl_core.interfaces", "Evaluator": "ssl_core.interfaces", "Objective": "ssl_core.interfaces",
    "StepInfo": "ssl_core.interfaces",
    "ComponentSpec": "ssl_core.registry", "Registry": "ssl_core.registry", "get_registry": "ssl_core.registry",
    "Accepts": "ssl_core.files",
    "resolve_config": "ssl_core.resolve", "run_experiment": "ssl_core.runner",
    "Trainer": "ssl_core.trainer", "TrainResult": "ssl_core.trainer",
}

__all__ = sorted([*_EXPORTS, "hookimpl"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ssl_core' has no attribute '{name}'")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from ssl_core.config import RunConfig, TrainConfig
    from ssl_core.errors import (
        ConfigError, DataError, DuplicateComponentError, NonFiniteLossError, SSLKitError, UnknownComponentError,
    )
    from ssl_core.experiment import Experiment
    from ssl_core.files import Accepts
    from ssl_core.interfaces import Augmenter, Batch, DataModule, Encoder, Evaluator, Objective, StepInfo
    from ssl_core.registry import ComponentSpec, Registry, get_registry
    from ssl_core.resolve import resolve_config
    from ssl_core.runner import run_experiment
    from ssl_core.trainer import Trainer, TrainResult
