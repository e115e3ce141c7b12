"""Atomic file writes, and loading checkpoints and encoders without running code from them.

Every file is written to a temporary name in the same directory, flushed and fsynced, then moved
over the target with ``os.replace``, so a run killed mid-write (or a full disk) leaves the
previous good file. A failed write raises :class:`~ssl_core.errors.WriteError` naming the path and
the free space.

Files are read with :func:`load_torch_file`: ``torch.load(weights_only=True)``, which rebuilds
tensors and plain values (dicts, lists, numbers, strings) only. A file that would need arbitrary
Python objects unpickled (the way a crafted ``last.pt`` or ``encoder.pt`` runs a command) is
refused, as is an empty, truncated or corrupt one, each with a message naming the file.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # torch is imported where it is used: atomic_write_text serves light modules too
    import torch

from ssl_core.errors import DataError, WriteError


def _write_and_sync(fd: int, data: bytes) -> None:
    """Write ``data`` to the open descriptor ``fd`` and fsync it (closes ``fd``)."""
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _write_failure(path: Path, exc: OSError, size: int) -> WriteError:
    """A message for a failed write: the path, the reason, the space left, and the file kept."""
    reason = exc.strerror or str(exc)
    msg = f"Could not write {path} ({size and _human_bytes(size) or 'empty'}): {reason}."
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = _human_bytes(shutil.disk_usage(path.parent).free)
            msg += f" {free} free on the disk holding {path.parent}."
        except OSError:
            pass
        msg += " Free some space."
    kept = f"The previous {path.name} is unchanged." if path.exists() else f"No {path.name} was written."
    return WriteError(f"{msg} {kept}")


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        _write_and_sync(fd, data)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _write_failure(path, exc, len(data)) from exc
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def atomic_write_text(path: Path, text: str) -> None:
    """Write text to ``path`` atomically."""
    _atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` atomically."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    _atomic_write_bytes(path, buf.getvalue())


def load_torch_file(path: str | Path, map_location: str | torch.device = "cpu", what: str = "file",
                    fix: str = "", mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file and the fix.

    ``what`` says what the file is ("checkpoint", "encoder file") and ``fix`` what to do when it
    is damaged. Raises :class:`~ssl_core.errors.DataError` for a missing, empty, truncated or
    corrupt file, and for one that holds Python objects other than tensors and plain values
    (unpickling those could run code, so they are refused, never loaded).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError(f"The {what} {path} does not exist.")
    if path.stat().st_size == 0:
        raise DataError(f"The {what} {path} is empty (0 bytes): the write that made it did not finish "
                        f"(a full disk, or a copy cut short). {fix}".rstrip())
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(_safe_globals()):
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols say nothing to users
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found:
            raise DataError(
                f"Refusing to load the {what} {path}: it holds a Python object ({found.group(1)}) that "
                "torch.load(weights_only=True) does not rebuild, and unpickling it could run code from the file. "
                "sslkit writes only tensors and plain values. If you trust the file, load it yourself with "
                "torch.load(weights_only=False) and save its tensors as a plain dict."
            ) from None
        raise DataError(f"The {what} {path} is not a checkpoint sslkit can read ({_first_line(exc)}). {fix}".rstrip()) from None
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, IndexError, TypeError, AttributeError) as exc:
        raise DataError(
            f"The {what} {path} is damaged: it is truncated or corrupt ({type(exc).__name__}: {_first_line(exc)}). "
            f"{fix}".rstrip()
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _safe_globals() -> list[Any]:
    """Classes a checkpoint may hold besides tensors and plain values. Checkpoints written before
    the torch version was stored as a plain string hold a TorchVersion (a str subclass with
    comparison methods): allowed so those checkpoints still resume."""
    import torch

    return [torch.torch_version.TorchVersion]


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint written by the trainer (safely: see :func:`load_torch_file`).

    ``mmap=True`` maps tensors lazily instead of reading them: cheap when only the step is needed."""
    state = load_torch_file(path, map_location, what="checkpoint", mmap=mmap,
                            fix="Restore it from a copy, or start the run again with --overwrite.")
    if not isinstance(state, dict) or "step" not in state:
        raise DataError(f"{path} is not an sslkit training checkpoint (no 'step' entry). "
                        "Point --out at a run directory written by `ssl run`.")
    return state


def first_non_finite(state: Any, prefix: str = "") -> str | None:
    """The name of the first floating-point tensor in a (nested) state holding NaN or inf."""
    import torch

    if isinstance(state, torch.Tensor):
        if (state.is_floating_point() or state.is_complex()) and not bool(torch.isfinite(state).all()):
            return prefix or "tensor"
        return None
    if isinstance(state, Mapping):
        items: Any = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return None
    for key, value in items:
        found = first_non_finite(value, f"{prefix}.{key}" if prefix else str(key))
        if found is not None:
            return found
    return None
