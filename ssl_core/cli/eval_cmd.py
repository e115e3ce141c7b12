"""``ssl eval RUN_DIR``: evaluate a finished run's encoder (and a random one) again."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ssl_core.cli._table import metrics_table, report_failures


def evaluate(
    run_dir: Path = typer.Argument(..., help="A directory written by `ssl run` or Experiment(out=...).fit()."),
    evaluators: Optional[list[str]] = typer.Option(None, "--evaluator", "-e", help="Evaluator names (repeat); default: the run's."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, ..."),
    no_random: bool = typer.Option(False, "--no-random", help="Skip the random-encoder baseline."),
) -> None:
    """Re-run the probes on RUN_DIR/encoder.pt and write RUN_DIR/eval.json.

    An Experiment folder (experiment.yaml) has one encoder per name in RUN_DIR/encoders/; each is
    probed on its own data stream and its metrics are named <encoder>/<metric>.

    Loads only tensors and plain values from RUN_DIR, never runs 'pipe:' shard commands, and
    refuses a run that another process is still writing."""
    from ssl_core.experiment import evaluate_experiment_run, is_experiment_run
    from ssl_core.rundir import RunLock
    from ssl_core.runner import (
        CONFIG_FILE, check_evaluators, evaluate_encoder, load_run, random_encoder_like, write_evaluation,
    )
    from ssl_core.streaming import never_run_pipes
    from ssl_core.trainer import resolve_device

    experiment = is_experiment_run(run_dir)
    if not experiment and not (run_dir / CONFIG_FILE).is_file():
        from ssl_core.errors import DataError

        raise DataError(f"{run_dir / CONFIG_FILE} is missing: is {run_dir} a finished `ssl run` directory (or an "
                        "Experiment folder with experiment.yaml)?")
    with never_run_pipes(), RunLock(run_dir, purpose="evaluation"):
        if experiment:
            result = evaluate_experiment_run(run_dir, evaluators, compare_random=not no_random,
                                             device=resolve_device(device))
            typer.echo(metrics_table(result.metrics))
            report_failures(run_dir, result.failures)
            return
        cfg, data, encoder = load_run(run_dir)
        if evaluators:
            cfg.evaluators = list(evaluators)
        check_evaluators(cfg, data)
        dev = resolve_device(device)
        failures: dict[str, dict[str, str]] = {"trained": {}, "random": {}}
        metrics = {"trained": evaluate_encoder(encoder.to(dev), data, cfg, out_dir=run_dir,
                                               failures=failures["trained"])}
        if not no_random:
            metrics["random"] = evaluate_encoder(random_encoder_like(cfg, data).to(dev), data, cfg,
                                                 failures=failures["random"])
        write_evaluation(run_dir, metrics, failures)
    typer.echo(metrics_table(metrics))
    report_failures(run_dir, failures)
