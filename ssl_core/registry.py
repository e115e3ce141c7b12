"""The plugin registry: discovers plugins, collects their components, looks them up by name.

Plugins come from three places, in this order:

1. the core's own plugins (``DEFAULT_PLUGINS``: the built-in evaluators, loggers and exporters),
2. every entry point in the group ``ssl_core.plugins``: first those of sslkit's own distributions
   (``FIRST_PARTY``), then the others, each group in entry-point-name order. Each loads on its
   own: one that fails to import or register is recorded in :attr:`Registry.failures` and the
   rest still load,
3. objects added in-process with :meth:`Registry.add_plugin` (notebooks, tests).

Registration is all-or-nothing per plugin: a plugin's components are staged while its hooks run
and enter the registry only when every hook has finished. A plugin whose hook raises, or that
registers a name another plugin already holds (a *clash*), is disabled as a whole: none of its
components is registered, the earlier plugin keeps the name, the reason is printed on stderr and
listed by ``ssl list``, and every other plugin keeps working. (Keeping the rest of a clashing
plugin could silently pair its recipes with the other plugin's component of the same name.)

Factories may be given as import paths, ``"package.module:attr"``, so listing components
imports no plugin code (``ssl list`` stays fast); the path is imported on first use
(:attr:`ComponentSpec.factory`).

Environment switches, for cornering plugin bugs:

- ``SSL_CORE_LOAD_PLUGINS=name1,name2`` loads only those entry points (empty string: none).
- ``SSL_CORE_STRICT_PLUGINS=1`` turns a plugin failure or a clash into an error instead of a report.
- ``SSL_CORE_TRACE_PLUGINS=1`` prints, on stderr, every entry point as it is loaded and every
  component as a plugin registers it (plugin, kind, name, modality).
"""

from __future__ import annotations

import fnmatch
import functools
import importlib
import importlib.metadata
import os
import re
import sys
import traceback
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import pluggy

from ssl_core import hookspecs
from ssl_core.errors import DuplicateComponentError, SSLKitError, UnknownComponentError
from ssl_core.files import Accepts

ENTRY_POINT_GROUP = "ssl_core.plugins"
KINDS = ("encoder", "augmenter", "objective", "evaluator", "dataset", "logger", "exporter")
DEFAULT_PLUGINS = ("ssl_core.evaluators.plugin", "ssl_core.loggers.plugin", "ssl_core.exporters.plugin")
CORE_PACKAGE = "sslkit"
FIRST_PARTY = ("sslkit", "sslkit-vision", "sslkit-text", "sslkit-audio", "sslkit-clip")
"""Distributions whose entry points load before third-party ones, so an installed third-party
package that reuses a built-in name is the one disabled, whatever its entry-point name."""
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
    "objective_kwargs", "train", "evaluators", "eval_kwargs", "reader",
}
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_RESOLVED: dict[str, Callable[..., Any]] = {}

class ComponentImportError(SSLKitError):
    """A component registered by import path could not be imported when it was first used."""


class PluginError(SSLKitError):
    """Raised in strict mode when a plugin fails to load."""


