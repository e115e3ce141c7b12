"""Weights & Biases logger, offline by default: the run is written to ``RUN_DIR/wandb`` and
nothing is sent anywhere (``wandb sync RUN_DIR/wandb/offline-run-*`` uploads it later, if you want).

Needs the ``wandb`` extra (``sslkit[wandb]``). ``mode="online"`` in ``logger_kwargs.wandb`` logs live
for users with an account; the default never touches the network.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Mapping

from ssl_core.extras import require
from ssl_core.loggers import Logger, scalars
from ssl_core.loggers.tensorboard import scalar_tag

RUN_ID_FILE = "wandb_run.json"


class WandbLogger(Logger):
    """Config, scalars, results and pictures of one W&B run."""

    def __init__(self, run_dir: str | Path, project: str = "sslkit", mode: str = "offline",
                 entity: str | None = None, name: str | None = None) -> None:
        wandb = require("wandb", "wandb", "the Weights & Biases logger (--logger wandb)")
        self._wandb = wandb
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        saved = self.run_dir / RUN_ID_FILE
        run_id = json.loads(saved.read_text())["run_id"] if saved.exists() else uuid.uuid4().hex[:12]
        self.run = wandb.init(
            project=project, entity=entity, name=name or self.run_dir.name, id=run_id, resume="allow",
            dir=str(self.run_dir), mode=mode, reinit="create_new",
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True, x_disable_machine_info=True),
        )
        saved.write_text(json.dumps({"run_id": run_id, "mode": mode}))
        self._last_step = -1

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.run.config.update(dict(params), allow_val_change=True)

    def _log(self, values: Mapping[str, Any], step: int) -> None:
        if step < self._last_step:  # W&B keeps one history row per step, in increasing order
            return
        self._last_step = step
        self.run.log(dict(values), step=step)

    def log_metrics(self, record: Mapping[str, Any]) -> None:
        self._log({scalar_tag(k): v for k, v in scalars(record).items()}, int(record["step"]))

    def log_results(self, results: Mapping[str, Mapping[str, float]], step: int) -> None:
        values = {f"eval/{which}/{k}": float(v) for which, m in results.items() for k, v in m.items()}
        self.run.summary.update(values)
        self._log(values, step)

    def log_image(self, name: str, path: Path, step: int) -> None:
        self._log({f"pictures/{name}": self._wandb.Image(str(path))}, step)

    def log_artifact(self, path: Path) -> None:
        self.run.save(str(path), base_path=str(Path(path).parent), policy="now")

    def close(self, status: str = "finished") -> None:
        if self.run is not None:
            self.run.finish(exit_code=0 if status == "finished" else 1)
            self.run = None
