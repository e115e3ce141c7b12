"""The Experiment examples run end to end at tiny size: the same scripts a user runs, each run in
this process (``runpy``, as ``__main__`` with its own ``sys.argv``), without the 5-15 s of starting
Python and importing torch a subprocess costs; so does ``--help`` of each.
"""

from __future__ import annotations

import contextlib
import io
import runpy
import sys
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(script: str, *args: str) -> str:
    """The script's stdout; it must finish without an exception or a non-zero exit."""
    threads = torch.get_num_threads()  # a script may set its own; later tests keep theirs
    try:
        return run_in_process(script, *args)
    finally:
        torch.set_num_threads(threads)


def run_in_process(script: str, *args: str) -> str:
    path = str(EXAMPLES / script)
    out, err = io.StringIO(), io.StringIO()
    argv, sys_path = sys.argv, list(sys.path)
    sys.argv, sys.path[:0] = [path, *args], [str(EXAMPLES)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:  # argparse's --help exits 0; anything else is a failure
        assert exc.code in (0, None), err.getvalue()[-3000:]
    finally:
        sys.argv, sys.path[:] = argv, sys_path
    return out.getvalue()


def test_slip_clip_plus_simclr(tmp_path: Path) -> None:
    out = run("slip_clip_simclr.py", "--steps", "4", "--batch-size", "16", "--out", str(tmp_path),
              "--train-size", "500", "--test-size", "200")
    assert "clip/loss" in out and "simclr/loss" in out and "zeroshot_top1" in out
    assert (tmp_path / "metrics.jsonl").exists()


def test_vision_and_audio_side_by_side(tmp_path: Path) -> None:
    out = run("vision_and_audio.py", "--steps", "3", "--batch-size", "8", "--audio-size", "tiny", "--out", str(tmp_path))
    assert "simclr    kNN top-1" in out and "wav2vec2  kNN top-1" in out
    assert (tmp_path / "wav2vec2").is_dir()  # each objective's artifacts land in its own folder


def test_compare_objectives(tmp_path: Path) -> None:
    out = run("compare_objectives.py", "--steps", "3", "--objectives", "simclr", "vicreg", "--out", str(tmp_path),
              "--batch-size", "32", "--train-size", "500", "--test-size", "200")
    assert "comparison page" in out and "trained - random" in out
    assert (tmp_path / "comparison" / "index.html").exists()
    assert (tmp_path / "simclr" / "report" / "index.html").exists()


def test_trainer_example(tmp_path: Path) -> None:
    out = run("train_with_trainer.py", "--steps", "3", "--batch-size", "32", "--train-size", "500", "--test-size", "200")
    assert "kNN top-1: trained" in out


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_every_example_has_help(script: str) -> None:
    assert "usage" in run_in_process(script, "--help").lower()
