"""Run configuration: dataclasses, loaded from YAML/TOML files with dotted CLI overrides.

Precedence, lowest first: dataclass defaults < the objective's recipe (from its plugin) < the
config file < CLI flags and ``--set key=value`` overrides. The fully resolved config is saved as
``config.yaml`` in the run directory, and ``ssl run --config RUN_DIR/config.yaml`` repeats a run.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ssl_core.errors import ConfigError


@dataclass
class TrainConfig:
    """Settings of the shared training loop (see docs/training.md)."""

    steps: int | None = None
    """Total optimiser steps. Overrides ``epochs`` when set."""
    epochs: int | None = 1
    """Passes over the training data (used when ``steps`` is not set)."""
    batch_size: int = 256
    """Samples per optimiser step (split into ``grad_accum`` micro-batches)."""
    lr: float = 1e-3
    """Peak learning rate, reached after warm-up."""
    min_lr_ratio: float = 0.0
    """Final LR as a fraction of the peak (cosine decay)."""
    warmup_fraction: float = 0.1
    """Fraction of total steps spent in linear LR warm-up."""
    weight_decay: float = 0.05
    """Weight decay at the start (not applied to biases/norms)."""
    weight_decay_end: float | None = None
    """Weight decay at the end (cosine schedule); ``None`` keeps it constant."""
    optimizer: str = "adamw"
    """``adamw``, ``lars`` or ``sgd``."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas."""
    momentum: float = 0.9
    """SGD/LARS momentum."""
    grad_accum: int = 1
    """Micro-batches per optimiser step."""
    clip_grad: float | None = None
    """Clip the global gradient norm to this value (``None``: no clipping)."""
    precision: str = "auto"
    """``auto`` (bf16 on GPUs that support it, else fp32), ``fp32``, ``bf16`` or ``fp16``."""
    device: str = "auto"
    """``auto`` (CUDA if present, else CPU), ``cpu``, ``cuda``, ``cuda:1``, ..."""
    seed: int = 0
    """Seed for initialisation, data order and augmentations."""
    log_every: int = 10
    """Write a metrics line every N steps."""
    checkpoint_every: int = 100
    """Save a resumable checkpoint every N steps (and always at the end); 0 = only at the end."""
    health_every: int = 50
    """Measure embedding std / effective rank every N steps (0 = never)."""
    probe_every: int | None = None
    """Run a kNN probe on the labelled split every N steps, logged as ``probe/knn_top1`` (0 = never;
    ``None``: ``probe_points`` evenly spaced probes, so ``ssl report`` shows learning)."""
    probe_points: int = 4
    """In-training kNN probes when ``probe_every`` is ``None`` (set when a run starts)."""
    probe_samples: int | None = 1000
    """The in-training probe's bank and query sets hold at most this many evenly spaced labelled
    samples each (``None``: all of them). It draws the learning curve (a kNN accuracy on 1,000
    queries has a standard error of ~0.015); the final evaluation always uses the full sets.
    Embedding the full sets four times a run cost as much as MAE's whole training on two CPU
    cores."""
    num_workers: int = 0
    """DataLoader worker processes."""
    num_threads: int | None = None
    """CPU threads for torch ops (``None``: torch's default). 1 is often faster on busy shared CPUs."""
    compile: bool = False
    """Wrap the training step in ``torch.compile`` (the model, heads and loss; augmentation stays eager)."""
    memory_format: str = "auto"
    """``auto`` (channels-last for encoders that declare it pays, ``Encoder.channels_last``: the
    ResNets), ``channels_last`` or ``contiguous``."""
    sync_batchnorm: bool = True
    """On several processes, normalise BatchNorm layers with the statistics of the global batch
    (SyncBatchNorm on CUDA, ``ssl_core.batchnorm.GlobalBatchNorm`` elsewhere), so the result
    does not depend on the process count. ``false`` keeps per-process statistics (less
    communication; BYOL/SimCLR/DINO then differ from a one-process run)."""
    find_unused_parameters: bool = False
    """DDP option for objectives whose steps leave some trainable parameters unused."""
    strategy: str = "auto"
    """How several processes share the model: ``ddp`` (a full copy per rank), ``fsdp`` (parameters,
    gradients and optimiser state sharded over ranks; for encoders too large for one device), or
    ``auto`` (= ddp). Ignored on one process."""
    fsdp_min_params: int = 100_000
    """Under ``fsdp``: blocks inside ``nn.ModuleList``/``nn.Sequential`` with at least this many
    parameters are sharded as units (one all-gather each); everything else is sharded with the root."""
    nan_policy: str = "skip"
    """On a NaN/inf loss: ``skip`` the step (stop after ``max_bad_steps`` in a row) or ``stop``."""
    max_bad_steps: int = 10
    """Consecutive non-finite steps tolerated under ``nan_policy: skip``."""
    progress: bool = True
    """Show a progress bar."""


