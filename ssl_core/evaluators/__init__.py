"""Evaluators that ship with the core: kNN, linear probe, few-shot, representation health."""

from ssl_core.evaluators.features import extract_features
from ssl_core.evaluators.few_shot import FewShotEvaluator
from ssl_core.evaluators.health import HealthEvaluator, effective_rank, embedding_std
from ssl_core.evaluators.knn import KNNEvaluator, weighted_knn_predict
from ssl_core.evaluators.linear_probe import LinearProbeEvaluator

__all__ = [
    "extract_features", "FewShotEvaluator", "HealthEvaluator", "effective_rank", "embedding_std",
    "KNNEvaluator", "weighted_knn_predict", "LinearProbeEvaluator",
]
