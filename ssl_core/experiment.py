"""Mixed-modality experiments: several encoders and weighted objectives over several data streams,
trained together through the one shared Trainer.

    from ssl_core import Experiment

    exp = Experiment(train={"steps": 200, "batch_size": 128}, out="runs/two-towers")
    exp.add_data("images", "digits")
    exp.add_data("speech", "spoken_words")
    exp.add_objective("simclr", "simclr", data="images")            # builds its recipe's encoder
    exp.add_objective("w2v", "wav2vec2", data="speech", weight=0.5)
    result = exp.fit()
    print(exp.evaluate("simclr"))

Objectives can share an encoder (pass the same ``encoder=`` name or instance), e.g. a CLIP
image tower that SimCLR also trains (SLIP). The total loss is ``sum(weight_i * loss_i)``; each
objective's loss is logged as ``<name>/loss``.

With ``out=RUN_DIR``, :meth:`Experiment.fit` leaves a run folder that ``ssl eval``, ``ssl report``
and ``ssl compare`` read like an ``ssl run`` folder: ``experiment.yaml`` (the resolved
experiment), ``metrics.jsonl``, ``checkpoints/last.pt``, ``encoders/<name>.pt`` (each named
encoder, exported as ``ssl run`` exports ``encoder.pt``) and ``eval.json`` (metrics named
``<encoder>/<metric>``, trained next to random). See docs/experiments.md.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import yaml
from torch import Tensor, nn
from torch.utils.data import Dataset

from ssl_core.checkpoint import atomic_write_text
from ssl_core.config import RunConfig, TrainConfig, from_dict, merge
from ssl_core.data import default_collate
from ssl_core.errors import ConfigError, DataError
from ssl_core.interfaces import Batch, DataModule, Encoder, Objective, StepInfo
from ssl_core.registry import Registry, get_registry
from ssl_core.rundir import RunLock, check_fresh_run_dir, clear_run_dir, launched_rank
from ssl_core.runner import _accepted, check_evaluators, evaluate_encoder, export_encoder, write_evaluation
from ssl_core.trainer import Trainer, TrainResult

EXPERIMENT_FILE = "experiment.yaml"
"""The resolved experiment in a run folder (what ``config.yaml`` is to an ``ssl run`` folder)."""
ENCODERS_DIR = "encoders"
"""Run-folder sub-folder holding one exported encoder per named encoder: ``<name>.pt``."""
DEFAULT_EVALUATORS = ("knn", "linear_probe", "health")


class ZipDataset(Dataset):
    """Index ``i`` -> ``{stream: stream_dataset[i % len(stream_dataset)]}``.

    An epoch is one pass over the longest stream; shorter streams cycle.
    """

    def __init__(self, streams: Mapping[str, Dataset]) -> None:
        self.streams = dict(streams)
        self.lengths = {k: len(v) for k, v in self.streams.items()}  # type: ignore[arg-type]
        for k, n in self.lengths.items():
            if n == 0:
                raise ConfigError(f"Data stream '{k}' is empty.")

    def __len__(self) -> int:
        return max(self.lengths.values())

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {k: ds[i % self.lengths[k]] for k, ds in self.streams.items()}


def zip_collate(collates: Mapping[str, Any]):  # type: ignore[no-untyped-def]
    """Collate each stream's samples with that stream's own collate function."""

    def collate(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return {k: (fn or default_collate)([s[k] for s in samples]) for k, fn in collates.items()}

    return collate


@dataclass
class Task:
    """One weighted objective reading one data stream."""

    name: str
    objective: Objective
    stream: str
    weight: float


class MultiObjective(Objective):
    """Weighted sum of named objectives, each fed its own stream of a zipped batch."""

    def __init__(self, tasks: Sequence[Task]) -> None:
        super().__init__()
        if not tasks:
            raise ConfigError("An Experiment needs at least one objective: call add_objective().")
        self.tasks = list(tasks)
        self.objectives = nn.ModuleDict({t.name: t.objective for t in tasks})
        self.encoder = tasks[0].objective.encoder
        self.min_batch_size = max(t.objective.min_batch_size for t in tasks)

    def training_step(self, batch: Batch, step: StepInfo) -> dict[str, Tensor]:
        total: Tensor | None = None
        logs: dict[str, Tensor] = {}
        for t in self.tasks:
            out = t.objective.training_step(batch[t.stream], step)
            weighted = t.weight * out["loss"]
            total = weighted if total is None else total + weighted
            logs[f"{t.name}/loss"] = out["loss"].detach()
            logs.update({f"{t.name}/{k}": v for k, v in out.items() if k != "loss"})
        assert total is not None
        return {"loss": total, **logs}

    def on_before_optimizer_step(self, step: StepInfo) -> None:
        for t in self.tasks:
            t.objective.on_before_optimizer_step(step)

    def on_after_optimizer_step(self, step: StepInfo) -> None:
        for t in self.tasks:
            t.objective.on_after_optimizer_step(step)

    def on_train_end(self, run_dir: Path | None, data: DataModule) -> None:
        for t in self.tasks:
            sub = data.extras.get("streams", {}).get(t.stream, data)
            task_dir = None if run_dir is None else run_dir / t.name
            if task_dir is not None:
                task_dir.mkdir(parents=True, exist_ok=True)  # each objective writes its artifacts here
            t.objective.on_train_end(task_dir, sub)
            if task_dir is not None and not any(task_dir.iterdir()):
                task_dir.rmdir()  # nothing written: no empty folder in the run directory

    def teacher_modules(self) -> list[nn.Module]:
        return [m for t in self.tasks for m in t.objective.teacher_modules()]

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Each objective's groups; a parameter shared by several objectives appears once."""
        seen: set[int] = set()
        groups = []
        for t in self.tasks:
            for g in t.objective.param_groups(weight_decay):
                params = [p for p in g["params"] if id(p) not in seen]
                seen.update(id(p) for p in params)
                if params:
                    groups.append({**g, "params": params})
        return groups


