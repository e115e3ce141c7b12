"""Exceptions that speak to the user: what went wrong, where, and how to fix it."""

from __future__ import annotations

import difflib
from typing import Iterable


class SSLKitError(Exception):
    """Base class for errors the CLI reports as a one-paragraph message, without a traceback."""


class UnknownComponentError(SSLKitError, KeyError):
    """A component name that no registered plugin provides."""

    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str = "") -> None:
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        msg = f"Unknown {kind} '{name}'."
        if close:
            msg += f" Did you mean '{close[0]}'?"
        plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
        msg += f" Known {plural}: {', '.join(known) if known else '(none registered)'}."
        if hint:
            msg += " " + hint
        self.kind, self.name, self.known, self.suggestion = kind, name, known, close[0] if close else None
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class DuplicateComponentError(SSLKitError):
    """Two plugins registered different components under the same kind and name."""


class ConfigError(SSLKitError):
    """A config file or override has an unknown field or a value of the wrong type."""


class DataError(SSLKitError):
    """Training or evaluation data is missing, empty, unreadable or too small."""


class NonFiniteLossError(SSLKitError):
    """The loss became NaN or infinite and the run's policy is to stop."""


class WriteError(SSLKitError, OSError):
    """A file could not be written (a full disk, no permission); the previous file is kept."""

    def __str__(self) -> str:  # OSError would otherwise format its arguments
        return str(self.args[0])


class RunDirError(SSLKitError):
    """A run directory holds another run, or another process is writing it."""
