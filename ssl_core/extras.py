"""Optional dependencies: import them on first use, and say which extra installs a missing one."""

from __future__ import annotations

import importlib
from types import ModuleType

from ssl_core.errors import ConfigError


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise a :class:`ConfigError` naming the pip extra that provides it.

    ``purpose`` completes the sentence "... is needed for <purpose>", e.g. "the TensorBoard logger".
    Imports stay inside the functions that need them, so ``import ssl_core`` and ``ssl list`` never
    pay for tensorboard, mlflow, datasets or transformers.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise ConfigError(
            f"The optional package '{top}' is needed for {purpose} but is not installed "
            f"({type(exc).__name__}: {exc}). Install it with: pip install 'sslkit[{extra}]'"
        ) from exc
