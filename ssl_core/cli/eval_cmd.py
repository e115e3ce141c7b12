"""``ssl eval RUN_DIR``: evaluate a finished run's encoder (and a random one) again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ssl_core.cli._table import metrics_table


def evaluate(
    run_dir: Path = typer.Argument(..., help="A directory written by `ssl run`."),
    evaluators: Optional[list[str]] = typer.Option(None, "--evaluator", "-e", help="Evaluator names (repeat); default: the run's."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, ..."),
    no_random: bool = typer.Option(False, "--no-random", help="Skip the random-encoder baseline."),
) -> None:
    """Re-run the probes on RUN_DIR/encoder.pt and write RUN_DIR/eval.json.

    Loads only tensors and plain values from RUN_DIR, never runs 'pipe:' shard commands, and
    refuses a run that another process is still writing."""
    from ssl_core.checkpoint import atomic_write_text
    from ssl_core.rundir import RunLock
    from ssl_core.runner import CONFIG_FILE, EVAL_FILE, evaluate_encoder, load_run, random_encoder_like
    from ssl_core.streaming import never_run_pipes
    from ssl_core.trainer import resolve_device

    if not (run_dir / CONFIG_FILE).is_file():
        from ssl_core.errors import DataError

        raise DataError(f"{run_dir / CONFIG_FILE} is missing: is {run_dir} a finished `ssl run` directory?")
    with never_run_pipes(), RunLock(run_dir, purpose="evaluation"):
        cfg, data, encoder = load_run(run_dir)
        if evaluators:
            cfg.evaluators = list(evaluators)
        dev = resolve_device(device)
        metrics = {"trained": evaluate_encoder(encoder.to(dev), data, cfg)}
        if not no_random:
            metrics["random"] = evaluate_encoder(random_encoder_like(cfg, data).to(dev), data, cfg)
        atomic_write_text(run_dir / EVAL_FILE, json.dumps(metrics, indent=2))
    typer.echo(metrics_table(metrics))
