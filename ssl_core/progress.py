"""Training progress for people: a live bar on a terminal, one plain line per logged step elsewhere.

A tqdm bar redraws itself with carriage returns. In a log file (a cluster job, ``nohup``, CI,
``ssl run ... 2> train.log``) those redraws pile up into one line thousands of characters long
that neither ``tail`` nor a pager shows usefully. When standard error is not a terminal,
:class:`TrainProgress` writes instead one line per logged step (every ``train.log_every``
steps, and the first and last): step, loss, throughput, time spent and time left.
``TQDM_DISABLE=1`` silences both forms, as it silences tqdm.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _disabled_by_env() -> bool:
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


class TrainProgress:
    """Progress of one training run from ``initial`` to ``total`` steps.

    ``enabled`` is the run's ``train.progress`` on the main process. ``stream`` (default
    ``sys.stderr``, read when created) decides the form: a tqdm bar when it is a terminal,
    plain lines otherwise.
    """

    def __init__(self, total: int, initial: int, enabled: bool, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.total, self.initial = total, initial
        shown = enabled and not _disabled_by_env()
        is_terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.lines = shown and not is_terminal
        self._bar: Any = None
        if shown and is_terminal:
            from tqdm.auto import tqdm

            # disable=False explicitly: tqdm reads TQDM_* variables once, when it is first imported
            self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, desc="train",
                             file=self.stream, disable=False)

    def update(self, steps: int = 1) -> None:
        """``steps`` more steps are done."""
        if self._bar is not None:
            self._bar.update(steps)

    def logged(self, step: int, loss: float, samples_per_s: float, elapsed_s: float) -> None:
        """A step was logged: show its loss and throughput (and, as a line, the time left)."""
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{samples_per_s:.0f}")
        if not self.lines:
            return
        done = step - self.initial
        left = elapsed_s / done * (self.total - step) if done > 0 else float("nan")
        eta = _clock(left) if left == left else "?"
        print(f"train step {step}/{self.total} ({100 * step / max(self.total, 1):.0f}%)  loss {loss:.4f}  "
              f"{samples_per_s:.0f} samples/s  {_clock(elapsed_s)} elapsed, ~{eta} left",
              file=self.stream, flush=True)

    def close(self) -> None:
        """End the bar (nothing to do for lines)."""
        if self._bar is not None:
            self._bar.close()
