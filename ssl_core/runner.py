"""From a resolved config to a finished run: build components, train, export, evaluate.

This is the code path behind ``ssl run`` and ``ssl eval``; it is also the Python API for
single-objective runs (``ssl_core.run_experiment(cfg)``).
"""

from __future__ import annotations

import copy
import datetime as _dt
import difflib
import inspect
import json
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import yaml

from ssl_core.checkpoint import atomic_torch_save, atomic_write_text, load_checkpoint, load_torch_file
from ssl_core.config import RunConfig, coerce_value, from_dict, load_file, merge, save_yaml, validate_choices
from ssl_core.errors import ConfigError, DataError, SSLKitError
from ssl_core.evaluators.features import shared_features
from ssl_core.hf_data import looks_like_hf_dataset
from ssl_core.interfaces import DataModule, Encoder, Objective
from ssl_core.loggers import LoggerGroup
from ssl_core.loggers.run import log_run_outputs, open_loggers
from ssl_core.registry import Registry, get_registry
from ssl_core.rundir import RunLock, check_fresh_run_dir, clear_run_dir, launched_rank
from ssl_core.trainer import Trainer, TrainingInterrupted, TrainResult

ENCODER_FILE = "encoder.pt"
EVAL_FILE = "eval.json"
CONFIG_FILE = "config.yaml"


def resolve_config(
    objective: str | None = None,
    modality: str | None = None,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
) -> RunConfig:
    """Merge defaults < objective recipe < config file < overrides into a validated RunConfig."""
    registry = registry or get_registry()
    file_data = _without_saved_out(load_file(config_file), config_file) if config_file else {}
    overrides = dict(overrides or {})
    objective = objective or overrides.get("objective") or file_data.get("objective")
    modality = modality or overrides.get("modality") or file_data.get("modality") or None
    if not objective:
        names = ", ".join(s.name for s in registry.list("objective", modality=modality))
        raise ConfigError(f"Name an objective with --objective (available: {names or 'none installed'}).")
    spec = registry.get("objective", objective, modality=modality)
    base = {"modality": spec.modality, "objective": objective}
    base = merge(base, {k: v for k, v in spec.recipe.items() if v is not None})
    for part in ("encoder", "augmenter", "dataset"):
        # the recipe's settings belong to the recipe's component: another one may not accept them
        chosen = overrides.get(part) or file_data.get(part)
        if chosen and chosen != base.get(part):
            base.pop(f"{part}_kwargs", None)
    from_dict(RunConfig, base, f"recipe of objective '{objective}' (plugin {spec.plugin})")
    with_file = merge(base, file_data)
    if config_file:
        from_dict(RunConfig, with_file, f"config file {config_file}")
    cfg = from_dict(RunConfig, merge(with_file, overrides), "command line")
    if cfg.modality != spec.modality:
        raise ConfigError(f"Objective '{objective}' is a {spec.modality} objective, but modality is '{cfg.modality}'.")
    if cfg.data and registry.get("dataset", cfg.dataset).builtin and "dataset" not in overrides:
        # a path was given: switch from the built-in set to the modality's file reader
        path_sets = [s for s in registry.list("dataset", modality=cfg.modality) if not s.builtin]
        if not path_sets:
            raise ConfigError(f"No installed {cfg.modality} dataset reads files from a path; drop --data.")
        hf = [s for s in path_sets if s.name.startswith("hf_")]  # Hugging Face readers, by convention
        cfg.dataset = (hf if hf and looks_like_hf_dataset(cfg.data) else [s for s in path_sets if s not in hf] or path_sets)[0].name
    validate_choices(cfg)
    check_component_kwargs(cfg, registry)
    return cfg


# the runner passes these itself; a *_kwargs entry of the same name would collide
_PASSED_BY_RUNNER = {"objective": {"encoder", "augmenter"}, "dataset": {"path"}, "encoder": set(), "augmenter": set()}


def check_component_kwargs(cfg: RunConfig, registry: Registry | None = None) -> None:
    """Check ``objective_kwargs``, ``encoder_kwargs``, ``augmenter_kwargs`` and ``dataset_kwargs``
    against their component's signature, before anything is built: unknown names (with a
    suggestion), names the runner passes itself, and values of the wrong simple type."""
    registry = registry or get_registry()
    for part, reserved in _PASSED_BY_RUNNER.items():
        name, kwargs = getattr(cfg, part), getattr(cfg, f"{part}_kwargs")
        if not name or not kwargs:
            continue
        spec = registry.get(part, name, modality=cfg.modality)
        _check_kwargs(spec, kwargs, f"{part}_kwargs", reserved)


