"""Loggers as plugins: every backend is read back with its own library after a real (tiny) run."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from ssl_core import hookimpl
from ssl_core.checkpoint import load_checkpoint
from ssl_core.errors import ConfigError, UnknownComponentError
from ssl_core.evaluators.health import HealthEvaluator
from ssl_core.extras import require
from ssl_core.registry import Registry
from ssl_core.runner import resolve_config, run_experiment

LOGGERS = ["jsonl", "tensorboard", "mlflow", "wandb"]


class PictureEvaluator(HealthEvaluator):
    """Health metrics plus a real PNG in the run directory, as nn_grid / MAE reconstructions write."""

    needs_labels = False

    def evaluate(self, encoder, data):  # type: ignore[no-untyped-def]
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if self.out_dir is not None:
            fig, ax = plt.subplots(figsize=(2, 2))
            ax.plot([0, 1, 2], [2, 0, 1])
            fig.savefig(self.out_dir / "toy_picture.png", dpi=40)
            plt.close(fig)
        return super().evaluate(encoder, data)


class _PicturePlugin:
    @hookimpl
    def register_evaluators(self, register):  # type: ignore[no-untyped-def]
        register("toy_picture", PictureEvaluator, modality="any", summary="health + a PNG")


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One toy run logged to all four backends (each backend costs seconds to start, so they share it)."""
    for name in ("tensorboard", "mlflow", "wandb"):
        pytest.importorskip(name, reason=f"install the {name} extra: pip install 'sslkit[{name}]'")
    root = tmp_path_factory.mktemp("runs")
    registry = Registry()
    registry.add_plugin(_PicturePlugin(), name="toy_picture_plugin")
    cfg = resolve_config("toy_align", overrides={
        "out": str(root / "run"), "loggers": LOGGERS, "evaluators": ["knn", "toy_picture"],
        "train": {"steps": 6, "epochs": None, "log_every": 2, "health_every": 3, "probe_every": 3,
                  "progress": False, "checkpoint_every": 0},
    }, registry=registry)
    outcome = run_experiment(cfg, registry=registry)
    return outcome.run_dir, outcome.metrics