def article(word: str) -> str:
    """``"an audio"``, ``"a vision"``: the indefinite article a modality or kind needs."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


@dataclass(frozen=True)
class ComponentSpec:
    """One registered component: what it is, who supplied it, and how to build it.

    ``target`` is the factory itself or its import path ``"module:attr"``; :attr:`factory`
    imports the path on first use. Datasets may also declare what files they read
    (``accepts``) and, for a built-in set, which file reader(s) take over when the user passes
    ``--data`` (``reader``).
    """

    kind: str
    name: str
    target: Any
    modality: str
    summary: str
    plugin: str
    package: str
    builtin: bool = False
    recipe: dict[str, Any] = field(default_factory=dict)
    accepts: Accepts | None = None
    reader: tuple[str, ...] = ()

    @property
    def factory(self) -> Callable[..., Any]:
        """The factory (class or function), imported from its path on first use."""
        if not isinstance(self.target, str):
            return self.target
        if self.target not in _RESOLVED:
            _RESOLVED[self.target] = self._import()
        return _RESOLVED[self.target]

    @property
    def loaded(self) -> bool:
        """Whether using this component needs no further import."""
        return not isinstance(self.target, str) or self.target in _RESOLVED

    @property
    def where(self) -> str:
        """``module:attr`` of the factory, for messages."""
        if isinstance(self.target, str):
            return self.target
        return f"{getattr(self.target, '__module__', '?')}:{getattr(self.target, '__qualname__', repr(self.target))}"

    def build(self, **kwargs: Any) -> Any:
        """Call the factory with keyword arguments."""
        return self.factory(**kwargs)

    def _import(self) -> Callable[..., Any]:
        module_name, _, attr = self.target.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:
            raise ComponentImportError(
                f"{self.kind.capitalize()} '{self.name}' (plugin '{self.plugin}', package {self.package}) could not "
                f"be imported from {self.target}: {type(exc).__name__}: {exc}. Install the plugin's dependencies "
                f"(pip install {self.package}) or uninstall the package."
            ) from exc
        if not callable(obj):
            raise ComponentImportError(f"{self.kind.capitalize()} '{self.name}' (plugin '{self.plugin}'): {self.target} "
                                       f"is a {type(obj).__name__}, not a class or function.")
        return obj


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be imported, whose registration raised, or that clashed."""

    plugin: str
    error: str
    traceback: str
    kind: str = "error"
    """``"error"`` (import or registration failed) or ``"clash"`` (a name already taken)."""


class _Clash(Exception):
    """Internal: a plugin registered a name another plugin holds."""


@functools.lru_cache(maxsize=None)
def _distributions() -> dict[str, list[str]]:
    try:
        return dict(importlib.metadata.packages_distributions())
    except Exception:  # broken metadata in odd environments; the name is cosmetic
        return {}


def _package_of(plugin: Any, default: str) -> str:
    """The distribution (pip name) that ships ``plugin`` (a module or an object).

    Slow on first call (reads every installed distribution's file list), so entry points pass
    their distribution instead and only in-process plugins get here.
    """
    module = plugin.__name__ if isinstance(plugin, types.ModuleType) else type(plugin).__module__
    top = (module or default).split(".")[0]
    if top == "ssl_core":
        return CORE_PACKAGE
    dists = _distributions().get(top)
    return dists[0] if dists else top


