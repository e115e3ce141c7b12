"""The mixed-modality Experiment API: several objectives, streams and shared encoders, one loop."""

from __future__ import annotations

import pytest
import torch

from ssl_core import Experiment
from ssl_core.errors import ConfigError
from ssl_core.experiment import MultiObjective, ZipDataset
from ssl_core.data import TensorDictDataset


def test_zip_dataset_cycles_shorter_streams() -> None:
    z = ZipDataset({"a": TensorDictDataset(x=torch.arange(5)), "b": TensorDictDataset(x=torch.arange(2))})
    assert len(z) == 5
    assert z[3]["a"]["x"] == 3 and z[3]["b"]["x"] == 1


def test_two_objectives_on_two_streams_train_together(tmp_path) -> None:  # type: ignore[no-untyped-def]
    exp = Experiment(train={"steps": 40, "batch_size": 32, "lr": 0.01, "log_every": 5, "progress": False,
                            "checkpoint_every": 0}, out=tmp_path)
    exp.add_data("blobs", "toy_mixture", seed=0)
    exp.add_data("blobs2", "toy_mixture", seed=1, dim=6)
    exp.add_objective("a", "toy_align", data="blobs")
    exp.add_objective("b", "toy_align", data="blobs2", weight=0.5)
    assert exp.tasks[0].objective.encoder is not exp.tasks[1].objective.encoder
    result = exp.fit(evaluate=False)
    first, last = result.history[0], result.history[-1]
    for name in ("a", "b"):
        assert last[f"{name}/loss"] < first[f"{name}/loss"]
    assert last["loss"] == pytest.approx(last["a/loss"] + 0.5 * last["b/loss"], rel=1e-4)
    metrics = exp.evaluate("b", evaluators=["knn"], compare_random=True)
    assert set(metrics) == {"trained", "random"}
    assert (tmp_path / "metrics.jsonl").exists()


def test_shared_encoder_parameters_are_optimised_once() -> None:
    exp = Experiment(train={"steps": 2, "batch_size": 16, "progress": False})
    exp.add_data("blobs", "toy_mixture")
    enc = exp.add_encoder("shared", "toy_mlp", data="blobs")
    exp.add_objective("a", "toy_align", data="blobs", encoder="shared")
    exp.add_objective("b", "toy_align", data="blobs", encoder="shared", t=3.0)
    multi = MultiObjective(exp.tasks)
    ids = [id(p) for g in multi.param_groups(0.1) for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(enc.parameters()))
    exp.fit(evaluate=False)


def test_unknown_stream_is_explained() -> None:
    exp = Experiment()
    with pytest.raises(ConfigError, match="Unknown data stream 'imgs'"):
        exp.add_objective("a", "toy_align", data="imgs")


# ------------------------------------------------------------------ run-folder parity with `ssl run`
def _experiment_run(out) -> Experiment:  # type: ignore[no-untyped-def]
    exp = Experiment(train={"steps": 20, "batch_size": 32, "lr": 0.01, "log_every": 5, "progress": False,
                            "checkpoint_every": 0}, out=out)
    exp.add_data("blobs", "toy_mixture", seed=0)
    exp.add_data("blobs2", "toy_mixture", seed=1, dim=6)
    exp.add_encoder("shared", "toy_mlp", data="blobs")
    exp.add_objective("a", "toy_align", data="blobs", encoder="shared")
    exp.add_objective("a2", "toy_align", data="blobs", encoder="shared", weight=0.25, t=3.0)
    exp.add_objective("b", "toy_align", data="blobs2", weight=0.5)
    exp.fit()
    return exp


