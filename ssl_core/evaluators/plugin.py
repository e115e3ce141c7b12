"""The core's own plugin: registers the built-in evaluators exactly as a third party would.

Factories are import paths, imported when an evaluator is first used (not by ``ssl list``).
"""

from __future__ import annotations

from ssl_core.hookspecs import hookimpl


@hookimpl
def register_evaluators(register):  # type: ignore[no-untyped-def]
    """Register kNN, linear probe, few-shot and health evaluators (any modality with labels)."""
    register("knn", "ssl_core.evaluators.knn:KNNEvaluator", modality="any",
             summary="Weighted-cosine kNN top-1 accuracy (k=20, T=0.07)")
    register("linear_probe", "ssl_core.evaluators.linear_probe:LinearProbeEvaluator", modality="any",
             summary="Logistic regression on frozen features")
    register("few_shot", "ssl_core.evaluators.few_shot:FewShotEvaluator", modality="any",
             summary="N-shot nearest-prototype accuracy over episodes")
    register("health", "ssl_core.evaluators.health:HealthEvaluator", modality="any",
             summary="Embedding std and effective rank (collapse check)")
