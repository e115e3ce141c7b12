"""``ssl run``: train an objective, export the encoder, evaluate it next to a random one."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from ssl_core.cli._table import metrics_table, report_failures
from ssl_core.config import parse_override


def _modality_help() -> str:
    """``--modality`` help naming the modalities the installed plugins provide."""
    try:
        from ssl_core.registry import get_registry

        installed = ", ".join(get_registry().modalities()) or "none installed"
    except Exception:  # a strict-mode plugin error is reported when the command runs
        installed = "see `ssl list`"
    return f"Modality of the objective (installed: {installed}); checked against the objective."


def run(
    objective: Optional[str] = typer.Option(None, "--objective", "-o", help="Method to train, e.g. simclr (see `ssl list`)."),
    modality: Optional[str] = typer.Option(None, "--modality", "-m", help=_modality_help()),
    # a str, not a Path: Path would turn "http://host/x.tar" into "http:/host/x.tar" and mangle
    # "pipe:aws s3 cp s3://b/x.tar -" shard specs the same way
    data: Optional[str] = typer.Option(None, "--data", help="Your data (folder, file, or a shard spec/URL for streaming datasets); omit to use the built-in dataset."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset reader by name (default: the objective's)."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder by name (default: the objective's)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML or TOML config file; flags override it."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Passes over the data."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimiser steps (overrides --epochs)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Samples per optimiser step."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate."),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="adamw, lars or sgd."),
    precision: Optional[str] = typer.Option(None, "--precision", help="auto, fp32, bf16 or fp16."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1, ..."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default runs/<modality>-<objective>-<time>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete the run already in --out and start a new one there (without it, a folder holding a run is refused)."),
    allow_pipe: bool = typer.Option(False, "--allow-pipe", help="Let 'pipe:COMMAND' shard specs run their shell commands (same as SSLKIT_ALLOW_PIPE=1); a config file alone never can."),
    no_eval: bool = typer.Option(False, "--no-eval", help="Skip evaluation after training."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
    nproc_per_node: int = typer.Option(1, "--nproc-per-node", help="Processes on this machine (DDP via torchrun; one per GPU)."),
    strategy: Optional[str] = typer.Option(None, "--strategy", help="ddp (a full model per process) or fsdp (parameters, gradients and optimiser state sharded; for encoders too large for one device)."),
    num_workers: Optional[int] = typer.Option(None, "--num-workers", help="DataLoader worker processes per training process."),
    logger: list[str] = typer.Option([], "--logger", help="Also log to: tensorboard, mlflow, wandb, ... (repeat; `ssl list --kind logger`). metrics.jsonl is always written unless the config's `loggers` list drops jsonl."),
    init: Optional[str] = typer.Option(None, "--init", help="Start the encoder from weights on disk: an encoder.pt or run dir, an `ssl export` folder, or a torchvision/timm/torchaudio/open_clip state dict. Strict unless --init-partial."),
    init_partial: bool = typer.Option(False, "--init-partial", help="With --init: load the matching tensors, report the rest, and train on."),
    set_: list[str] = typer.Option([], "--set", help="Any config field, dotted: --set train.warmup_fraction=0.05 --set objective_kwargs.temperature=0.2"),
) -> None:
    """Train a self-supervised objective and evaluate the encoder it learns.

    With only --objective (and optionally --modality) the objective's recipe supplies the encoder,
    augmentations, built-in dataset and training settings, sized to finish in minutes on a CPU.
    The run directory receives config.yaml (the resolved config), metrics.jsonl,
    checkpoints/last.pt, encoder.pt and eval.json; --logger sends the same to TensorBoard,
    MLflow or W&B. --init starts the encoder from weights you have (nothing is downloaded).
    One run, one folder: a folder that already holds a run is refused unless --resume or
    --overwrite is given, and a running run locks its folder (run.lock) against a second process.
    """
    from ssl_core.errors import ConfigError
    from ssl_core.rundir import check_fresh_run_dir, check_not_locked
    from ssl_core.runner import CONFIG_FILE, default_run_dir, resolve_config, run_experiment
    from ssl_core.streaming import PIPE_ENV

    if resume and out is None:
        raise ConfigError("--resume needs --out RUN_DIR: the folder of the run to continue.")
    if allow_pipe:  # the environment carries the opt-in to DataLoader workers and torchrun ranks
        os.environ[PIPE_ENV] = "1"
    if nproc_per_node > 1 and "LOCAL_RANK" not in os.environ:
        # re-launch this same command under torchrun; every rank must share one run directory
        cfg = resolve_config(objective, modality, config or (out / CONFIG_FILE if resume and out else None), {})
        argv = _strip_option(sys.argv[1:], "--nproc-per-node")
        run_dir = out or (Path(cfg.out) if cfg.out else default_run_dir(cfg))
        # refuse here rather than in every rank; rank 0 takes the lock itself, so none is taken now
        check_fresh_run_dir(run_dir, resume=resume, overwrite=overwrite)
        check_not_locked(run_dir)
        if out is None:
            argv += ["--out", str(run_dir)]
        from ssl_core.launch import launch  # forwards SIGTERM/SIGINT, reports the failed rank

        raise typer.Exit(launch(nproc_per_node, argv))

    overrides: dict[str, Any] = dict(parse_override(s) for s in set_)
    flat = {
        "data": str(data) if data else None, "dataset": dataset, "encoder": encoder,
        "out": str(out) if out else None, "train.epochs": epochs, "train.steps": steps,
        "train.batch_size": batch_size, "train.lr": lr, "train.optimizer": optimizer,
        "train.precision": precision, "train.device": device, "train.seed": seed,
        "train.strategy": strategy, "train.num_workers": num_workers, "init": init,
    }
    if init_partial:
        flat["init_partial"] = True
    if no_progress:
        flat["train.progress"] = False
    overrides.update({k: v for k, v in flat.items() if v is not None})
    if steps is not None and epochs is None:
        overrides["train.epochs"] = None
    from ssl_core.config import nest

    if resume:
        config = config or (out / CONFIG_FILE)
    cfg = resolve_config(objective, modality, config, nest(overrides))
    cfg.loggers = list(dict.fromkeys([*cfg.loggers, *logger]))  # --logger adds to the config's list
    cfg.out = cfg.out or str(default_run_dir(cfg))

    def announce(cfg: Any, data: Any) -> None:
        if os.environ.get("RANK", "0") == "0":  # one header per run, not one per process
            source = cfg.data or "built-in data"
            typer.echo(f"Training {cfg.objective} ({cfg.modality}) with encoder {cfg.encoder} on {source}, "
                       f"dataset {cfg.dataset}: {data.description}, into {cfg.out}", err=True)

    outcome = run_experiment(cfg, resume=resume, evaluate=not no_eval, overwrite=overwrite, announce=announce)
    if "LOCAL_RANK" in os.environ and os.environ.get("RANK", "0") != "0":
        return  # rank 0 reports
    typer.echo(f"Run directory: {outcome.run_dir}")
    typer.echo(f"Trained {outcome.train.steps} steps, final loss {outcome.train.final_loss:.4f}, "
               f"{outcome.train.samples_per_s:.1f} samples/s")
    if outcome.metrics:
        typer.echo(metrics_table(outcome.metrics))
    report_failures(outcome.run_dir, outcome.eval_failures)


def _strip_option(argv: list[str], name: str) -> list[str]:
    """Remove ``name VALUE`` / ``name=VALUE`` from an argument list."""
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == name:
            skip = True
            continue
        if arg.startswith(name + "="):
            continue
        out.append(arg)
    return out