@dataclass
class RunConfig:
    """Everything that defines a run: which components, their settings, and training settings."""

    modality: str = ""
    objective: str = ""
    encoder: str = ""
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    augmenter: str | None = None
    augmenter_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset: str = ""
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    data: str | None = None
    """Path to the user's data (a folder or file); ``None`` uses the built-in dataset."""
    objective_kwargs: dict[str, Any] = field(default_factory=dict)
    evaluators: list[str] = field(default_factory=lambda: ["knn", "linear_probe", "few_shot", "health"])
    eval_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    compare_random: bool = True
    """Also evaluate a randomly initialised encoder of the same architecture."""
    out: str | None = None
    """Run directory (default: runs/<objective>-<timestamp>)."""
    loggers: list[str] = field(default_factory=lambda: ["jsonl"])
    """Where metrics, results and pictures go (``ssl list --kind logger``): ``jsonl`` writes
    metrics.jsonl (``ssl report`` reads it); ``tensorboard``, ``mlflow``, ``wandb`` are extras.
    ``--logger NAME`` adds one."""
    logger_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Settings per logger, e.g. ``{mlflow: {tracking_uri: "sqlite:///mlflow.db"}}``."""
    init: str | None = None
    """Weights to start the encoder from (``--init``): an encoder.pt, an ``ssl export`` folder, or a
    torchvision/timm/torchaudio/open_clip state dict file. Loaded strictly unless ``init_partial``."""
    init_partial: bool = False
    """With ``init``: load the tensors that match and report the rest instead of stopping."""
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML-serialisable dict."""
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------- loading and validation
def load_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) config file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist. Check the path given to --config.")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in {".yaml", ".yml"}:
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"Config file {path}: unknown format '{path.suffix}'. Use .yaml, .yml or .toml.")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"Config file {path} could not be parsed: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of fields at the top level, got {type(data).__name__}.")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key.sub=value`` (value read as YAML, so ``3``, ``1e-3``, ``true``, ``[1,2]`` work)."""
    if "=" not in text:
        raise ConfigError(f"Override '{text}' must look like key=value, e.g. train.lr=0.001")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):
        try:
            value = float(value)  # YAML 1.1 reads "3e-4" as a string
        except ValueError:
            pass
    return key.strip(), value


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train.lr": 1}`` -> ``{"train": {"lr": 1}}``. Keys under ``*_kwargs`` stay free-form."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"Override '{key}' conflicts with another override of '{part}'.")
        node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``update`` into a copy of ``base`` (dicts merge, everything else replaces)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def from_dict(cls: type, data: Mapping[str, Any], source: str = "config", prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown fields and wrong types.

    Errors name the source (a file path or "command line"), the dotted field and the fix.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: '{prefix.rstrip('.') or 'top level'}' must be a mapping, got {data!r}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" Did you mean '{prefix}{close[0]}'?" if close else ""
            raise ConfigError(
                f"{source}: unknown field '{prefix}{key}'.{hint} Known fields here: {', '.join(sorted(fields))}."
            )
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = from_dict(tp, value, source, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, tp, f"{prefix}{key}", source)
    return cls(**kwargs)


def _coerce(value: Any, tp: Any, path: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, path, source)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if tp is Any:
        return value
    if origin in (list, dict):
        if not isinstance(value, origin):
            raise _type_error(value, "a list" if origin is list else "a mapping", path, source)
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _type_error(value, "true or false", path, source)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _type_error(value, "an integer", path, source)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML reads "1e-3" as a string
            except ValueError:
                pass
        raise _type_error(value, "a number", path, source)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _type_error(value, "a string", path, source)
    return value


def coerce_value(value: Any, tp: Any, path: str, source: str) -> Any:
    """``value`` checked against the annotation ``tp`` (ints, floats, bools, strings, lists,
    dicts, optionals; other annotations accept anything); raises ConfigError naming ``path``."""
    return _coerce(value, tp, path, source)


def _type_error(value: Any, expected: str, path: str, source: str) -> ConfigError:
    return ConfigError(f"{source}: field '{path}' must be {expected}, got {value!r} ({type(value).__name__}).")


def validate_choices(cfg: RunConfig) -> None:
    """Check enumerated and ranged fields; raise ConfigError naming the field and the choices."""
    t = cfg.train
    checks = [
        ("train.optimizer", t.optimizer, {"adamw", "lars", "sgd"}),
        ("train.precision", t.precision, {"auto", "fp32", "bf16", "fp16"}),
        ("train.nan_policy", t.nan_policy, {"skip", "stop"}),
        ("train.strategy", t.strategy, {"auto", "ddp", "fsdp"}),
        ("train.memory_format", t.memory_format, {"auto", "channels_last", "contiguous"}),
    ]
    for path, value, allowed in checks:
        if value not in allowed:
            raise ConfigError(f"Field '{path}' is '{value}'; choose one of: {', '.join(sorted(allowed))}.")
    positive = [("train.batch_size", t.batch_size), ("train.grad_accum", t.grad_accum)]
    if t.probe_samples is not None:
        positive.append(("train.probe_samples", t.probe_samples))
    for path, value in positive:
        if value < 1:
            raise ConfigError(f"Field '{path}' must be at least 1, got {value}.")
    if t.batch_size % t.grad_accum:
        raise ConfigError(
            f"train.batch_size ({t.batch_size}) must be divisible by train.grad_accum ({t.grad_accum})."
        )
    if t.steps is None and (t.epochs is None or t.epochs < 1):
        raise ConfigError("Set train.steps or train.epochs (at least 1), e.g. --steps 200 or --epochs 5.")
    if t.steps is not None and t.steps < 1:
        raise ConfigError(f"train.steps must be at least 1, got {t.steps}.")
    if t.lr <= 0:
        raise ConfigError(f"train.lr must be positive, got {t.lr}.")


def resolve_probe_every(train: TrainConfig, total_steps: int) -> None:
    """Turn ``probe_every: None`` into a step interval giving ``probe_points`` evenly spaced
    in-training probes (the last at the final step); 0 when no probe is wanted."""
    if train.probe_every is None:
        points = max(0, train.probe_points)
        train.probe_every = 0 if points == 0 else max(1, math.ceil(total_steps / points))


def save_yaml(cfg: RunConfig, path: Path) -> None:
    """Write the resolved config (atomically) so the run can be repeated with --config."""
    from ssl_core.checkpoint import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
