"""TensorBoard logger: event files in ``RUN_DIR/tensorboard`` (``tensorboard --logdir runs``).

Written with torch's ``SummaryWriter`` (which needs the ``tensorboard`` package: extra
``sslkit[tensorboard]``). Training scalars go under ``train/`` (``train/loss``, ``train/lr``),
``health/*`` and ``probe/*`` keep their names, evaluation results go under
``eval/trained/*`` and ``eval/random/*``, pictures are image summaries, and the resolved config
is a text summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ssl_core.extras import require
from ssl_core.loggers import Logger, scalars

EVENTS_DIR = "tensorboard"


def scalar_tag(key: str) -> str:
    """``loss`` -> ``train/loss``; keys that already have a group (``health/...``) keep it."""
    return key if "/" in key else f"train/{key}"


class TensorBoardLogger(Logger):
    """Scalars, images and the config as TensorBoard summaries."""

    def __init__(self, run_dir: str | Path, log_dir: str | Path | None = None, flush_secs: int = 30) -> None:
        require("tensorboard", "tensorboard", "the TensorBoard logger (--logger tensorboard)")
        self.log_dir = Path(log_dir) if log_dir is not None else Path(run_dir) / EVENTS_DIR
        self.flush_secs = flush_secs
        self._purge_step: int | None = None
        self._writer: Any = None

    @property
    def writer(self) -> Any:
        # opened on first use so that resume() can still ask it to purge the steps logged after
        # the checkpoint (TensorBoard hides events past purge_step from the earlier attempt)
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.log_dir), purge_step=self._purge_step, flush_secs=self.flush_secs)
        return self._writer

    def resume(self, step: int) -> None:
        if self._writer is None:
            self._purge_step = step + 1

    def log_params(self, params: Mapping[str, Any]) -> None:
        lines = "\n".join(f"    {k}: {v}" for k, v in sorted(params.items()))
        self.writer.add_text("config", lines, 0)  # indented: shown as a code block

    def log_metrics(self, record: Mapping[str, Any]) -> None:
        step = int(record["step"])
        for key, value in scalars(record).items():
            self.writer.add_scalar(scalar_tag(key), value, step)

    def log_results(self, results: Mapping[str, Mapping[str, float]], step: int) -> None:
        for which, metrics in results.items():
            for key, value in metrics.items():
                self.writer.add_scalar(f"eval/{which}/{key}", float(value), step)

    def log_image(self, name: str, path: Path, step: int) -> None:
        import matplotlib.image

        img = matplotlib.image.imread(str(path))  # PNG -> float [H, W, C] in [0, 1]
        if img.ndim == 2:
            self.writer.add_image(f"pictures/{name}", img, step, dataformats="HW")
        else:
            self.writer.add_image(f"pictures/{name}", img[..., :3], step, dataformats="HWC")

    def close(self, status: str = "finished") -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
