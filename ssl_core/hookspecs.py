"""Every extension point of sslkit, in one place (seven ``register_*`` hooks).

A plugin is a module (or object) with functions decorated by ``ssl_core.hookimpl`` whose names
match the specs below. Each hook receives a ``register`` callback; call it once per component:

    from ssl_core import hookimpl

    @hookimpl
    def register_objectives(register):
        register("vicreg", VICReg, modality="vision", summary="VICReg (Bardes et al., 2022)",
                 recipe={"encoder": "resnet_small", "augmenter": "simclr_views"})

Plugins are found through the entry-point group ``ssl_core.plugins`` (``[project.entry-points
."ssl_core.plugins"]`` in a pyproject.toml) or registered in-process with
:meth:`ssl_core.registry.Registry.add_plugin`. See docs/plugins.md for the full guide.
"""

from __future__ import annotations

import pluggy

PROJECT = "ssl_core"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_encoders(register):  # type: ignore[no-untyped-def]
    """Register encoder factories: ``register(name, factory, modality=..., summary=...)``."""


@hookspec
def register_augmenters(register):  # type: ignore[no-untyped-def]
    """Register augmenter factories: ``register(name, factory, modality=..., summary=...)``."""


@hookspec
def register_objectives(register):  # type: ignore[no-untyped-def]
    """Register objectives: ``register(name, cls, modality=..., summary=..., recipe={...})``.

    The recipe names the encoder, augmenter, dataset and evaluators the objective uses by
    default, plus default objective and training settings, so ``ssl run --objective NAME`` needs
    no other flag.
    """


@hookspec
def register_evaluators(register):  # type: ignore[no-untyped-def]
    """Register evaluator factories: ``register(name, factory, modality="any", summary=...)``."""


@hookspec
def register_datasets(register):  # type: ignore[no-untyped-def]
    """Register data sources: ``register(name, factory, modality=..., summary=..., builtin=bool)``.

    ``factory(path=None, **kwargs) -> DataModule``. ``builtin=True`` marks a source that works
    offline with no path; ``builtin=False`` sources read the user's files from ``path``.
    """


@hookspec
def register_loggers(register):  # type: ignore[no-untyped-def]
    """Register experiment loggers: ``register(name, factory, summary=...)``.

    ``factory(run_dir=Path, **kwargs) -> ssl_core.loggers.Logger`` is called on rank 0 only, for
    every name in the run's ``loggers`` list (``--logger NAME``), with ``logger_kwargs[name]``.
    Import the tracking library inside the factory, not at module level, so ``ssl list`` stays fast.
    """


@hookspec
def register_exporters(register):  # type: ignore[no-untyped-def]
    """Register export formats: ``register(name, factory, modality=..., summary=...)``.

    ``factory(**kwargs) -> ssl_core.exporting.Exporter``; ``ssl export RUN --format NAME`` asks each
    exporter whether it supports the run's encoder and writes the files another library loads.
    """