def _check_kwargs(spec: Any, kwargs: Mapping[str, Any], field: str, reserved: set[str]) -> None:
    factory, what = spec.factory, f"{spec.kind} '{spec.name}' (plugin {spec.plugin})"
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return  # no signature to check against (a C function, some partials)
    named = {n: p for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in params.values())
    try:
        hints = typing.get_type_hints(factory.__init__ if inspect.isclass(factory) else factory)
    except Exception:  # annotations that do not resolve: check names only
        hints = {}
    accepted = sorted(n for n in named if n not in reserved)
    for key, value in kwargs.items():
        if key in reserved:
            raise ConfigError(f"{field}.{key} cannot be set: sslkit passes '{key}' to the {what} itself. Remove it.")
        if key not in named:
            if open_ended:
                continue
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" Did you mean '{field}.{close[0]}'?" if close else ""
            raise ConfigError(
                f"Unknown setting {field}.{key} for the {what}.{hint} It accepts: {', '.join(accepted) or 'nothing'} "
                f"(`ssl info {spec.name}` shows the defaults)."
            )
        if key in hints:
            coerce_value(value, hints[key], f"{field}.{key}", f"the {what}")


def _without_saved_out(file_data: dict[str, Any], config_file: str | Path) -> dict[str, Any]:
    """Drop ``out`` from a run's own saved ``config.yaml``: repeating a run must not write into it.

    A config file is a saved run's when it sits in the folder its ``out`` names. Its ``out`` is
    ignored (the new run gets a fresh default folder, or ``--out``); any other file's ``out`` is
    used as written (and a folder holding a run is then refused by ``check_fresh_run_dir``).
    """
    out = file_data.get("out")
    if isinstance(out, str) and out and Path(out).resolve() == Path(config_file).resolve().parent:
        return {k: v for k, v in file_data.items() if k != "out"}
    return file_data


def _accepted(factory: Callable[..., Any], hints: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``hints`` that ``factory`` accepts by keyword."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(hints)
    return {k: v for k, v in hints.items() if k in params}


def build_data(cfg: RunConfig, registry: Registry | None = None) -> DataModule:
    """Build the run's DataModule from the dataset registry."""
    registry = registry or get_registry()
    spec = registry.get("dataset", cfg.dataset, modality=cfg.modality)
    if not spec.builtin and not cfg.data:
        raise ConfigError(f"Dataset '{cfg.dataset}' reads your files: pass --data PATH.")
    return spec.build(path=cfg.data, **cfg.dataset_kwargs)


def build_encoder(cfg: RunConfig, data: DataModule | None = None, registry: Registry | None = None) -> Encoder:
    """Build the encoder; data-derived hints (channels, vocab size) fill unset kwargs."""
    registry = registry or get_registry()
    spec = registry.get("encoder", cfg.encoder, modality=cfg.modality)
    hints = data.extras.get("encoder_kwargs", {}) if data is not None else {}
    kwargs = {**_accepted(spec.factory, hints), **cfg.encoder_kwargs}
    cfg.encoder_kwargs = kwargs
    return spec.build(**kwargs)


def build_objective(cfg: RunConfig, encoder: Encoder, data: DataModule, registry: Registry | None = None) -> Objective:
    """Build the augmenter (if any) and the objective around ``encoder``."""
    registry = registry or get_registry()
    augmenter = None
    if cfg.augmenter:
        aspec = registry.get("augmenter", cfg.augmenter, modality=cfg.modality)
        hints = _accepted(aspec.factory, data.extras.get("augmenter_kwargs", {}))
        cfg.augmenter_kwargs = {**hints, **cfg.augmenter_kwargs}
        augmenter = aspec.build(**cfg.augmenter_kwargs)
    ospec = registry.get("objective", cfg.objective, modality=cfg.modality)
    hints = _accepted(ospec.factory, data.extras.get("objective_kwargs", {}))
    cfg.objective_kwargs = {**hints, **cfg.objective_kwargs}
    return ospec.factory(encoder=encoder, augmenter=augmenter, **cfg.objective_kwargs)


def evaluate_encoder(
    encoder: Encoder, data: DataModule, cfg: RunConfig, registry: Registry | None = None,
    out_dir: Path | None = None,
) -> dict[str, float]:
    """Run every evaluator named in ``cfg.evaluators``; return their merged metrics."""
    registry = registry or get_registry()
    labelled = data.eval_train is not None and data.eval_test is not None
    results: dict[str, float] = {}
    with shared_features():  # kNN, linear probe, few-shot... embed the same splits once
        for name in cfg.evaluators:
            spec = registry.get("evaluator", name)
            evaluator = spec.build(**cfg.eval_kwargs.get(name, {}))
            if getattr(evaluator, "needs_labels", True) and not labelled:
                continue  # probes need labels; unlabelled data still gets health/retrieval
            evaluator.out_dir = out_dir
            results.update({k: float(v) for k, v in evaluator.evaluate(encoder, data).items()})
    return results


@dataclass
class RunOutcome:
    """What ``run_experiment`` returns: where the run lives, training result and evaluation."""

    run_dir: Path
    train: TrainResult
    metrics: dict[str, dict[str, float]]
    objective: Objective


def default_run_dir(cfg: RunConfig) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.modality}-{cfg.objective}-{stamp}"