class Experiment:
    """Compose encoders, data streams and weighted objectives; train them in one loop."""

    def __init__(self, train: TrainConfig | Mapping[str, Any] | None = None, out: str | Path | None = None,
                 registry: Registry | None = None, seed: int | None = None) -> None:
        self.registry = registry or get_registry()
        if train is None or isinstance(train, Mapping):
            train = from_dict(TrainConfig, merge({"health_every": 0}, dict(train or {})), "Experiment(train=...)")
        self.train_cfg: TrainConfig = train
        if seed is not None:
            self.train_cfg.seed = seed
        self.out = Path(out) if out is not None else None
        self.streams: dict[str, DataModule] = {}
        self.encoders: dict[str, Encoder] = {}
        self.tasks: list[Task] = []
        self.trainer: Trainer | None = None
        self._initial: dict[int, Encoder] = {}  # untrained copies, for random baselines
        # what each stream / encoder / objective was built from, for experiment.yaml and `ssl eval`
        self._data_specs: dict[str, dict[str, Any]] = {}
        self._encoder_specs: dict[str, dict[str, Any]] = {}
        self._objective_specs: dict[str, dict[str, Any]] = {}
        self.metrics: dict[str, dict[str, float]] = {}
        """After :meth:`fit` with evaluation: ``{"trained"|"random": {"<encoder>/<metric>": value}}``."""
        self.eval_failures: dict[str, dict[str, str]] = {}
        self._fit_evaluators: list[str] | None = None

    # -------------------------------------------------------------------- composition
    def add_data(self, name: str, data: DataModule | str, path: str | None = None, **kwargs: Any) -> DataModule:
        """Add a data stream: a DataModule, or a registered dataset name (with ``path``/kwargs)."""
        spec: dict[str, Any] = {"dataset": None, "path": path, "dataset_kwargs": dict(kwargs), "modality": None}
        if isinstance(data, str):
            dspec = self.registry.get("dataset", data)
            spec.update(dataset=data, modality=dspec.modality)
            data = dspec.build(path=path, **kwargs)
        self.streams[name] = data
        self._data_specs[name] = spec
        return data

    def add_encoder(self, name: str, encoder: Encoder | str, data: str | None = None, **kwargs: Any) -> Encoder:
        """Add a named encoder: an instance, or a registered name built with ``kwargs`` (plus
        hints from stream ``data``, e.g. input channels)."""
        record: dict[str, Any] = {"encoder": None, "encoder_kwargs": {}, "modality": getattr(encoder, "modality", None),
                                  "data": data, "init_seed": None}
        if isinstance(encoder, str):
            spec = self.registry.get("encoder", encoder)
            hints = self.streams[data].extras.get("encoder_kwargs", {}) if data else {}
            seed = self.train_cfg.seed + len(self.encoders)
            torch.manual_seed(seed)
            full = {**_accepted(spec.factory, hints), **kwargs}
            encoder = spec.build(**full)
            record.update(encoder=spec.name, encoder_kwargs=full, modality=spec.modality, init_seed=seed)
        self.encoders[name] = encoder
        self._encoder_specs[name] = record
        return encoder

    def add_objective(
        self, name: str, objective: Objective | str, data: str, weight: float = 1.0,
        encoder: Encoder | str | None = None, augmenter: Any = None, **objective_kwargs: Any,
    ) -> Objective:
        """Add a weighted objective reading stream ``data``.

        ``objective`` is an instance or a registered name; for a name, its recipe supplies the
        encoder (unless ``encoder`` names one added with :meth:`add_encoder` or is an instance),
        the augmenter and default kwargs.
        """
        if data not in self.streams:
            raise ConfigError(f"Unknown data stream '{data}'; add it first with add_data(). Known: {sorted(self.streams)}")
        if any(t.name == name for t in self.tasks):
            raise ConfigError(f"An objective named '{name}' was already added.")
        stream = self.streams[data]
        if isinstance(objective, str):
            spec = self.registry.get("objective", objective)
            cfg = from_dict(RunConfig, {"modality": spec.modality, "objective": objective, **spec.recipe})
            if isinstance(encoder, str):
                enc = self.encoders.get(encoder) or self.add_encoder(f"{name}.encoder", encoder, data=data)
            elif isinstance(encoder, Encoder):
                enc = encoder
            else:
                enc = self.add_encoder(f"{name}.encoder", cfg.encoder, data=data, **cfg.encoder_kwargs)
            if augmenter is None and cfg.augmenter:
                aspec = self.registry.get("augmenter", cfg.augmenter)
                hints = _accepted(aspec.factory, stream.extras.get("augmenter_kwargs", {}))
                augmenter = aspec.build(**{**hints, **cfg.augmenter_kwargs})
            hints = _accepted(spec.factory, stream.extras.get("objective_kwargs", {}))
            kwargs = {**hints, **cfg.objective_kwargs, **objective_kwargs}
            objective = spec.factory(encoder=enc, augmenter=augmenter, **kwargs)
            self._objective_specs[name] = {"objective": spec.name, "modality": spec.modality,
                                           "augmenter": cfg.augmenter if augmenter is not None else None,
                                           "objective_kwargs": kwargs, "evaluators": list(cfg.evaluators),
                                           "eval_kwargs": dict(cfg.eval_kwargs)}
        self._initial.setdefault(id(objective.encoder), copy.deepcopy(objective.encoder))
        if not any(e is objective.encoder for e in self.encoders.values()):  # an instance passed in: name it
            self.encoders[f"{name}.encoder"] = objective.encoder
            self._encoder_specs[f"{name}.encoder"] = {"encoder": None, "encoder_kwargs": {}, "data": data,
                                                      "modality": getattr(objective.encoder, "modality", None),
                                                      "init_seed": None}
        self.tasks.append(Task(name, objective, data, float(weight)))
        return objective

    # -------------------------------------------------------------------- training
    def build_data(self) -> DataModule:
        """The zipped DataModule the Trainer reads (one sample per stream per index)."""
        used = {t.stream for t in self.tasks}
        streams = {k: v for k, v in self.streams.items() if k in used}
        return DataModule(
            train=ZipDataset({k: v.train for k, v in streams.items()}),
            collate=zip_collate({k: v.collate for k, v in streams.items()}),
            description="zip of " + ", ".join(streams),
            extras={"streams": streams},
        )

    def fit(self, resume: bool = False, evaluate: bool = True, compare_random: bool = True,
            evaluators: Sequence[str] | None = None, overwrite: bool = False) -> TrainResult:
        """Train every objective together; returns the Trainer's result.

        With ``out`` set, the run folder also receives ``experiment.yaml`` (before training),
        ``encoders/<name>.pt`` for every named encoder, and, unless ``evaluate=False``,
        ``eval.json``: each encoder probed on its stream with the evaluators of the recipe that
        trains it (see :meth:`encoder_evaluators`; ``evaluators`` names others for every
        encoder), next to its untrained initialisation. Evaluators are checked before the first
        step, as ``ssl run`` checks them; results are also kept in :attr:`metrics`. The folder
        follows the rules of ``ssl run``: a folder holding a run is refused unless ``resume`` or
        ``overwrite`` (which clears it), and it is locked meanwhile.
        """
        self.objective = MultiObjective(self.tasks)
        self._fit_evaluators = list(evaluators) if evaluators is not None else None
        if evaluate:
            for enc_name in self._trained_encoders():
                check_evaluators(self._eval_config(enc_name), self.streams[self._stream_of(enc_name)], self.registry)
        if self.out is None or launched_rank() != 0:
            return self._fit(resume, evaluate, compare_random)
        check_fresh_run_dir(self.out, resume=resume, overwrite=overwrite)
        with RunLock(self.out):
            if overwrite:
                clear_run_dir(self.out)
            return self._fit(resume, evaluate, compare_random)

    def _fit(self, resume: bool, evaluate: bool, compare_random: bool) -> TrainResult:
        self.trainer = Trainer(self.objective, self.build_data(), self.train_cfg, self.out)
        if self.out is not None and self.trainer.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out / EXPERIMENT_FILE, yaml.safe_dump(self.to_dict(), sort_keys=False))
        result = self.trainer.fit(resume=resume)
        if not self.trainer.is_main:
            return result
        self.objective.on_train_end(self.out, self.trainer.data)
        if self.out is not None:
            self.export(self.out / ENCODERS_DIR)
        if evaluate:
            self.metrics, self.eval_failures = self._evaluate_all(compare_random)
            if self.out is not None:
                write_evaluation(self.out, self.metrics, self.eval_failures)
        return result

    # -------------------------------------------------------------------- run folder
    def _trained_encoders(self) -> list[str]:
        """Names of the encoders some objective trains, in the order they were added."""
        return [n for n, e in self.encoders.items() if any(t.objective.encoder is e for t in self.tasks)]

    def _stream_of(self, encoder_name: str) -> str:
        enc = self.encoders[encoder_name]
        return next(t.stream for t in self.tasks if t.objective.encoder is enc)

    def _first_task(self, encoder_name: str) -> Task:
        enc = self.encoders[encoder_name]
        return next(t for t in self.tasks if t.objective.encoder is enc)

    def encoder_evaluators(self, encoder_name: str) -> list[str]:
        """The evaluators :meth:`fit` runs on an encoder: those passed to :meth:`fit`, else those of
        the recipe of the first objective that trains it (for an objective passed as an instance:
        kNN, linear probe, health)."""
        if self._fit_evaluators is not None:
            return list(self._fit_evaluators)
        spec = self._objective_specs.get(self._first_task(encoder_name).name)
        return list(spec["evaluators"]) if spec else list(DEFAULT_EVALUATORS)

    def _eval_config(self, encoder_name: str, evaluators: Sequence[str] | None = None) -> RunConfig:
        task = self._first_task(encoder_name)
        spec = self._objective_specs.get(task.name, {})
        data = self._data_specs.get(task.stream, {})
        modality = self._encoder_specs[encoder_name].get("modality") or spec.get("modality") or data.get("modality")
        return RunConfig(modality=modality or "", dataset=data.get("dataset") or task.stream,
                         evaluators=list(evaluators or self.encoder_evaluators(encoder_name)),
                         eval_kwargs=dict(spec.get("eval_kwargs", {})))

    def _evaluate_all(self, compare_random: bool) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, str]]]:
        metrics: dict[str, dict[str, float]] = {"trained": {}}
        failures: dict[str, dict[str, str]] = {"trained": {}}
        if compare_random:
            metrics["random"], failures["random"] = {}, {}
        for enc_name in self._trained_encoders():
            task = self._first_task(enc_name)
            cfg, data = self._eval_config(enc_name), self.streams[task.stream]
            encoder = task.objective.encoder_for_evaluation()
            device = next(encoder.parameters()).device
            pictures = None if self.out is None else self.out / enc_name  # evaluators' pictures (nn_grid)
            runs = [("trained", encoder, pictures)]
            if compare_random:
                runs.append(("random", self._initial[id(task.objective.encoder)].to(device), None))
            for column, model, out_dir in runs:
                errors: dict[str, str] = {}
                values = evaluate_encoder(model, data, cfg, self.registry, out_dir=out_dir, failures=errors)
                metrics[column].update({f"{enc_name}/{k}": v for k, v in values.items()})
                failures[column].update({f"{enc_name}/{k}": v for k, v in errors.items()})
        return metrics, failures

    def export(self, folder: str | Path) -> dict[str, Path]:
        """Save every trained encoder as ``folder/<name>.pt`` (the format of ``ssl run``'s
        ``encoder.pt``: rebuildable with the encoder's registered name and settings)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for enc_name in self._trained_encoders():
            rec = self._encoder_specs[enc_name]
            cfg = RunConfig(encoder=rec.get("encoder") or "", encoder_kwargs=dict(rec.get("encoder_kwargs") or {}),
                            modality=rec.get("modality") or "")
            paths[enc_name] = folder / f"{enc_name}.pt"
            export_encoder(self._first_task(enc_name).objective.encoder_for_evaluation(), cfg, paths[enc_name])
        return paths

    def to_dict(self) -> dict[str, Any]:
        """The resolved experiment, as written to ``experiment.yaml``."""
        import dataclasses

        encoders = {}
        for enc_name in self._trained_encoders():
            cfg = self._eval_config(enc_name)
            encoders[enc_name] = {**self._encoder_specs[enc_name], "data": self._stream_of(enc_name),
                                  "evaluators": cfg.evaluators, "eval_kwargs": cfg.eval_kwargs}
        objectives = []
        for t in self.tasks:
            enc_name = next(n for n, e in self.encoders.items() if e is t.objective.encoder)
            spec = self._objective_specs.get(t.name, {"objective": None, "objective_kwargs": {}})
            objectives.append({"name": t.name, "objective": spec.get("objective"), "data": t.stream,
                               "weight": t.weight, "encoder": enc_name, "augmenter": spec.get("augmenter"),
                               "objective_kwargs": spec.get("objective_kwargs", {})})
        return {"kind": "experiment", "objectives": objectives, "encoders": encoders,
                "data": {k: v for k, v in self._data_specs.items() if k in {t.stream for t in self.tasks}},
                "train": dataclasses.asdict(self.train_cfg)}

    def evaluate(self, task_or_encoder: str, evaluators: Sequence[str] = ("knn", "linear_probe", "health"),
                 data: str | None = None, compare_random: bool = False) -> dict[str, dict[str, float]]:
        """Probe the encoder of objective ``task_or_encoder`` (or a named encoder) on its stream
        (any time after :meth:`fit`; metrics are returned, not written)."""
        task = next((t for t in self.tasks if t.name == task_or_encoder), None)
        if task is not None:
            encoder, stream = task.objective.encoder_for_evaluation(), data or task.stream
        elif task_or_encoder in self.encoders:
            encoder = self.encoders[task_or_encoder]
            stream = data or next(t.stream for t in self.tasks if t.objective.encoder is encoder)
        else:
            raise ConfigError(f"No objective or encoder named '{task_or_encoder}'. "
                              f"Objectives: {[t.name for t in self.tasks]}, encoders: {sorted(self.encoders)}")
        cfg = RunConfig(evaluators=list(evaluators))
        metrics = {"trained": evaluate_encoder(encoder, self.streams[stream], cfg, self.registry)}
        if compare_random:
            rand = self._initial[id(encoder)].to(next(encoder.parameters()).device)
            metrics["random"] = evaluate_encoder(rand, self.streams[stream], cfg, self.registry)
        return metrics


# ------------------------------------------------------------------------------------ run folders
def is_experiment_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` was written by :meth:`Experiment.fit` (it holds ``experiment.yaml``)."""
    return (Path(run_dir) / EXPERIMENT_FILE).is_file()


