"""From an objective name, a config file and overrides to a validated :class:`RunConfig`.

Kept apart from the runner (and free of torch) so ``ssl info`` and ``ssl run --help`` stay fast.

Choosing a file reader for ``--data PATH`` (when ``--dataset`` is not given):

1. the readers the objective's recipe names (recipe key ``reader``), in order, else the readers
   its built-in dataset names (``register(..., builtin=True, reader=...)``), in order: the first
   that accepts the path (see :class:`ssl_core.files.Accepts`) is used, a reader whose marker
   file is in the folder (a saved Hugging Face dataset's ``state.json``) before the others;
2. otherwise the readers of the plugin that supplies the recipe's dataset that accept the path;
3. otherwise every installed reader of the modality that accepts it (a reader that declares
   nothing counts as accepting anything).

In steps 2 and 3 exactly one candidate is used; several are refused with the list of
candidates and the ``--dataset`` flag to choose. When none accepts the path, the first named
reader is used (its own error then says what it looked for), or, if no reader is named, the
choice is refused with every reader of the modality and what it accepts. An installed plugin's reader therefore never replaces the reader
a built-in method names.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from pathlib import Path
from typing import Any, Mapping

from ssl_core.config import RunConfig, coerce_value, from_dict, load_file, merge, validate_choices
from ssl_core.errors import ConfigError, DataError
from ssl_core.files import remote_scheme
from ssl_core.registry import ComponentSpec, Registry, article, get_registry


def resolve_config(
    objective: str | None = None,
    modality: str | None = None,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
    check_kwargs: bool = True,
) -> RunConfig:
    """Merge defaults < objective recipe < config file < overrides into a validated RunConfig.

    ``check_kwargs`` checks the ``*_kwargs`` settings against their components' signatures
    (:func:`check_component_kwargs`), which imports the components: ``ssl info`` skips it."""
    registry = registry or get_registry()
    file_data = _without_saved_out(load_file(config_file), config_file) if config_file else {}
    overrides = dict(overrides or {})
    objective = objective or overrides.get("objective") or file_data.get("objective")
    modality = modality or overrides.get("modality") or file_data.get("modality") or None
    if modality:
        registry.check_modality(modality)
    if not objective:
        names = ", ".join(s.name for s in registry.list("objective", modality=modality))
        raise ConfigError(f"Name an objective with --objective (available: {names or 'none installed'}).")
    spec = registry.get("objective", objective, modality=modality)
    recipe = {k: v for k, v in spec.recipe.items() if v is not None}
    recipe_reader = recipe.pop("reader", None)
    base = merge({"modality": spec.modality, "objective": objective}, recipe)
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
        raise ConfigError(f"Objective '{objective}' is {article(spec.modality)} objective, but modality is '{cfg.modality}'.")
    if cfg.data and registry.get("dataset", cfg.dataset).builtin and "dataset" not in overrides:
        # a path was given: switch from the built-in set to a file reader
        cfg.dataset = choose_reader(registry, cfg.modality, cfg.data, registry.get("dataset", cfg.dataset),
                                    recipe_reader)
    validate_choices(cfg)
    if check_kwargs:
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


def choose_reader(registry: Registry, modality: str, data: str, builtin: ComponentSpec,
                  named: str | list[str] | tuple[str, ...] | None = None) -> str:
    """The file reader for ``--data`` ``data`` (see the module docstring for the rules)."""
    readers = [s for s in registry.list("dataset", modality=modality) if not s.builtin and s.modality == modality]
    if not readers:
        raise ConfigError(f"No installed {modality} dataset reads files from a path; drop --data.")
    local = remote_scheme(data) is None and not any(ch in data for ch in "*?[{")
    if local and not Path(data).expanduser().exists():
        raise DataError(f"Data path {data} does not exist. Check --data.")
    preferred = [named] if isinstance(named, str) else list(named or builtin.reader)
    specs = [registry.get("dataset", name, modality=modality) for name in preferred]
    for spec in [s for s in specs if s.accepts is not None and s.accepts.marked(data)] + specs:
        if spec.accepts is None or spec.accepts.matches(data):  # a marker file (state.json) wins first
            return spec.name
    takes = [s for s in readers if s.accepts is None or s.accepts.matches(data)]
    home = [s for s in takes if s.plugin == builtin.plugin]
    pool = home or takes
    if len(pool) == 1:
        return pool[0].name
    if not pool and preferred:  # nothing fits: the named reader's own error says what it looked for
        return registry.get("dataset", preferred[0], modality=modality).name
    if not pool:
        listing = "; ".join(f"'{s.name}' ({s.package}): {s.accepts.describe() if s.accepts else 'anything'}"
                            for s in readers)
        raise DataError(f"No installed {modality} reader accepts --data {data}. Readers: {listing}. "
                        "Check the path and the file suffixes, or name a reader with --dataset NAME.")
    listing = ", ".join(f"'{s.name}' ({s.package})" for s in pool)
    raise ConfigError(f"Several {modality} readers accept --data {data}: {listing}. Choose one with "
                      f"--dataset NAME (e.g. --dataset {pool[0].name}).")