def run_experiment(cfg: RunConfig, resume: bool = False, evaluate: bool = True,
                   registry: Registry | None = None, overwrite: bool = False) -> RunOutcome:
    """Train ``cfg``'s objective, export the encoder, evaluate it (and a random one).

    One run, one folder: a fresh run into a folder that holds a run is refused unless
    ``overwrite`` (which clears it first) or ``resume`` is given, and the folder is locked while
    the run writes it (:mod:`ssl_core.rundir`).
    """
    if resume and not cfg.out:
        raise ConfigError("Resuming needs the run directory: pass --out RUN_DIR (cfg.out).")
    run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    cfg.out = str(run_dir)
    if launched_rank() != 0:  # rank 0 checks and locks the folder; the other ranks write nothing there
        return _run(cfg, run_dir, resume, evaluate, registry, overwrite=False)
    check_fresh_run_dir(run_dir, resume=resume, overwrite=overwrite)
    with RunLock(run_dir):
        return _run(cfg, run_dir, resume, evaluate, registry, overwrite)


def _run(cfg: RunConfig, run_dir: Path, resume: bool, evaluate: bool, registry: Registry | None,
         overwrite: bool) -> RunOutcome:
    registry = registry or get_registry()
    if resume:
        saved = run_dir / CONFIG_FILE
        if not saved.exists():
            raise DataError(f"Cannot resume: {saved} does not exist. Point --out at an earlier run directory.")
    data = build_data(cfg, registry)  # bad data fails here, before anything is written
    torch.manual_seed(cfg.train.seed)  # the same seeding as random_encoder_like
    encoder = build_encoder(cfg, data, registry)
    random_encoder = copy.deepcopy(encoder) if cfg.compare_random and evaluate else None
    if cfg.init and not resume:  # a resumed run's checkpoint already holds the weights
        apply_init(encoder, cfg, registry)
    objective = build_objective(cfg, encoder, data, registry)
    trainer = Trainer(objective, data, cfg.train, run_dir, loggers=[])  # joins the process group under torchrun
    if resume:  # before config.yaml is rewritten: a refused resume leaves the run as it was
        _check_resumable(trainer, run_dir, evaluate and bool(cfg.evaluators))
    if trainer.is_main:
        if overwrite:
            clear_run_dir(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, run_dir / CONFIG_FILE)
    loggers = open_loggers(cfg, run_dir, registry) if trainer.is_main else LoggerGroup()  # rank 0 logs
    trainer.loggers = loggers.loggers
    status = "failed"
    try:
        outcome = _train_and_evaluate(cfg, trainer, objective, data, random_encoder, run_dir, resume, evaluate,
                                      registry, loggers)
        status = "finished"
        return outcome
    except TrainingInterrupted:
        status = "interrupted"
        raise
    finally:
        loggers.close(status)


def _train_and_evaluate(cfg: RunConfig, trainer: Trainer, objective: Objective, data: DataModule,
                        random_encoder: Encoder | None, run_dir: Path, resume: bool, evaluate: bool,
                        registry: Registry, loggers: LoggerGroup) -> RunOutcome:
    try:
        result = trainer.fit(resume=resume)
        # under FSDP every rank holds a shard: gather the full weights (a collective) for rank 0
        full_state = trainer.full_objective_state() if trainer.fsdp is not None else None
    except TrainingInterrupted:
        trainer.strategy.close()  # every rank stopped at the same step, after the checkpoint
        raise
    except BaseException:
        # no barrier: the other ranks may be waiting in a collective this rank will never join.
        # This process exits with the error; the launcher then stops the others.
        trainer.strategy.abandon()
        raise
    trainer.strategy.close()
    metrics: dict[str, dict[str, float]] = {}
    if not trainer.is_main:  # rank 0 exports and evaluates
        return RunOutcome(run_dir, result, metrics, objective)
    if full_state is not None:  # rebuild an unsharded objective on rank 0 to export and evaluate
        objective = build_objective(cfg, build_encoder(cfg, data, registry), data, registry).to(trainer.device)
        objective.load_state_dict(full_state)
    trained = objective.encoder_for_evaluation()
    export_encoder(trained, cfg, run_dir / ENCODER_FILE)
    objective.on_train_end(run_dir, data)
    if evaluate and cfg.evaluators:
        metrics["trained"] = evaluate_encoder(trained, data, cfg, registry, out_dir=run_dir)
        if random_encoder is not None:
            metrics["random"] = evaluate_encoder(random_encoder.to(trainer.device), data, cfg, registry)
        atomic_write_text(run_dir / EVAL_FILE, json.dumps(metrics, indent=2))
    log_run_outputs(loggers, run_dir, metrics, result.steps)
    return RunOutcome(run_dir, result, metrics, objective)


