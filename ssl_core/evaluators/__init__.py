"""Evaluators that ship with the core: kNN, linear probe, few-shot, representation health.

Names are imported on first access, so loading the registry (which imports
``ssl_core.evaluators.plugin``) does not import torch.
"""

import importlib as _importlib
from typing import Any

_EXPORTS = {
    "extract_features": "features", "FewShotEvaluator": "few_shot", "HealthEvaluator": "health",
    "effective_rank": "health", "embedding_std": "health", "KNNEvaluator": "knn",
    "weighted_knn_predict": "knn", "LinearProbeEvaluator": "linear_probe",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ssl_core.evaluators' has no attribute '{name}'")
    return getattr(_importlib.import_module(f"ssl_core.evaluators.{_EXPORTS[name]}"), name)
