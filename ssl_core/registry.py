"""The plugin registry: discovers plugins, collects their components, looks them up by name.

Plugins come from three places, in this order:

1. the core's own plugins (``DEFAULT_PLUGINS``: the built-in evaluators, loggers and exporters),
2. every entry point in the group ``ssl_core.plugins`` (each loaded on its own: one that fails
   to import or register is recorded in :attr:`Registry.failures` and the rest still load),
3. objects added in-process with :meth:`Registry.add_plugin` (notebooks, tests).

Environment switches, for cornering plugin bugs:

- ``SSL_CORE_LOAD_PLUGINS=name1,name2`` loads only those entry points (empty string: none).
- ``SSL_CORE_STRICT_PLUGINS=1`` turns a plugin failure into an error instead of a report.
- ``SSL_CORE_TRACE_PLUGINS=1`` prints, on stderr, every entry point as it is loaded and every
  component as a plugin registers it (plugin, kind, name, modality).
"""

from __future__ import annotations

import fnmatch
import functools
import importlib
import importlib.metadata
import os
import sys
import traceback
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pluggy

from ssl_core import hookspecs
from ssl_core.errors import DuplicateComponentError, SSLKitError, UnknownComponentError

ENTRY_POINT_GROUP = "ssl_core.plugins"
KINDS = ("encoder", "augmenter", "objective", "evaluator", "dataset", "logger", "exporter")
DEFAULT_PLUGINS = ("ssl_core.evaluators.plugin", "ssl_core.loggers.plugin", "ssl_core.exporters.plugin")
_HOOK_FOR_KIND = {
    "encoder": "register_encoders",
    "augmenter": "register_augmenters",
    "objective": "register_objectives",
    "evaluator": "register_evaluators",
    "dataset": "register_datasets",
    "logger": "register_loggers",
    "exporter": "register_exporters",
}
_RECIPE_KEYS = {
    "encoder", "encoder_kwargs", "augmenter", "augmenter_kwargs", "dataset", "dataset_kwargs",
    "objective_kwargs", "train", "evaluators", "eval_kwargs",
}


@dataclass(frozen=True)
class ComponentSpec:
    """One registered component: what it is, who supplied it, and how to build it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    modality: str
    summary: str
    plugin: str
    package: str
    builtin: bool = False
    recipe: dict[str, Any] = field(default_factory=dict)

    def build(self, **kwargs: Any) -> Any:
        """Call the factory with keyword arguments."""
        return self.factory(**kwargs)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be imported or whose registration raised."""

    plugin: str
    error: str
    traceback: str


class PluginError(SSLKitError):
    """Raised in strict mode when a plugin fails to load."""


@functools.lru_cache(maxsize=None)
def _distributions() -> dict[str, list[str]]:
    try:
        return dict(importlib.metadata.packages_distributions())
    except Exception:  # broken metadata in odd environments; the name is cosmetic
        return {}


def _package_of(plugin: Any, default: str) -> str:
    """The distribution (pip name) that ships ``plugin`` (a module or an object)."""
    module = plugin.__name__ if isinstance(plugin, types.ModuleType) else type(plugin).__module__
    top = (module or default).split(".")[0]
    dists = _distributions().get(top)
    return dists[0] if dists else top


