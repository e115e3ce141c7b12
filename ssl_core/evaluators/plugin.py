"""The core's own plugin: registers the built-in evaluators exactly as a third party would."""

from __future__ import annotations

from ssl_core.evaluators.few_shot import FewShotEvaluator
from ssl_core.evaluators.health import HealthEvaluator
from ssl_core.evaluators.knn import KNNEvaluator
from ssl_core.evaluators.linear_probe import LinearProbeEvaluator
from ssl_core.hookspecs import hookimpl


@hookimpl
def register_evaluators(register):  # type: ignore[no-untyped-def]
    """Register kNN, linear probe, few-shot and health evaluators (any modality with labels)."""
    register("knn", KNNEvaluator, modality="any", summary="Weighted-cosine kNN top-1 accuracy (k=20, T=0.07)")
    register("linear_probe", LinearProbeEvaluator, modality="any", summary="Logistic regression on frozen features")
    register("few_shot", FewShotEvaluator, modality="any", summary="N-shot nearest-prototype accuracy over episodes")
    register("health", HealthEvaluator, modality="any", summary="Embedding std and effective rank (collapse check)")
