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
    result = exp.fit()
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
    exp.fit()


def test_unknown_stream_is_explained() -> None:
    exp = Experiment()
    with pytest.raises(ConfigError, match="Unknown data stream 'imgs'"):
        exp.add_objective("a", "toy_align", data="imgs")
