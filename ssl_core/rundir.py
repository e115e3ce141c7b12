"""One run, one folder: refuse to mix a new run into an old one, and lock a run while it is written.

- :func:`check_fresh_run_dir` refuses to start a fresh run in a folder that already holds a run
  (``config.yaml``, ``metrics.jsonl``, ``checkpoints/``, ``encoder.pt`` or ``eval.json``; an
  Experiment's ``experiment.yaml`` or ``encoders/``) unless
  the caller resumes it or asked to overwrite it; :func:`clear_run_dir` does the overwriting.
- :class:`RunLock` is an exclusive lock on ``RUN_DIR/run.lock`` held while a process writes the
  run. It is an ``flock`` on the file, so the kernel releases it on any exit, ``kill -9``
  included; the file records the holder's pid, host and command for the message a second
  process gets. A lock file left by a process that is gone is taken over (with a warning naming
  it). Under torchrun only rank 0 takes it: the other ranks write nothing into the folder.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import socket
import sys
import warnings
from pathlib import Path
from typing import Any

from ssl_core.errors import ConfigError, RunDirError

LOCK_FILE = "run.lock"
RUN_MARKERS = ("config.yaml", "metrics.jsonl", "checkpoints", "encoder.pt", "eval.json", "experiment.yaml", "encoders")
"""Entries whose presence means a folder holds an sslkit run."""

try:  # POSIX; elsewhere runs are not locked (a warning says so once)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def launched_rank() -> int:
    """This process's rank as torchrun announced it (0 when not launched by torchrun).

    Read from the environment, so it is known before the process group is initialised."""
    return int(os.environ.get("RANK", "0"))


def run_markers(run_dir: Path) -> list[str]:
    """The entries of ``run_dir`` that show it holds a run (empty if none or no folder)."""
    return [name for name in RUN_MARKERS if (Path(run_dir) / name).exists()]


def check_fresh_run_dir(run_dir: Path, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse what would mix two runs in ``run_dir``; nothing is written or deleted here.

    A fresh run (no ``resume``) needs a new or empty folder, or one holding a run with
    ``overwrite`` (cleared later by :func:`clear_run_dir`). A folder with other files is never
    cleared: it is probably not a run folder at all.
    """
    run_dir = Path(run_dir)
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite deletes it: pass only one.")
    if resume or not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise RunDirError(f"--out {run_dir} is a file, not a folder. Choose another --out.")
    markers = run_markers(run_dir)
    if markers and not overwrite:
        raise RunDirError(
            f"{run_dir} already holds a run ({', '.join(markers)}). Continue it with --resume, delete it and "
            "start again with --overwrite, or choose another --out."
        )
    others = sorted(p.name for p in run_dir.iterdir() if p.name not in (*RUN_MARKERS, LOCK_FILE))
    if others and not markers:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise RunDirError(
            f"{run_dir} is not empty and does not hold an sslkit run ({shown}); a run needs a folder of its own. "
            "Choose a new or empty --out."
        )


def clear_run_dir(run_dir: Path) -> None:
    """Delete everything in ``run_dir`` except the lock this process holds (``--overwrite``)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    for entry in run_dir.iterdir():
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _holder(text: str) -> str:
    """'pid 123 on host h, since ...: ssl run ...' from a lock file's contents."""
    try:
        info = json.loads(text)
    except ValueError:
        return "an unknown process"
    cmd = f": {info['command']}" if info.get("command") else ""
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, since {info.get('since', '?')}{cmd}"


class RunLock:
    """Exclusive lock on a run folder, held by one process while it writes the run.

    Use as a context manager (released on any exit; the kernel releases it if the process dies)::

        with RunLock(run_dir):
            ...  # train, export, evaluate
    """

    def __init__(self, run_dir: str | Path, purpose: str = "training") -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.purpose = purpose
        self._fd: int | None = None
        self._created_dir = False

    def acquire(self) -> "RunLock":
        """Take the lock or raise :class:`RunDirError` naming the process that holds it."""
        if fcntl is None:  # pragma: no cover
            warnings.warn("Run folders are not locked on this platform: do not start two runs on one --out.")
            return self
        self._created_dir = not self.run_dir.exists()
        while True:
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise RunDirError(f"Cannot create the run's lock file {self.path}: {exc.strerror or exc}. "
                                  "The run folder must be writable; choose another --out.") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.read(fd, 4096).decode("utf-8", errors="replace")
                os.close(fd)
                raise RunDirError(
                    f"{self.run_dir} is in use by another process ({_holder(text)}). Two processes writing one run "
                    "would mix their checkpoints and metrics: wait for it to finish, stop it, or choose another --out."
                ) from None
            # the holder before us may have deleted the file between our open and our lock: then
            # we hold a lock on a file nobody else will see, so start over
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = os.read(fd, 4096).decode("utf-8", errors="replace").strip()
        if previous:  # a holder that died without releasing (kill -9, power loss)
            warnings.warn(f"Took over the lock of {self.run_dir} from a process that is no longer running "
                          f"({_holder(previous)}).", stacklevel=2)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": self.purpose,
                "since": _dt.datetime.now().isoformat(timespec="seconds"), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Delete the lock file and release the lock (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                os.unlink(self.path)
        except OSError:
            pass
        os.close(fd)
        if self._created_dir:  # a run that failed before writing anything leaves no empty folder
            try:
                self.run_dir.rmdir()
            except OSError:
                pass

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def check_not_locked(run_dir: str | Path) -> None:
    """Raise :class:`RunDirError` if another process holds ``run_dir``'s lock (takes nothing).

    For a launcher that starts the processes which will take the lock themselves."""
    path = Path(run_dir) / LOCK_FILE
    if fcntl is None or not path.exists():
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.read(fd, 4096).decode("utf-8", errors="replace")
        raise RunDirError(f"{run_dir} is in use by another process ({_holder(text)}). Wait for it to finish, "
                          "stop it, or choose another --out.") from None
    finally:
        os.close(fd)
