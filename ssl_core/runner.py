"""From a resolved config to a finished run: build components, train, export, evaluate.

This is the code path behind ``ssl run`` and ``ssl eval``; it is also the Python API for
single-objective runs (``ssl_core.run_experiment(cfg)``).
"""

from __future__ import annotations

import copy
import datetime as _dt
import inspect
import json
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import yaml

from ssl_core.checkpoint import atomic_torch_save, atomic_write_text, load_checkpoint, load_torch_file
from ssl_core.config import RunConfig, from_dict, resolve_probe_every, save_yaml
from ssl_core.errors import ConfigError, DataError, SSLKitError
from ssl_core.evaluators.features import shared_features
from ssl_core.interfaces import DataModule, Encoder, Evaluator, Objective
from ssl_core.jsonio import dumps_metrics
from ssl_core.loggers import LoggerGroup
from ssl_core.loggers.run import log_run_outputs, open_loggers
from ssl_core.registry import Registry, article, get_registry
from ssl_core.resolve import check_component_kwargs, resolve_config  # noqa: F401  (re-exported)
from ssl_core.rundir import RunLock, check_fresh_run_dir, clear_run_dir, launched_rank
from ssl_core.trainer import Trainer, TrainingInterrupted, TrainResult

ENCODER_FILE = "encoder.pt"
EVAL_FILE = "eval.json"
EVAL_ERRORS_FILE = "eval_errors.json"
CONFIG_FILE = "config.yaml"


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
    data = spec.build(path=cfg.data, **cfg.dataset_kwargs)
    used = data.extras.get("dataset")
    if used and used != cfg.dataset:
        # a built-in set stood in for a missing one (e.g. digits for Fashion-MNIST; the dataset
        # warned loudly): the config saved with the run names the data actually used
        cfg.dataset, cfg.dataset_kwargs = used, dict(data.extras.get("dataset_kwargs", {}))
    return data


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


def _sample_keys(data: DataModule) -> set[str] | None:
    """The fields of one evaluation (else training) sample, or ``None`` if none can be indexed."""
    for ds in (data.eval_test, data.eval_train, data.train):
        if ds is None or isinstance(ds, torch.utils.data.IterableDataset):
            continue
        try:
            return set(ds[0])
        except Exception:  # an empty split, or one that is not indexable
            continue
    return None


def check_evaluators(cfg: RunConfig, data: DataModule, registry: Registry | None = None) -> list[Evaluator]:
    """Build ``cfg.evaluators`` and check each fits this run, before any training step.

    An evaluator registered for another modality, one whose settings its class does not accept,
    or one that needs batch fields (:attr:`Evaluator.required_keys`) this data's samples lack is a
    :class:`ConfigError` naming the evaluator and the fix.
    """
    registry = registry or get_registry()
    keys = _sample_keys(data)
    built = []
    for name in cfg.evaluators:
        spec = registry.get("evaluator", name)
        others = [n for n in cfg.evaluators if n != name]
        fix = f"Remove it: --set 'evaluators=[{','.join(others)}]'"
        if spec.modality not in ("any", cfg.modality):
            raise ConfigError(f"Evaluator '{name}' (plugin {spec.plugin}) is {article(spec.modality)} evaluator, but this "
                              f"is {article(cfg.modality)} run. {fix}.")
        try:
            evaluator = spec.build(**cfg.eval_kwargs.get(name, {}))
        except TypeError as exc:
            raise ConfigError(f"eval_kwargs.{name}: {exc}. `ssl info {name}` lists its settings.") from exc
        required = tuple(getattr(evaluator, "required_keys", ()) or ())
        missing = [k for k in required if keys is not None and k not in keys]
        if missing:
            raise ConfigError(
                f"Evaluator '{name}' (plugin {spec.plugin}) needs the batch field(s) {', '.join(map(repr, missing))}, "
                f"but samples of dataset '{cfg.dataset}' have {', '.join(sorted(keys or ()))}. {fix}, or use a "
                "dataset that provides them."
            )
        built.append(evaluator)
    return built


def evaluate_encoder(
    encoder: Encoder, data: DataModule, cfg: RunConfig, registry: Registry | None = None,
    out_dir: Path | None = None, failures: dict[str, str] | None = None,
) -> dict[str, float]:
    """Run every evaluator named in ``cfg.evaluators``; return their merged metrics.

    An evaluator that raises is reported on stderr by name (and recorded in ``failures`` as
    ``name -> "Type: message"``); the others still run, so one broken evaluator never loses
    every metric.
    """
    registry = registry or get_registry()
    labelled = data.eval_train is not None and data.eval_test is not None
    results: dict[str, float] = {}
    with shared_features():  # kNN, linear probe, few-shot... embed the same splits once
        for name in cfg.evaluators:
            try:
                spec = registry.get("evaluator", name)
                evaluator = spec.build(**cfg.eval_kwargs.get(name, {}))
                if getattr(evaluator, "needs_labels", True) and not labelled:
                    continue  # probes need labels; unlabelled data still gets health/retrieval
                evaluator.out_dir = out_dir
                results.update({k: float(v) for k, v in evaluator.evaluate(encoder, data).items()})
            except Exception as exc:  # report by name and keep the other metrics
                message = f"{type(exc).__name__}: {exc}"
                if failures is not None:
                    failures[name] = message + "\n" + traceback.format_exc()
                print(f"sslkit: evaluator '{name}' failed: {message}", file=sys.stderr)
    return results