def _entry_point_order(ep: importlib.metadata.EntryPoint) -> tuple[bool, str]:
    dist = getattr(ep, "dist", None)
    return (getattr(dist, "name", None) not in FIRST_PARTY, ep.name)


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
            self.add_plugin(importlib.import_module(module_name), name=module_name, package=CORE_PACKAGE)
        if load_entry_points:
            self._load_entry_points()

    # ------------------------------------------------------------------ plugin loading
    def _load_entry_points(self) -> None:
        only = os.environ.get("SSL_CORE_LOAD_PLUGINS")
        allowed = None if only is None else {n.strip() for n in only.split(",") if n.strip()}
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=_entry_point_order):
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
            dist = getattr(ep, "dist", None)
            self.add_plugin(plugin, name=ep.name, package=getattr(dist, "name", None))

    def add_plugin(self, plugin: Any, name: str | None = None, package: str | None = None) -> None:
        """Register a plugin object/module in-process and collect its components.

        Re-adding the same plugin object is harmless. Registration is all-or-nothing: a plugin
        whose hooks raise, or that registers a name another plugin holds, is recorded in
        :attr:`failures` (or raises in strict mode) and none of its components is kept.
        ``package`` is the distribution that ships it (looked up when not given).
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
        package = package or _package_of(plugin, name)
        staged: dict[str, dict[str, ComponentSpec]] = {k: {} for k in KINDS}
        try:
            for kind, hook_name in _HOOK_FOR_KIND.items():
                # Call this plugin's implementation alone so each entry records its supplier.
                hook = getattr(self.pm.hook, hook_name)
                for impl in hook.get_hookimpls():
                    if impl.plugin is plugin:
                        impl.function(register=self._registrar(kind, name, package, staged))
        except _Clash as clash:
            self.pm.unregister(plugin)
            self._fail(name, clash, kind="clash")
            return
        except Exception as exc:
            self.pm.unregister(plugin)
            self._fail(name, exc)
            return
        for kind, table in staged.items():  # every hook succeeded: commit all at once
            self._components[kind].update(table)

    def _fail(self, name: str, exc: BaseException, kind: str = "error") -> None:
        failure = PluginFailure(name, f"{type(exc).__name__}: {exc}" if kind == "error" else str(exc),
                                traceback.format_exc(), kind)
        self.failures.append(failure)
        if kind == "clash":
            if self.strict:
                raise DuplicateComponentError(f"{exc} (SSL_CORE_STRICT_PLUGINS is set: clashes are fatal.)") from None
            print(f"sslkit: warning: {exc}", file=sys.stderr)
            return
        if self.strict:
            raise PluginError(
                f"Plugin '{name}' failed to load: {failure.error}. "
                "Unset SSL_CORE_STRICT_PLUGINS to skip it, or fix/uninstall the plugin."
            ) from exc

    def _registrar(self, kind: str, plugin_name: str, package: str,
                   staged: dict[str, dict[str, ComponentSpec]]) -> Callable[..., None]:
        def register(
            name: str,
            factory: Any,
            *,
            modality: str = "any",
            summary: str = "",
            builtin: bool = False,
            recipe: dict[str, Any] | None = None,
            accepts: Accepts | Mapping[str, Any] | None = None,
            reader: str | Sequence[str] | None = None,
        ) -> None:
            if not isinstance(name, str) or not name or name != name.lower() or " " in name:
                raise ValueError(
                    f"Plugin '{plugin_name}' registered {kind} name {name!r}: names must be "
                    "non-empty, lower-case and without spaces (e.g. 'simclr')."
                )
            if isinstance(factory, str):
                if not _IMPORT_PATH.match(factory):
                    raise ValueError(f"Plugin '{plugin_name}' registered {kind} '{name}' with factory {factory!r}: "
                                     "an import path must look like 'package.module:attr'.")
            elif not callable(factory):
                raise TypeError(f"Plugin '{plugin_name}' registered {kind} '{name}' with a non-callable factory")
            recipe = dict(recipe or {})
            unknown = set(recipe) - _RECIPE_KEYS
            if unknown:
                raise ValueError(
                    f"Plugin '{plugin_name}' registered objective '{name}' with unknown recipe keys "
                    f"{sorted(unknown)}; allowed: {sorted(_RECIPE_KEYS)}"
                )
            if (accepts is not None or reader is not None) and kind != "dataset":
                raise ValueError(f"Plugin '{plugin_name}' registered {kind} '{name}' with accepts=/reader=: "
                                 "only datasets declare the files they read.")
            readers = (reader,) if isinstance(reader, str) else tuple(reader or ())
            if not summary and not isinstance(factory, str):
                summary = (factory.__doc__ or "").strip().split("\n")[0]
            spec = ComponentSpec(
                kind=kind, name=name, target=factory, modality=modality, summary=summary,
                plugin=plugin_name, package=package, builtin=builtin, recipe=recipe,
                accepts=Accepts.coerce(accepts), reader=readers,
            )
            mine = staged[kind].get(name)
            if mine is not None:
                if mine.target is factory or mine.target == factory:
                    return  # re-registering the same thing is harmless
                raise ValueError(f"Plugin '{plugin_name}' registered {kind} '{name}' twice with different "
                                 f"factories ({mine.where} and {spec.where}).")
            existing = self._components[kind].get(name)
            if existing is not None:
                if existing.plugin == plugin_name and (existing.target is factory or existing.target == factory):
                    return
                raise _Clash(
                    f"plugin '{plugin_name}' (package {package}) is disabled: it registers {kind} '{name}', "
                    f"which plugin '{existing.plugin}' (package {existing.package}) already provides. "
                    f"Uninstall one of the two packages, or rename the component in one of them."
                )
            staged[kind][name] = spec
            if self.trace:
                print(f"[ssl_core] plugin '{plugin_name}' registered {kind} '{name}' ({modality})", file=sys.stderr)

        return register

    # ------------------------------------------------------------------ lookup
    def get(self, kind: str, name: str, modality: str | None = None) -> ComponentSpec:
        """Look a component up by kind and name; unknown names fail with a close match."""
        if kind not in self._components:
            raise UnknownComponentError("kind", kind, KINDS)
        if modality is not None:
            self.check_modality(modality)
        table = self._components[kind]
        if name not in table:
            pool = [n for n, s in table.items() if modality in (None, s.modality, "any") or s.modality == "any"]
            hints = []
            clashed = [f for f in self.failures if f.kind == "clash"]
            if clashed:
                hints.append("Disabled by a name clash: " + "; ".join(f.error for f in clashed))
            failed = [f.plugin for f in self.failures if f.kind != "clash"]
            if failed:
                hints.append("Plugins that failed to load: " + ", ".join(failed) + " (see `ssl list`).")
            raise UnknownComponentError(kind, name, pool or table.keys(), " ".join(hints))
        spec = table[name]
        if modality is not None and spec.modality not in (modality, "any"):
            same = [n for n, s in table.items() if s.modality == modality]
            raise UnknownComponentError(
                kind, name, same,
                hint=f"'{name}' is {article(spec.modality)} {kind}, not {article(modality)} one.",
            )
        return spec

    def check_modality(self, modality: str) -> None:
        """Raise a clear error for a modality no installed plugin provides."""
        known = self.modalities(any_kind=True)
        if modality != "any" and modality not in known:
            raise UnknownComponentError("modality", modality, known,
                                        "Install a plugin for it, or run `ssl list` to see what is installed.")

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

    def modalities(self, any_kind: bool = False) -> list[str]:
        """Modalities that have at least one objective (or, with ``any_kind``, any component)."""
        kinds = KINDS if any_kind else ("objective",)
        return sorted({s.modality for k in kinds for s in self._components[k].values() if s.modality != "any"})

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


def describe_factory(spec: ComponentSpec) -> tuple[str, dict[str, str | None]]:
    """A factory's docstring and keyword arguments (name -> default as written, or ``None``).

    For an import path not yet imported, both are read from the module's source with :mod:`ast`
    (the module is not executed, so no torch import); otherwise from the object itself.
    """
    import ast
    import importlib.util
    import inspect

    if spec.loaded:
        obj = spec.factory
        target = obj.__init__ if inspect.isclass(obj) else obj
        try:
            sig = inspect.signature(target)
        except (TypeError, ValueError):
            return inspect.getdoc(obj) or "", {}
        params = {n: (None if p.default is inspect.Parameter.empty else repr(p.default))
                  for n, p in sig.parameters.items()
                  if n != "self" and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}
        return inspect.getdoc(obj) or "", params
    module_name, _, attr = spec.target.partition(":")
    try:
        found = importlib.util.find_spec(module_name)
        source = open(found.origin, encoding="utf-8").read() if found and found.origin else ""  # noqa: SIM115
        tree = ast.parse(source)
    except (ImportError, OSError, SyntaxError, ValueError):
        return "", {}
    node: ast.AST | None = tree
    for part in attr.split("."):
        body = getattr(node, "body", [])
        node = next((n for n in body if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name == part), None)
        if node is None:
            return "", {}
    doc = ast.get_docstring(node) or ""  # type: ignore[arg-type]
    func = node
    if isinstance(node, ast.ClassDef):
        func = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        if func is None:
            return doc, {}
    args = func.args  # type: ignore[union-attr]
    positional = args.posonlyargs + args.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = list(zip(positional, defaults)) + list(zip(args.kwonlyargs, args.kw_defaults))
    params = {a.arg: (None if d is None else ast.unparse(d)) for a, d in pairs if a.arg != "self"}
    return doc, params
