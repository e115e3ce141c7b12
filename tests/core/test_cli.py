"""The `ssl` command line, end to end. Messages, exit codes and the run/eval/resume cycle go
through the console entry point in-process (`ssl_cli`); the torchrun launch starts a real process
(as do the crash-safety tests, which run `ssl run` in a process and signal it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

def test_list_shows_components_with_package(ssl_cli) -> None:  # type: ignore[no-untyped-def]
    out = ssl_cli("list").stdout
    assert "toy_align" in out and "sslkit-testplugins" in out
    assert "knn" in out and "simclr" in out
    out = ssl_cli("list", "--kind", "objective", "--modality", "toy").stdout
    assert "toy_align" in out and "knn" not in out


def test_info_shows_recipe_defaults(ssl_cli) -> None:  # type: ignore[no-untyped-def]
    res = ssl_cli("info", "toy_align")
    assert res.returncode == 0, res.stderr
    assert "toy_align (objective, modality toy)" in res.stdout and "batch_size: 64" in res.stdout
    assert "sslkit_testplugins.toy_components:AlignUniform" in res.stdout


def test_info_works_for_every_kind() -> None:
    from typer.testing import CliRunner

    from ssl_core.cli import app

    runner = CliRunner()
    for name, expect in [("toy_mlp", "Settings (encoder_kwargs.NAME=VALUE):\n  in_dim = 8"),
                         ("toy_noise", "sigma = 0.3"), ("toy_mixture", "Built in: works offline"),
                         ("knn", "eval_kwargs.knn.NAME=VALUE"), ("imagefolder", "Reads --data PATH: a folder of .jpg")]:
        res = runner.invoke(app, ["info", name])
        assert res.exit_code == 0, res.output
        assert expect in res.output, (name, res.output)
    res = runner.invoke(app, ["info", "knnn"])
    assert "Did you mean 'knn'?" in str(res.exception)


def test_unknown_objective_exits_2_with_suggestion(ssl_cli) -> None:  # type: ignore[no-untyped-def]
    res = ssl_cli("run", "--objective", "simclrr")
    assert res.returncode == 2
    assert "Did you mean 'simclr'?" in res.stderr
    assert "Traceback" not in res.stderr


def test_bad_config_file_is_reported(tmp_path: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  lr: fast\n")
    res = ssl_cli("run", "--objective", "toy_align", "--config", str(f))
    assert res.returncode == 2 and str(f) in res.stderr and "train.lr" in res.stderr


def test_run_eval_resume_end_to_end(tmp_path: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    res = ssl_cli("run", "-m", "toy", "-o", "toy_align", "--steps", "20", "--out", str(out),
                  "--set", "train.log_every=2", "--set", "objective_kwargs.t=2.0")
    assert res.returncode == 0, res.stderr
    for name in ["config.yaml", "metrics.jsonl", "encoder.pt", "eval.json", "checkpoints/last.pt"]:
        assert (out / name).exists(), name
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["steps"] == 20 and saved["train"]["log_every"] == 2
    assert saved["encoder_kwargs"] == {"in_dim": 8}  # data-derived hint recorded
    metrics = json.loads((out / "eval.json").read_text())
    # four Gaussian clusters: 20 steps of toy_align reach 0.96 kNN and beat the random MLP (0.94)
    assert metrics["trained"]["knn_top1"] > 0.95
    assert metrics["trained"]["knn_top1"] > metrics["random"]["knn_top1"]
    assert "knn_top1" in res.stdout and "trained - random" in res.stdout

    res = ssl_cli("eval", str(out), "-e", "knn")
    assert res.returncode == 0, res.stderr
    again = json.loads((out / "eval.json").read_text())
    assert abs(again["trained"]["knn_top1"] - metrics["trained"]["knn_top1"]) < 1e-6
    assert abs(again["random"]["knn_top1"] - metrics["random"]["knn_top1"]) < 1e-6

    # resume a finished run with a longer budget: continues from step 20
    res = ssl_cli("run", "--resume", "--out", str(out), "--steps", "30", "--no-eval")
    assert res.returncode == 0, res.stderr
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 30 and len(steps) == len(set(steps))


def test_resume_without_run_dir_is_explained(tmp_path: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    res = ssl_cli("run", "-o", "toy_align", "--resume", "--out", str(tmp_path / "nothing"))
    assert res.returncode == 2 and "does not exist" in res.stderr


def test_help_explains_commands(ssl_cli) -> None:  # type: ignore[no-untyped-def]
    res = ssl_cli("--help")
    assert res.returncode == 0
    for cmd in ["run", "list", "info", "eval"]:
        assert cmd in res.stdout
    run_help = ssl_cli("run", "--help").stdout
    assert "--objective" in run_help
    # --modality's help names the installed modalities (rich may wrap the help text)
    assert all(m in " ".join(run_help.split()) for m in ("installed:", "vision", "audio", "text", "toy"))


def test_usage_errors_print_a_message_not_a_traceback(ssl_cli) -> None:  # type: ignore[no-untyped-def]
    """An unknown option, an extra argument or a bad value prints typer's usage message and exits
    with status 2, whichever copy of click typer raises it from."""
    for args, says in [(("run", "--no-such-flag"), "No such option: --no-such-flag"),
                       (("generate", "some_dir", "hello"), "unexpected extra argument"),
                       (("run", "-o", "toy_align", "--steps", "abc"), "Invalid value for '--steps'")]:
        res = ssl_cli(*args)
        assert res.returncode == 2, (args, res)
        assert says in res.stderr and "Traceback" not in res.stderr + res.stdout, (args, res.stderr)
        assert f"{args[0]} --help' for help." in res.stderr  # the program name depends on how Python started


def test_help_text_is_wrapped_by_the_terminal_not_the_source() -> None:
    """Each command's help keeps its paragraphs, but not the line breaks of the docstring (which
    is wrapped at 100 columns in the source): rendered wide, a sentence that spans two source
    lines comes out on one."""
    from typer.testing import CliRunner

    from ssl_core.cli import app
    from ssl_core.cli.app import reflowed_help
    from ssl_core.cli.run_cmd import run

    for command in app.registered_commands:
        for paragraph in command.help.split("\n\n"):
            assert paragraph and "\n" not in paragraph, (command.name, paragraph)
    assert "one folder: a folder" in run.__doc__.replace("\n", " ") and len(reflowed_help(run).split("\n\n")) == 2
    res = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})
    assert res.exit_code == 0, res.output
    assert "sized to finish in minutes on a CPU. The run directory receives config.yaml" in res.output
    res = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})
    assert "failed to load or were disabled by a name clash" in res.output


def test_failed_torchrun_launch_exits_non_zero(tmp_path: Path) -> None:
    """`--nproc-per-node` re-launches under torchrun; a rank's failure must reach the caller."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    cmd = [sys.executable, "-m", "ssl_core.cli", "run", "-o", "toy_align", "--nproc-per-node", "2", "--steps", "2",
           "--no-eval", "--out", str(tmp_path / "r"), "--set", "objective_kwargs.no_such_option=1"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode != 0
    assert "no_such_option" in res.stderr
