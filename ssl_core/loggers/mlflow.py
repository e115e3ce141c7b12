"""MLflow logger: a run in a local MLflow store, no server needed.

By default the store is ``sqlite:///<runs folder>/mlflow.db`` (the folder that holds the run
directory), with artifacts beside it in ``mlartifacts/``, so every ``ssl run`` of a project lands
in one store and ``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db`` shows them all. Set
``tracking_uri`` (``--set logger_kwargs.mlflow.tracking_uri=...``) or ``MLFLOW_TRACKING_URI`` for
another store (a ``file:`` folder, a server). Needs the ``mlflow`` extra (``sslkit[mlflow]``).

Sent: the resolved config as params, every training scalar as a metric at its step, the
evaluation results as ``eval/trained/*`` / ``eval/random/*`` metrics, ``eval.json`` and the
run's pictures as artifacts. A resumed run continues the same MLflow run (its id is kept in
``RUN_DIR/mlflow_run.json``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

from ssl_core.extras import require
from ssl_core.loggers import Logger, scalars

RUN_ID_FILE = "mlflow_run.json"
_PARAM_BATCH = 100  # MLflow's limit of params per log_batch call
_METRIC_BATCH = 1000


def default_tracking_uri(run_dir: Path) -> str:
    """``sqlite:///<parent of run_dir>/mlflow.db`` (absolute), unless MLFLOW_TRACKING_URI is set."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return "sqlite:///" + str((run_dir.resolve().parent / "mlflow.db"))


class MLflowLogger(Logger):
    """Params, metrics and artifacts of one run in an MLflow tracking store."""

    def __init__(self, run_dir: str | Path, tracking_uri: str | None = None, experiment: str = "sslkit",
                 run_name: str | None = None, artifact_location: str | None = None) -> None:
        require("mlflow", "mlflow", "the MLflow logger (--logger mlflow)")
        from mlflow.tracking import MlflowClient

        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.tracking_uri = tracking_uri or default_tracking_uri(self.run_dir)
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            if artifact_location is None and self.tracking_uri.startswith("sqlite:///"):
                # MLflow would otherwise put artifacts in ./mlartifacts of whatever the cwd is
                store = Path(self.tracking_uri[len("sqlite:///"):]).parent
                artifact_location = (store / "mlartifacts").resolve().as_uri()
            exp_id = self.client.create_experiment(experiment, artifact_location=artifact_location)
        else:
            exp_id = exp.experiment_id
        saved = self.run_dir / RUN_ID_FILE
        self.run_id: str | None = None
        if saved.exists():
            previous = json.loads(saved.read_text())
            if previous.get("tracking_uri") == self.tracking_uri:
                self.run_id = previous["run_id"]  # a resumed run continues its MLflow run
                self.client.update_run(self.run_id, status="RUNNING")
        if self.run_id is None:
            run = self.client.create_run(exp_id, run_name=run_name or self.run_dir.name,
                                         tags={"sslkit.run_dir": str(self.run_dir.resolve())})
            self.run_id = run.info.run_id
            saved.write_text(json.dumps({"run_id": self.run_id, "tracking_uri": self.tracking_uri}))

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        logged = {p for p in self.client.get_run(self.run_id).data.params}  # params are write-once
        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items()) if k not in logged]
        for i in range(0, len(items), _PARAM_BATCH):
            self.client.log_batch(self.run_id, params=items[i:i + _PARAM_BATCH])

    def _log(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in values.items()]
        for i in range(0, len(items), _METRIC_BATCH):
            self.client.log_batch(self.run_id, metrics=items[i:i + _METRIC_BATCH])

    def log_metrics(self, record: Mapping[str, Any]) -> None:
        self._log(scalars(record), int(record["step"]))

    def log_results(self, results: Mapping[str, Mapping[str, float]], step: int) -> None:
        self._log({f"eval/{which}/{k}": float(v) for which, m in results.items() for k, v in m.items()}, step)

    def log_image(self, name: str, path: Path, step: int) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path="pictures")

    def log_artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def close(self, status: str = "finished") -> None:
        if self.run_id is not None:
            mlflow_status = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}.get(status, "FINISHED")
            self.client.set_terminated(self.run_id, status=mlflow_status)
            self.run_id = None
