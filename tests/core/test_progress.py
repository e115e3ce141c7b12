"""Training progress: a tqdm bar on a terminal, one plain line per logged step in a log file (the
bar's carriage-return redraws would pile up into one enormous line), nothing with
``train.progress=false`` or ``TQDM_DISABLE=1``."""

from __future__ import annotations

import io
import re

import pytest

from ssl_core.progress import TrainProgress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(progress: TrainProgress) -> None:
    for step in range(1, 11):
        progress.update(1)
        if step in (1, 5, 10):
            progress.logged(step, loss=4.0 / step, samples_per_s=120.0, elapsed_s=2.0 * step)
    progress.close()


def test_a_log_file_gets_one_line_per_logged_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    log = io.StringIO()
    _run(TrainProgress(total=10, initial=0, enabled=True, stream=log))
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 3
    assert lines[0] == "train step 1/10 (10%)  loss 4.0000  120 samples/s  0:00:02 elapsed, ~0:00:18 left"
    assert lines[1].startswith("train step 5/10 (50%)  loss 0.8000") and lines[1].endswith("~0:00:10 left")
    assert lines[2].endswith("0:00:20 elapsed, ~0:00:00 left")


def test_time_left_counts_from_the_resumed_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    log = io.StringIO()
    progress = TrainProgress(total=100, initial=90, enabled=True, stream=log)
    progress.logged(95, loss=1.0, samples_per_s=50.0, elapsed_s=10.0)  # 5 steps in 10 s, 5 to go
    assert log.getvalue().strip().endswith("0:00:10 elapsed, ~0:00:10 left")


def test_a_terminal_gets_the_bar_and_no_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    term = _Terminal()
    _run(TrainProgress(total=10, initial=0, enabled=True, stream=term))
    out = term.getvalue()
    assert "train step" not in out
    assert "\r" in out and re.search(r"train: 100%.*10/10.*loss=0\.4000", out)


@pytest.mark.parametrize("enabled, env", [(False, None), (True, "1")])
def test_switched_off_shows_nothing(monkeypatch: pytest.MonkeyPatch, enabled: bool, env: str | None) -> None:
    if env is None:
        monkeypatch.delenv("TQDM_DISABLE", raising=False)
    else:
        monkeypatch.setenv("TQDM_DISABLE", env)
    for stream in (io.StringIO(), _Terminal()):
        _run(TrainProgress(total=10, initial=0, enabled=enabled, stream=stream))
        assert stream.getvalue() == ""


def test_the_trainer_writes_progress_lines_to_a_non_terminal(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A real Trainer run with ``progress=True`` and standard error captured (not a terminal)."""
    from sslkit_testplugins.toy import AlignUniform, MLPEncoder, NoiseViews, gaussian_mixture

    from ssl_core.config import TrainConfig
    from ssl_core.trainer import Trainer

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    cfg = TrainConfig(steps=6, batch_size=32, log_every=3, checkpoint_every=0, health_every=0, probe_every=0,
                      progress=True, device="cpu", precision="fp32")
    Trainer(AlignUniform(MLPEncoder(dropout=0.0), NoiseViews()), gaussian_mixture(n=128), cfg).fit()
    err = capsys.readouterr().err
    steps = [int(m) for m in re.findall(r"^train step (\d+)/6 ", err, flags=re.M)]
    assert steps == [1, 3, 6], err