def test_experiment_folder_has_config_encoders_and_evaluation(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    import yaml

    from ssl_core.experiment import read_experiment
    from ssl_core.runner import encoder_from_file

    out = tmp_path / "exp"
    exp = _experiment_run(out)
    spec = read_experiment(out)
    assert [(o["name"], o["weight"], o["encoder"]) for o in spec["objectives"]] == [
        ("a", 1.0, "shared"), ("a2", 0.25, "shared"), ("b", 0.5, "b.encoder")]
    assert spec["objectives"][1]["objective_kwargs"] == {"t": 3.0}
    assert spec["encoders"]["b.encoder"]["encoder_kwargs"] == {"in_dim": 6}  # data-derived hint recorded
    assert yaml.safe_load((out / "experiment.yaml").read_text())["train"]["steps"] == 20
    # one exported encoder per named encoder (the shared one once), rebuildable by name
    assert sorted(p.name for p in (out / "encoders").iterdir()) == ["b.encoder.pt", "shared.pt"]
    shared = encoder_from_file(out / "encoders" / "shared.pt")
    for k, v in exp.encoders["shared"].state_dict().items():
        assert torch.equal(shared.state_dict()[k], v.cpu())
    metrics = json.loads((out / "eval.json").read_text())
    for enc in ("shared", "b.encoder"):
        assert {f"{enc}/knn_top1", f"{enc}/linear_top1", f"{enc}/effective_rank"} <= set(metrics["trained"])
        assert f"{enc}/knn_top1" in metrics["random"]
    assert metrics == exp.metrics


def test_ssl_eval_report_and_compare_work_on_an_experiment_folder(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from typer.testing import CliRunner

    from ssl_core.cli import app

    out = tmp_path / "exp"
    exp = _experiment_run(out)
    runner = CliRunner()
    res = runner.invoke(app, ["eval", str(out), "-e", "knn"])
    assert res.exit_code == 0, res.output
    again = json.loads((out / "eval.json").read_text())
    for enc in ("shared", "b.encoder"):  # the same encoders and the same random initialisations again
        for col in ("trained", "random"):
            assert again[col][f"{enc}/knn_top1"] == pytest.approx(exp.metrics[col][f"{enc}/knn_top1"], abs=1e-6)
    assert "shared/knn_top1" in res.output

    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code == 0, res.output
    page = (out / "report" / "index.html").read_text()
    assert "Experiment: a + a2 + b" in page and "encoder ?" not in page
    for name, weight in (("a", "1.0000"), ("a2", "0.2500"), ("b", "0.5000")):
        assert f"<td>{name}</td><td>toy_align</td><td>{weight}</td>" in page
    assert "a2/loss (weight 0.25)" not in page  # titles live in the PNG; the page links it
    assert "shared/knn_top1" in page and (out / "report" / "loss.png").exists()

    single = tmp_path / "single"
    from ssl_core.resolve import resolve_config
    from ssl_core.runner import run_experiment

    run_experiment(resolve_config("toy_align", overrides={"out": str(single), "evaluators": ["knn"],
                                                          "train": {"steps": 10}}))
    res = runner.invoke(app, ["compare", str(out), str(single), "--out", str(tmp_path / "cmp")])
    assert res.exit_code == 0, res.output
    assert "a+a2+b" in res.output and "shared/knn_top1" in res.output


def test_an_encoder_passed_as_an_object_is_exported_and_skipped_by_ssl_eval(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from sslkit_testplugins.toy import MLPEncoder

    from ssl_core.experiment import evaluate_experiment_run

    exp = Experiment(train={"steps": 5, "batch_size": 32, "progress": False, "checkpoint_every": 0},
                     out=tmp_path / "exp")
    exp.add_data("blobs", "toy_mixture")
    exp.add_objective("a", "toy_align", data="blobs", encoder=MLPEncoder(in_dim=8))
    exp.fit()
    assert (tmp_path / "exp" / "encoders" / "a.encoder.pt").exists()
    assert "a.encoder/knn_top1" in exp.metrics["trained"]
    result = evaluate_experiment_run(tmp_path / "exp")
    assert "passed to the Experiment as an object" in result.skipped["a.encoder"]
    assert "skipping encoder 'a.encoder'" in capsys.readouterr().err


def test_experiment_checks_evaluators_before_training(tmp_path) -> None:  # type: ignore[no-untyped-def]
    exp = Experiment(train={"steps": 5, "batch_size": 32, "progress": False}, out=tmp_path / "exp")
    exp.add_data("blobs", "toy_mixture")
    exp.add_objective("a", "toy_align", data="blobs")
    exp._objective_specs["a"]["evaluators"] = ["knn", "nn_grid"]  # as a recipe listing a vision evaluator
    with pytest.raises(ConfigError, match="'nn_grid' .* is a vision evaluator, but this is a toy run"):
        exp.fit()
    assert not (tmp_path / "exp" / "metrics.jsonl").exists()
