"""The Experiment examples run end to end at tiny size: the same scripts a user runs, each run in
this process (``runpy``, as ``__main__`` with its own ``sys.argv``), without the 5-15 s of starting
Python and importing torch a subprocess costs; so does ``--help`` of each.
"""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(run_script, script: str, *args: str) -> str:  # type: ignore[no-untyped-def]
    """The script's stdout; it must finish without an exception or a non-zero exit (argparse's
    --help exits 0)."""
    res = run_script(EXAMPLES / script, *args)
    assert res.code in (0, None), res.stderr[-3000:]
    return res.stdout


def test_slip_clip_plus_simclr(tmp_path: Path, run_script) -> None:  # type: ignore[no-untyped-def]
    out = run(run_script, "slip_clip_simclr.py", "--steps", "4", "--batch-size", "16", "--out", str(tmp_path),
              "--train-size", "500", "--test-size", "200")
    assert "clip/loss" in out and "simclr/loss" in out and "zeroshot_top1" in out
    assert (tmp_path / "metrics.jsonl").exists()


def test_vision_and_audio_side_by_side(tmp_path: Path, run_script) -> None:  # type: ignore[no-untyped-def]
    out = run(run_script, "vision_and_audio.py", "--steps", "3", "--batch-size", "8", "--audio-size", "tiny", "--out", str(tmp_path))
    assert "simclr    kNN top-1" in out and "wav2vec2  kNN top-1" in out
    assert (tmp_path / "wav2vec2").is_dir()  # each objective's artifacts land in its own folder


def test_compare_objectives(tmp_path: Path, run_script) -> None:  # type: ignore[no-untyped-def]
    out = run(run_script, "compare_objectives.py", "--steps", "3", "--objectives", "simclr", "vicreg", "--out", str(tmp_path),
              "--batch-size", "32", "--train-size", "500", "--test-size", "200")
    assert "comparison page" in out and "trained - random" in out
    assert (tmp_path / "comparison" / "index.html").exists()
    assert (tmp_path / "simclr" / "report" / "index.html").exists()


def test_trainer_example(tmp_path: Path, run_script) -> None:  # type: ignore[no-untyped-def]
    out = run(run_script, "train_with_trainer.py", "--steps", "3", "--batch-size", "32", "--train-size", "500", "--test-size", "200")
    assert "kNN top-1: trained" in out


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_every_example_has_help(script: str, run_script) -> None:  # type: ignore[no-untyped-def]
    assert "usage" in run(run_script, script, "--help").lower()
