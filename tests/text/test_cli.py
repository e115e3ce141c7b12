"""End to end through the `ssl` command line: run, eval and generate, with tiny settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from ssl_core.cli.app import app
from ssl_core.cli.generate_cmd import generate as generate_command
from ssl_core.errors import ConfigError

TINY = ["--set", "encoder_kwargs.d_model=32", "--set", "encoder_kwargs.n_layers=1",
        "--set", "dataset_kwargs.vocab_size=400", "--set", "dataset_kwargs.block_size=32",
        "--set", "dataset_kwargs.heldout_fraction=0.3", "--batch-size", "16", "--no-progress"]

runner = CliRunner()


def _gen_app() -> typer.Typer:
    gen = typer.Typer()
    gen.command("generate")(generate_command)
    gen.command("noop")(lambda: None)  # two commands: typer keeps the "generate" sub-command name
    return gen


@pytest.fixture(scope="module")
def clm_run(tmp_path_factory, jsonl_corpus: Path) -> Path:
    out = tmp_path_factory.mktemp("runs") / "clm"
    threads = torch.get_num_threads()
    res = runner.invoke(app, ["run", "--modality", "text", "--objective", "clm", "--steps", "30",
                              "--data", str(jsonl_corpus), "--out", str(out), *TINY,
                              "--set", "evaluators=[perplexity,knn,health]", "--set", "train.num_threads=1"])
    torch.set_num_threads(threads)
    assert res.exit_code == 0, (res.output, res.exception)
    return out


def test_run_writes_a_complete_run_directory(clm_run: Path) -> None:
    for name in ["config.yaml", "metrics.jsonl", "encoder.pt", "eval.json", "tokenizer.json", "samples.txt"]:
        assert (clm_run / name).exists(), name
    metrics = json.loads((clm_run / "eval.json").read_text())
    trained, random = metrics["trained"], metrics["random"]
    assert trained["perplexity"] < 0.5 * random["perplexity"]
    assert {"knn_top1", "effective_rank"} <= set(trained)  # labels came from the JSONL
    losses = [json.loads(line)["loss"] for line in (clm_run / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0]


def test_eval_rebuilds_the_same_tokenizer_and_scores(clm_run: Path) -> None:
    before = json.loads((clm_run / "eval.json").read_text())["trained"]["perplexity"]
    res = runner.invoke(app, ["eval", str(clm_run), "--no-random", "-e", "perplexity"])
    assert res.exit_code == 0, (res.output, res.exception)
    after = json.loads((clm_run / "eval.json").read_text())["trained"]["perplexity"]
    assert after == pytest.approx(before, rel=1e-4)


def test_generate_command_and_python_api(clm_run: Path) -> None:
    from ssl_text import generate

    args = ["generate", str(clm_run), "--prompt", "The class", "-n", "12", "--seed", "3"]
    a, b = runner.invoke(_gen_app(), args), runner.invoke(_gen_app(), args)
    assert a.exit_code == 0, (a.output, a.exception)
    assert a.output == b.output and a.output.startswith("The class") and len(a.output) > len("The class") + 5
    texts = generate(clm_run, "The class", max_new_tokens=12, seed=3)
    assert texts[0] == a.output.rstrip("\n")
    two = runner.invoke(_gen_app(), [*args, "--num-samples", "2", "--top-p", "0.9"])
    assert two.exit_code == 0 and two.output.count("--- sample") == 2


def test_mlm_run_on_unlabelled_folder_and_generation_refusal(tmp_path: Path, jsonl_corpus: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    lines = [json.loads(line)["text"] for line in jsonl_corpus.read_text().splitlines()]
    (folder / "a.txt").write_text("\n\n".join(lines[: len(lines) // 2]))
    (folder / "b.md").write_text("\n\n".join(lines[len(lines) // 2:]))
    out = tmp_path / "mlm"
    res = runner.invoke(app, ["run", "-m", "text", "-o", "mlm", "--steps", "15", "--data", str(folder),
                              "--out", str(out), *TINY])
    assert res.exit_code == 0, (res.output, res.exception)
    metrics = json.loads((out / "eval.json").read_text())  # no labels: held-out LM metrics and health only
    assert set(metrics["trained"]) == {"masked_acc", "mlm_loss", "embed_std", "embed_std_ratio", "effective_rank"}
    assert metrics["trained"]["mlm_loss"] < metrics["random"]["mlm_loss"]
    res = runner.invoke(_gen_app(), ["generate", str(out), "--prompt", "x"])
    assert isinstance(res.exception, ConfigError) and "causal" in str(res.exception)


def test_bad_data_path_fails_with_a_clear_message(tmp_path: Path) -> None:
    res = runner.invoke(app, ["run", "-m", "text", "-o", "clm", "--steps", "1", "--data", str(tmp_path / "nope.txt")])
    assert res.exit_code != 0
    assert "does not exist" in str(res.exception) and "--data" in str(res.exception)
