"""The core's own logger: one JSON object per line in ``RUN_DIR/metrics.jsonl``.

``ssl report`` and ``ssl compare`` read this file, and a resumed run truncates it back to the
checkpoint's step, so the file always describes exactly one uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from ssl_core.jsonio import dumps_metrics
from ssl_core.loggers import Logger

METRICS_FILE = "metrics.jsonl"


class JSONLLogger(Logger):
    """Appends every training record to ``metrics.jsonl`` (flushed line by line)."""

    def __init__(self, run_dir: str | Path | None = None, path: str | Path | None = None) -> None:
        if path is None and run_dir is not None:
            path = Path(run_dir) / METRICS_FILE
        self.path = Path(path) if path is not None else None
        self._fh = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")

    def resume(self, step: int) -> None:
        """Drop lines logged after ``step`` (the resumed run logs those steps again)."""
        if self.path is None or not self.path.exists():
            return
        if self._fh is not None:
            self._fh.close()
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", -1) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
        self.path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
        self._fh = open(self.path, "a", encoding="utf-8")

    def log_metrics(self, record: Mapping[str, Any]) -> None:
        if self._fh is not None:
            self._fh.write(dumps_metrics(dict(record)) + "\n")
            self._fh.flush()

    def close(self, status: str = "finished") -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