def read_experiment(run_dir: str | Path) -> dict[str, Any]:
    """The resolved experiment saved in ``run_dir/experiment.yaml``."""
    path = Path(run_dir) / EXPERIMENT_FILE
    if not path.is_file():
        raise DataError(f"{path} is missing: is {run_dir} a folder written by Experiment(out=...).fit()?")
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(spec, dict) or spec.get("kind") != "experiment":
        raise DataError(f"{path} is not an sslkit experiment description (no 'kind: experiment').")
    return spec


@dataclass
class ExperimentEvaluation:
    """What :func:`evaluate_experiment_run` returns."""

    metrics: dict[str, dict[str, float]]
    failures: dict[str, dict[str, str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    """Encoders that could not be rebuilt from the folder (passed in as instances), with why."""


def evaluate_experiment_run(run_dir: str | Path, evaluators: Sequence[str] | None = None, compare_random: bool = True,
                            device: str | torch.device = "cpu", registry: Registry | None = None) -> ExperimentEvaluation:
    """Evaluate every exported encoder of an experiment folder again (``ssl eval RUN_DIR``) and
    write ``eval.json``. Encoders and streams are rebuilt from their registered names."""
    from ssl_core.runner import encoder_from_file

    registry = registry or get_registry()
    run_dir = Path(run_dir)
    spec = read_experiment(run_dir)
    out = ExperimentEvaluation({"trained": {}, **({"random": {}} if compare_random else {})},
                               {"trained": {}, "random": {}})
    streams: dict[str, DataModule] = {}
    plans = []
    for enc_name, rec in spec.get("encoders", {}).items():
        stream = spec["data"].get(rec["data"], {})
        if not rec.get("encoder") or not stream.get("dataset"):
            what = "encoder" if not rec.get("encoder") else f"data stream '{rec['data']}'"
            out.skipped[enc_name] = (f"its {what} was passed to the Experiment as an object, not a registered name, "
                                     "so it cannot be rebuilt here: evaluate it in Python with Experiment.evaluate")
            continue
        cfg = RunConfig(modality=rec.get("modality") or "", encoder=rec["encoder"], dataset=stream["dataset"],
                        encoder_kwargs=dict(rec.get("encoder_kwargs") or {}),
                        evaluators=list(evaluators or rec.get("evaluators") or DEFAULT_EVALUATORS),
                        eval_kwargs=dict(rec.get("eval_kwargs") or {}))
        if rec["data"] not in streams:
            streams[rec["data"]] = registry.get("dataset", stream["dataset"]).build(
                path=stream.get("path"), **dict(stream.get("dataset_kwargs") or {}))
        check_evaluators(cfg, streams[rec["data"]], registry)  # all checked before any evaluation runs
        plans.append((enc_name, rec, cfg, streams[rec["data"]]))
    for enc_name, rec, cfg, data in plans:
        encoder = encoder_from_file(run_dir / ENCODERS_DIR / f"{enc_name}.pt", registry).to(device)
        errors: dict[str, str] = {}
        values = evaluate_encoder(encoder, data, cfg, registry, out_dir=run_dir / enc_name, failures=errors)
        out.metrics["trained"].update({f"{enc_name}/{k}": v for k, v in values.items()})
        out.failures["trained"].update({f"{enc_name}/{k}": v for k, v in errors.items()})
        if compare_random:
            torch.manual_seed(rec["init_seed"] if rec.get("init_seed") is not None else 0)
            random_encoder = registry.get("encoder", cfg.encoder).build(**cfg.encoder_kwargs).to(device)
            errors = {}
            values = evaluate_encoder(random_encoder, data, cfg, registry, failures=errors)
            out.metrics["random"].update({f"{enc_name}/{k}": v for k, v in values.items()})
            out.failures["random"].update({f"{enc_name}/{k}": v for k, v in errors.items()})
    for enc_name, why in out.skipped.items():
        print(f"sslkit: skipping encoder '{enc_name}': {why}", file=sys.stderr)
    write_evaluation(run_dir, out.metrics, out.failures)
    return out