def write_evaluation(run_dir: Path, metrics: Mapping[str, Mapping[str, float]],
                     failures: Mapping[str, Mapping[str, str]] | None = None) -> None:
    """Write ``eval.json`` (metrics) and, when an evaluator failed, ``eval_errors.json``
    (encoder -> evaluator -> error and traceback); a stale error file from an earlier
    evaluation is removed."""
    atomic_write_text(run_dir / EVAL_FILE, dumps_metrics(metrics, indent=2))
    errors = {k: dict(v) for k, v in (failures or {}).items() if v}
    if errors:
        atomic_write_text(run_dir / EVAL_ERRORS_FILE, json.dumps(errors, indent=2))
    elif (run_dir / EVAL_ERRORS_FILE).exists():
        (run_dir / EVAL_ERRORS_FILE).unlink()


@dataclass
class RunOutcome:
    """What ``run_experiment`` returns: where the run lives, training result and evaluation."""

    run_dir: Path
    train: TrainResult
    metrics: dict[str, dict[str, float]]
    objective: Objective
    eval_failures: dict[str, dict[str, str]] = field(default_factory=dict)
    """Encoder ("trained"/"random") -> evaluator -> error, for evaluators that raised."""


def default_run_dir(cfg: RunConfig) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.modality}-{cfg.objective}-{stamp}"


def run_experiment(cfg: RunConfig, resume: bool = False, evaluate: bool = True,
                   registry: Registry | None = None, overwrite: bool = False,
                   announce: Callable[[RunConfig, DataModule], None] | None = None) -> RunOutcome:
    """Train ``cfg``'s objective, export the encoder, evaluate it (and a random one).

    One run, one folder: a fresh run into a folder that holds a run is refused unless
    ``overwrite`` (which clears it first) or ``resume`` is given, and the folder is locked while
    the run writes it (:mod:`ssl_core.rundir`). ``announce(cfg, data)`` is called once the data
    is built, before training: ``ssl run`` prints its run header there, so the header names the
    dataset actually used.
    """
    if resume and not cfg.out:
        raise ConfigError("Resuming needs the run directory: pass --out RUN_DIR (cfg.out).")
    run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    cfg.out = str(run_dir)
    if launched_rank() != 0:  # rank 0 checks and locks the folder; the other ranks write nothing there
        return _run(cfg, run_dir, resume, evaluate, registry, overwrite=False, announce=announce)
    check_fresh_run_dir(run_dir, resume=resume, overwrite=overwrite)
    with RunLock(run_dir):
        return _run(cfg, run_dir, resume, evaluate, registry, overwrite, announce)


def _run(cfg: RunConfig, run_dir: Path, resume: bool, evaluate: bool, registry: Registry | None,
         overwrite: bool, announce: Callable[[RunConfig, DataModule], None] | None = None) -> RunOutcome:
    registry = registry or get_registry()
    if resume:
        saved = run_dir / CONFIG_FILE
        if not saved.exists():
            raise DataError(f"Cannot resume: {saved} does not exist. Point --out at an earlier run directory.")
    data = build_data(cfg, registry)  # bad data fails here, before anything is written
    if announce is not None:
        announce(cfg, data)
    if evaluate:
        check_evaluators(cfg, data, registry)  # an evaluator that cannot run here fails before training
    torch.manual_seed(cfg.train.seed)  # the same seeding as random_encoder_like
    encoder = build_encoder(cfg, data, registry)
    random_encoder = copy.deepcopy(encoder) if cfg.compare_random and evaluate else None
    if cfg.init and not resume:  # a resumed run's checkpoint already holds the weights
        apply_init(encoder, cfg, registry)
    objective = build_objective(cfg, encoder, data, registry)
    trainer = Trainer(objective, data, cfg.train, run_dir, loggers=[])  # joins the process group under torchrun
    resolve_probe_every(trainer.cfg, trainer.total_steps)  # a few in-training probes unless set
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
    failures: dict[str, dict[str, str]] = {"trained": {}, "random": {}}
    if evaluate and cfg.evaluators:
        metrics["trained"] = evaluate_encoder(trained, data, cfg, registry, out_dir=run_dir,
                                              failures=failures["trained"])
        if random_encoder is not None:
            # the trained encoder's layout, so both are evaluated at the same speed
            layout = torch.channels_last if trainer.channels_last else torch.preserve_format
            metrics["random"] = evaluate_encoder(random_encoder.to(trainer.device, memory_format=layout), data, cfg,
                                                 registry, failures=failures["random"])
        write_evaluation(run_dir, metrics, failures)
    log_run_outputs(loggers, run_dir, metrics, result.steps)
    return RunOutcome(run_dir, result, metrics, objective, {k: v for k, v in failures.items() if v})


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
    """Save the trained encoder with what is needed to rebuild it (:func:`load_encoder_file`)."""
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


def encoder_from_file(path: str | Path, registry: Registry | None = None) -> Encoder:
    """Rebuild an encoder saved by :func:`export_encoder` (``encoder.pt``, or an experiment's
    ``encoders/<name>.pt``) from its registered name, settings and weights."""
    registry = registry or get_registry()
    state = load_encoder_file(path)
    spec = registry.get("encoder", state["encoder"], modality=state.get("modality") or None)
    encoder = spec.build(**state["encoder_kwargs"])
    encoder.load_state_dict(state["state_dict"])
    return encoder


def random_encoder_like(cfg: RunConfig, data: DataModule, registry: Registry | None = None) -> Encoder:
    """A freshly initialised encoder of the run's architecture, seeded as the run was."""
    torch.manual_seed(cfg.train.seed)
    return build_encoder(cfg, data, registry)