class Registry:
    """Components by kind and name, filled from pluggy hook implementations."""

    def __init__(self, *, load_entry_points: bool = True, strict: bool | None = None) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.strict = _env_flag("SSL_CORE_STRICT_PLUGINS") if strict is None else strict
        self._components: dict[str, dict[str, ComponentSpec]] = {k: {} for k in KINDS}
        self.failures: list[PluginFailure] = []
        self.trace = _env_flag("SSL_CORE_TRACE_PLUGINS")
        for module_name in DEFAULT_PLUGINS:
            self.add_plugin(importlib.import_module(module_name), name=module_name)
        if load_entry_points:
            self._load_entry_points()

    # ------------------------------------------------------------------ plugin loading
    def _load_entry_points(self) -> None:
        only = os.environ.get("SSL_CORE_LOAD_PLUGINS")
        allowed = None if only is None else {n.strip() for n in only.split(",") if n.strip()}
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if allowed is not None and ep.name not in allowed:
                continue
            if self.pm.has_plugin(ep.name):
                continue
            if self.trace:
                print(f"[ssl_core] loading entry point '{ep.name}' = {ep.value}", file=sys.stderr)
            try:
                plugin = ep.load()
            except Exception as exc:  # one broken plugin must not stop the others
                self._fail(ep.name, exc)
                continue
            self.add_plugin(plugin, name=ep.name)

    def add_plugin(self, plugin: Any, name: str | None = None) -> None:
        """Register a plugin object/module in-process and collect its components.

        Re-adding the same plugin object is harmless. A plugin whose hooks raise is recorded in
        :attr:`failures` (or raises :class:`PluginError` in strict mode) and its partial
        registrations are rolled back.
        """
        name = name or getattr(plugin, "__name__", None) or repr(plugin)
        if self.pm.is_registered(plugin):
            return
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()  # a misspelled hook name would otherwise be silently ignored
        except Exception as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self._fail(name, exc)
            return
        snapshot = {k: dict(v) for k, v in self._components.items()}
        try:
            for kind, hook_name in _HOOK_FOR_KIND.items():
                # Call this plugin's implementation alone so each entry records its supplier.
                hook = getattr(self.pm.hook, hook_name)
                for impl in hook.get_hookimpls():
                    if impl.plugin is plugin:
                        impl.function(register=self._registrar(kind, name, plugin))
        except DuplicateComponentError:
            self._components = snapshot
            self.pm.unregister(plugin)
            raise
        except Exception as exc:
            self._components = snapshot
            self.pm.unregister(plugin)
            self._fail(name, exc)

    def _fail(self, name: str, exc: BaseException) -> None:
        failure = PluginFailure(name, f"{type(exc).__name__}: {exc}", traceback.format_exc())
        self.failures.append(failure)
        if self.strict:
            raise PluginError(
                f"Plugin '{name}' failed to load: {failure.error}. "
                "Unset SSL_CORE_STRICT_PLUGINS to skip it, or fix/uninstall the plugin."
            ) from exc

    def _registrar(self, kind: str, plugin_name: str, plugin: Any) -> Callable[..., None]:
        def register(
            name: str,
            factory: Callable[..., Any],
            *,
            modality: str = "any",
            summary: str = "",
            builtin: bool = False,
            recipe: dict[str, Any] | None = None,
        ) -> None:
            if not isinstance(name, str) or not name or name != name.lower() or " " in name:
                raise ValueError(
                    f"Plugin '{plugin_name}' registered {kind} name {name!r}: names must be "
                    "non-empty, lower-case and without spaces (e.g. 'simclr')."
                )
            if not callable(factory):
                raise TypeError(f"Plugin '{plugin_name}' registered {kind} '{name}' with a non-callable factory")
            recipe = dict(recipe or {})
            unknown = set(recipe) - _RECIPE_KEYS
            if unknown:
                raise ValueError(
                    f"Plugin '{plugin_name}' registered objective '{name}' with unknown recipe keys "
                    f"{sorted(unknown)}; allowed: {sorted(_RECIPE_KEYS)}"
                )
            spec = ComponentSpec(
                kind=kind, name=name, factory=factory, modality=modality,
                summary=summary or (factory.__doc__ or "").strip().split("\n")[0],
                plugin=plugin_name, package=_package_of(plugin, plugin_name),
                builtin=builtin, recipe=recipe,
            )
            existing = self._components[kind].get(name)
            if existing is not None:
                if existing.factory is factory and existing.plugin == plugin_name:
                    return  # re-registering the same thing is harmless
                raise DuplicateComponentError(
                    f"{kind} '{name}' is registered twice: by plugin '{existing.plugin}' "
                    f"(package {existing.package}) and by plugin '{plugin_name}' "
                    f"(package {spec.package}). Uninstall one of them or rename the component."
                )
            self._components[kind][name] = spec
            if self.trace:
                print(f"[ssl_core] plugin '{plugin_name}' registered {kind} '{name}' ({modality})", file=sys.stderr)

        return register

    # ------------------------------------------------------------------ lookup
    def get(self, kind: str, name: str, modality: str | None = None) -> ComponentSpec:
        """Look a component up by kind and name; unknown names fail with a close match."""
        if kind not in self._components:
            raise UnknownComponentError("kind", kind, KINDS)
        table = self._components[kind]
        if name not in table:
            pool = [n for n, s in table.items() if modality in (None, s.modality, "any") or s.modality == "any"]
            hint = ""
            if self.failures:
                hint = "Plugins that failed to load: " + ", ".join(f.plugin for f in self.failures) + " (see `ssl list`)."
            raise UnknownComponentError(kind, name, pool or table.keys(), hint)
        spec = table[name]
        if modality is not None and spec.modality not in (modality, "any"):
            same = [n for n, s in table.items() if s.modality == modality]
            raise UnknownComponentError(
                kind, name, same,
                hint=f"'{name}' is a {spec.modality} {kind}, not a {modality} one.",
            )
        return spec

    def list(self, kind: str | None = None, modality: str | None = None, pattern: str = "*") -> list[ComponentSpec]:
        """All components, optionally filtered by kind, modality and a glob pattern on the name."""
        kinds: Iterable[str] = KINDS if kind is None else (kind,)
        out = []
        for k in kinds:
            for spec in sorted(self._components[k].values(), key=lambda s: s.name):
                if modality and spec.modality not in (modality, "any"):
                    continue
                if fnmatch.fnmatch(spec.name, pattern):
                    out.append(spec)
        return out

    def names(self, kind: str) -> list[str]:
        """Names of the components of ``kind`` in the order they were registered."""
        return list(self._components[kind])

    def modalities(self) -> list[str]:
        """Modalities that have at least one objective."""
        return sorted({s.modality for s in self._components["objective"].values()})

    def plugins(self) -> list[str]:
        """Names of the plugins that registered successfully."""
        return sorted(name for name, _ in self.pm.list_name_plugin())


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


_GLOBAL: Registry | None = None


def get_registry(refresh: bool = False) -> Registry:
    """The process-wide registry, built on first use from the installed entry points."""
    global _GLOBAL
    if _GLOBAL is None or refresh:
        _GLOBAL = Registry()
    return _GLOBAL