def _jsonl(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_events_hold_scalars_health_probe_results_and_pictures(logged_run) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, results = logged_run
    records = _jsonl(run_dir)
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    loss = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    assert loss == [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in records]  # every log step
    assert [e.step for e in acc.Scalars("train/lr")] == [r["step"] for r in records]
    for key in ("health/effective_rank", "probe/knn_top1"):
        logged = [(r["step"], r[key]) for r in records if key in r]
        assert logged and [(e.step, pytest.approx(e.value, rel=1e-6)) for e in acc.Scalars(key)] == logged
    final = acc.Scalars("eval/trained/knn_top1")
    assert final[-1].value == pytest.approx(results["trained"]["knn_top1"], rel=1e-6) and final[-1].step == 6
    assert acc.Scalars("eval/random/knn_top1")[-1].value == pytest.approx(results["random"]["knn_top1"], rel=1e-6)
    assert "pictures/toy_picture" in tags["images"]
    img = acc.Images("pictures/toy_picture")[-1]
    assert img.width == 80 and img.height == 80 and img.encoded_image_string[:4] == b"\x89PNG"
    assert any("config" in t for t in tags["tensors"])  # the resolved config as a text summary


def test_mlflow_run_holds_params_metrics_and_artifacts(logged_run) -> None:
    from mlflow.tracking import MlflowClient

    run_dir, results = logged_run
    saved = json.loads((run_dir / "mlflow_run.json").read_text())
    assert saved["tracking_uri"] == "sqlite:///" + str(run_dir.resolve().parent / "mlflow.db")
    client = MlflowClient(saved["tracking_uri"])
    run = client.get_run(saved["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    params = run.data.params
    assert params["objective"] == "toy_align" and params["train.steps"] == "6" and params["train.log_every"] == "2"
    records = _jsonl(run_dir)
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(r["step"], r["loss"]) for r in records]
    probe = client.get_metric_history(run.info.run_id, "probe/knn_top1")
    assert [(m.step, m.value) for m in probe] == [(r["step"], r["probe/knn_top1"]) for r in records if "probe/knn_top1" in r]
    assert run.data.metrics["eval/trained/knn_top1"] == pytest.approx(results["trained"]["knn_top1"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "eval.json" in artifacts
    assert {a.path for a in client.list_artifacts(run.info.run_id, "pictures")} == {"pictures/toy_picture.png"}
    local = Path(client.download_artifacts(run.info.run_id, "eval.json", str(run_dir.parent)))
    assert json.loads(local.read_text()) == json.loads((run_dir / "eval.json").read_text())


def _wandb_records(path: Path) -> list:
    """Records of a W&B transaction log (.wandb): LevelDB-style 32 KiB blocks of protobuf records.

    wandb >= 0.19 ships no Python reader for its offline files (its Go core reads them), so the
    test reads the framing itself and decodes each record with wandb's own protobuf classes.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B transaction log"
    pos, block, records, pending = 7, 32768, [], b""
    while pos + 7 <= len(data):
        room = block - pos % block
        if room < 7:  # block trailer padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        pending += chunk
        if kind in (1, 4):  # FULL or LAST
            rec = pb.Record()
            rec.ParseFromString(pending)
            records.append(rec)
            pending = b""
    return records


def test_wandb_offline_run_holds_config_history_summary_and_pictures(logged_run) -> None:
    run_dir, results = logged_run
    files = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    records = _wandb_records(files[0])
    history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    losses = [(h["_step"], h["train/loss"]) for h in history if "train/loss" in h]
    assert losses == [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in _jsonl(run_dir)]
    config = {i.key: json.loads(i.value_json) for r in records if r.WhichOneof("record_type") == "config"
              for i in r.config.update}
    assert config["objective"] == "toy_align" and config["train.steps"] == 6
    summary = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for r in records
               if r.WhichOneof("record_type") == "summary" for i in r.summary.update}
    assert summary["eval/trained/knn_top1"] == pytest.approx(results["trained"]["knn_top1"])
    pictures = [h for h in history if h.get("pictures/toy_picture/_type") == "image-file"]
    assert len(pictures) == 1 and pictures[0]["pictures/toy_picture/width"] == 80
    media = files[0].parent / "files" / pictures[0]["pictures/toy_picture/path"]
    assert media.read_bytes()[:4] == b"\x89PNG"


def test_jsonl_is_the_core_logger_plugin_and_ssl_report_still_reads_it(logged_run, registry) -> None:
    from ssl_core.report import read_metrics

    spec = registry.get("logger", "jsonl")
    assert spec.plugin == "ssl_core.loggers.plugin" and {s.name for s in registry.list("logger")} >= set(LOGGERS)
    run_dir, _ = logged_run
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2, 3, 4, 6]


def test_unknown_logger_and_missing_extra_are_clear(tmp_path, registry) -> None:
    cfg = resolve_config("toy_align", overrides={"out": str(tmp_path / "r"), "loggers": ["jsonl", "tensorbord"],
                                                 "train": {"steps": 2, "epochs": None}}, registry=registry)
    with pytest.raises(UnknownComponentError, match="Did you mean 'tensorboard'"):
        run_experiment(cfg, registry=registry)
    with pytest.raises(ConfigError, match=r"pip install 'sslkit\[tensorboard\]'"):
        require("tensorboard_not_installed_here", "tensorboard", "the TensorBoard logger")


def test_under_ddp_only_rank_0_logs(tmp_path) -> None:
    """Two gloo processes, one run directory: one TensorBoard event file, one line per logged step."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ssl_core.equivalence import run_ranks

    # each rank runs run_experiment as under `ssl run --nproc-per-node 2` (whose launch is tested
    # in test_launch.py), without the launcher's own processes
    out = tmp_path / "ddp"
    jobs = [{"objective": "toy_align", "evaluate": False, "overrides": {
        "out": str(out), "loggers": ["jsonl", "tensorboard"],
        "train": {"steps": 4, "epochs": None, "log_every": 1, "progress": False}}}]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    run_ranks([str(Path(__file__).with_name("_runs_script.py")), str(tmp_path / "jobs.json")],
              nproc=2, timeout_s=300, check=True)
    assert load_checkpoint(out / "checkpoints" / "last.pt")["world_size"] == 2
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1, events
    assert [r["step"] for r in _jsonl(out)] == [1, 2, 3, 4]
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4]


def test_resume_purges_later_tensorboard_steps_and_continues_the_mlflow_run(logged_run, tmp_path) -> None:
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ssl_core.loggers.mlflow import MLflowLogger
    from ssl_core.loggers.tensorboard import TensorBoardLogger

    first = TensorBoardLogger(tmp_path)
    for step in (1, 2, 3, 4):
        first.log_metrics({"step": step, "loss": float(step)})
    first.close()
    again = TensorBoardLogger(tmp_path)  # a crash after step 4, a checkpoint at step 2
    again.resume(2)
    for step in (3, 4):
        again.log_metrics({"step": step, "loss": 10.0 * step})
    again.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0)]

    run_dir, _ = logged_run
    before = json.loads((run_dir / "mlflow_run.json").read_text())["run_id"]
    resumed = MLflowLogger(run_dir)
    assert resumed.run_id == before
    client = MlflowClient(resumed.tracking_uri)
    assert client.get_run(before).info.status == "RUNNING"
    resumed.close("interrupted")
    assert client.get_run(before).info.status == "KILLED"
    client.set_terminated(before, "FINISHED")  # leave the shared run as the other tests found it
