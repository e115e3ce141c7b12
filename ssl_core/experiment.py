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
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ssl_core.config import RunConfig, TrainConfig, from_dict, merge
from ssl_core.data import default_collate
from ssl_core.errors import ConfigError
from ssl_core.interfaces import Batch, DataModule, Encoder, Objective, StepInfo
from ssl_core.registry import Registry, get_registry
from ssl_core.rundir import RunLock, check_fresh_run_dir, clear_run_dir, launched_rank
from ssl_core.runner import _accepted, evaluate_encoder
from ssl_core.trainer import Trainer, TrainResult


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

    # -------------------------------------------------------------------- composition
    def add_data(self, name: str, data: DataModule | str, path: str | None = None, **kwargs: Any) -> DataModule:
        """Add a data stream: a DataModule, or a registered dataset name (with ``path``/kwargs)."""
        if isinstance(data, str):
            data = self.registry.get("dataset", data).build(path=path, **kwargs)
        self.streams[name] = data
        return data

    def add_encoder(self, name: str, encoder: Encoder | str, data: str | None = None, **kwargs: Any) -> Encoder:
        """Add a named encoder: an instance, or a registered name built with ``kwargs`` (plus
        hints from stream ``data``, e.g. input channels)."""
        if isinstance(encoder, str):
            spec = self.registry.get("encoder", encoder)
            hints = self.streams[data].extras.get("encoder_kwargs", {}) if data else {}
            torch.manual_seed(self.train_cfg.seed + len(self.encoders))
            encoder = spec.build(**{**_accepted(spec.factory, hints), **kwargs})
        self.encoders[name] = encoder
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
        self._initial.setdefault(id(objective.encoder), copy.deepcopy(objective.encoder))
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

    def fit(self, resume: bool = False, overwrite: bool = False) -> TrainResult:
        """Train every objective together; returns the Trainer's result.

        With ``out`` set, the folder follows the rules of ``ssl run``: a folder holding a run is
        refused unless ``resume`` or ``overwrite`` (which clears it), and it is locked meanwhile."""
        self.objective = MultiObjective(self.tasks)
        if self.out is None or launched_rank() != 0:
            return self._fit(resume)
        check_fresh_run_dir(self.out, resume=resume, overwrite=overwrite)
        with RunLock(self.out):
            if overwrite:
                clear_run_dir(self.out)
            return self._fit(resume)

    def _fit(self, resume: bool) -> TrainResult:
        self.trainer = Trainer(self.objective, self.build_data(), self.train_cfg, self.out)
        result = self.trainer.fit(resume=resume)
        self.objective.on_train_end(self.out, self.trainer.data)
        return result

    def evaluate(self, task_or_encoder: str, evaluators: Sequence[str] = ("knn", "linear_probe", "health"),
                 data: str | None = None, compare_random: bool = False) -> dict[str, dict[str, float]]:
        """Probe the encoder of objective ``task_or_encoder`` (or a named encoder) on its stream."""
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