class RunFinishedError(SSLKitError):
    """``--resume`` of a run that has trained all its steps and been exported and evaluated."""


def _check_resumable(trainer: Trainer, run_dir: Path, evaluate: bool) -> None:
    """Refuse a resume that cannot continue: the checkpoint is past the new total, or the run is
    finished (trained, exported and, when asked for, evaluated). A run stopped after its last
    step but before export or evaluation resumes to finish those."""
    path = trainer.checkpoint_path
    assert path is not None
    if not path.exists():
        raise DataError(f"No checkpoint to resume from at {path}: the run stopped before its first checkpoint. "
                        f"Start it again with --overwrite.")
    step = int(load_checkpoint(path, mmap=True)["step"])
    trainer.check_resume_step(step, path)
    complete = (run_dir / ENCODER_FILE).exists() and (not evaluate or (run_dir / EVAL_FILE).exists())
    if step == trainer.total_steps and complete:
        raise RunFinishedError(
            f"The run in {run_dir} is finished: it trained all {step} steps and was exported. To train it longer, "
            f"resume with more steps (e.g. --resume --out {run_dir} --steps {2 * step}); to evaluate it again, "
            f"`ssl eval {run_dir}`."
        )


def apply_init(encoder: Encoder, cfg: RunConfig, registry: Registry | None = None) -> None:
    """Load ``cfg.init`` into ``encoder`` (strict unless ``cfg.init_partial``) and print the report."""
    import sys

    from ssl_core.init_weights import init_encoder

    report = init_encoder(encoder, cfg.init, registry, allow_partial=cfg.init_partial)  # type: ignore[arg-type]
    if os.environ.get("RANK", "0") == "0":  # once per run, not per process
        print(report.summary(), file=sys.stderr)


def export_encoder(encoder: Encoder, cfg: RunConfig, path: Path) -> None:
    """Save the trained encoder with what is needed to rebuild it (``load_encoder``)."""
    atomic_torch_save(
        {"encoder": cfg.encoder, "encoder_kwargs": cfg.encoder_kwargs, "modality": cfg.modality,
         "state_dict": {k: v.detach().cpu() for k, v in encoder.state_dict().items()}},
        path,
    )


def load_run(run_dir: str | Path, registry: Registry | None = None) -> tuple[RunConfig, DataModule, Encoder]:
    """Rebuild a finished run's config, data and trained encoder from its directory."""
    registry = registry or get_registry()
    run_dir = Path(run_dir)
    cfg_path, enc_path = run_dir / CONFIG_FILE, run_dir / ENCODER_FILE
    for p in (cfg_path, enc_path):
        if not p.exists():
            raise DataError(f"{p} is missing: is {run_dir} a finished `ssl run` directory?")
    cfg = from_dict(RunConfig, yaml.safe_load(cfg_path.read_text()), str(cfg_path))
    data = build_data(cfg, registry)
    encoder = build_encoder(cfg, data, registry)
    state = load_encoder_file(enc_path)
    encoder.load_state_dict(state["state_dict"])
    return cfg, data, encoder


def load_encoder_file(path: str | Path) -> dict[str, Any]:
    """Read an ``encoder.pt`` written by :func:`export_encoder`, safely (tensors and plain values
    only; see :func:`ssl_core.checkpoint.load_torch_file`)."""
    state = load_torch_file(path, what="encoder file", fix="Restore it from a copy, or delete it and export it again from the last checkpoint with "
                             "`ssl run --resume --out RUN_DIR`.")
    missing = [k for k in ("encoder", "encoder_kwargs", "state_dict") if not (isinstance(state, dict) and k in state)]
    if missing:
        raise DataError(f"{path} is not an encoder file written by `ssl run` (no {', '.join(missing)}).")
    return state


def random_encoder_like(cfg: RunConfig, data: DataModule, registry: Registry | None = None) -> Encoder:
    """A freshly initialised encoder of the run's architecture, seeded as the run was."""
    torch.manual_seed(cfg.train.seed)
    return build_encoder(cfg, data, registry)
