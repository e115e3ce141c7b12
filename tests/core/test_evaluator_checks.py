"""Evaluators are checked against the run before training, and one that crashes after training
costs only its own metrics (issue 15, point 3)."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

from ssl_core import hookimpl
from ssl_core.errors import ConfigError
from ssl_core.interfaces import Evaluator
from ssl_core.registry import Registry
from ssl_core.resolve import resolve_config
from ssl_core.runner import run_experiment


class NeedsImages(Evaluator):
    """Draws pictures: reads the 'image' field of samples."""

    name = "needs_images"
    required_keys = ("image",)

    def evaluate(self, encoder, data):  # type: ignore[no-untyped-def]
        return {"never": 0.0}


class Crashes(Evaluator):
    """Raises after training, as a buggy evaluator would."""

    name = "crashes"
    needs_labels = False

    def __init__(self, when: str = "evaluate") -> None:
        self.when = when

    def evaluate(self, encoder, data):  # type: ignore[no-untyped-def]
        raise RuntimeError("simulated evaluator bug")


def _registry() -> Registry:
    reg = Registry()
    mod = types.ModuleType("extra_evaluators")

    def register_evaluators(register):  # type: ignore[no-untyped-def]
        register("needs_images", NeedsImages, modality="any", summary="reads images")
        register("crashes", Crashes, modality="any", summary="raises")

    mod.register_evaluators = hookimpl(register_evaluators)  # type: ignore[attr-defined]
    reg.add_plugin(mod, name="extra")
    assert not reg.failures
    return reg


def _cfg(reg: Registry, tmp_path: Path, evaluators: list[str], **extra):  # type: ignore[no-untyped-def]
    overrides = {"out": str(tmp_path / "run"), "evaluators": evaluators,
                 "train": {"steps": 4, "batch_size": 32, "checkpoint_every": 0}, **extra}
    return resolve_config("toy_align", overrides=overrides, registry=reg)


@pytest.mark.parametrize("evaluators,message", [
    (["knn", "nn_grid"], r"Evaluator 'nn_grid' \(plugin vision\) is a vision evaluator, but this is a toy run\. "
                         r"Remove it: --set 'evaluators=\[knn\]'"),
    (["needs_images", "knn"], r"Evaluator 'needs_images' \(plugin extra\) needs the batch field\(s\) 'image', but "
                              r"samples of dataset 'toy_mixture' have label, x"),
])
def test_mismatched_evaluator_fails_before_any_training_step(tmp_path: Path, evaluators: list[str],
                                                             message: str) -> None:
    reg = _registry()
    with pytest.raises(ConfigError, match=message):
        run_experiment(_cfg(reg, tmp_path, evaluators), registry=reg)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # not a single step ran
    # --no-eval skips the check: the same run trains
    run_experiment(_cfg(reg, tmp_path, evaluators), evaluate=False, registry=reg)
    assert (tmp_path / "run" / "encoder.pt").exists()


def test_bad_evaluator_settings_fail_before_training(tmp_path: Path) -> None:
    reg = _registry()
    cfg = _cfg(reg, tmp_path, ["knn"], eval_kwargs={"knn": {"neighbours": 5}})
    with pytest.raises(ConfigError, match=r"eval_kwargs\.knn: .*neighbours.*`ssl info knn`"):
        run_experiment(cfg, registry=reg)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_crashing_evaluator_is_named_and_other_metrics_are_written(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    reg = _registry()
    outcome = run_experiment(_cfg(reg, tmp_path, ["knn", "crashes", "health"]), registry=reg)
    run = tmp_path / "run"
    metrics = json.loads((run / "eval.json").read_text())
    assert "knn_top1" in metrics["trained"] and "knn_top1" in metrics["random"]
    assert any(k.startswith("health/") or "rank" in k for k in metrics["trained"])  # evaluators after it ran too
    errors = json.loads((run / "eval_errors.json").read_text())
    assert set(errors) == {"trained", "random"}
    assert errors["trained"]["crashes"].startswith("RuntimeError: simulated evaluator bug")
    assert "Traceback" in errors["trained"]["crashes"]
    assert outcome.eval_failures["trained"]["crashes"].startswith("RuntimeError")
    assert "evaluator 'crashes' failed: RuntimeError: simulated evaluator bug" in capsys.readouterr().err
