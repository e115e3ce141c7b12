"""``ssl run --nproc-per-node N``: start the ranks under torchrun, pass stop signals on, and say
which rank failed and why.

- torchrun runs in its own session, so a Ctrl-C in the terminal reaches it once, through us,
  not twice. SIGTERM and SIGINT sent to ``ssl`` are forwarded to torchrun, which sends them to
  every rank; each rank finishes its step, the ranks agree to stop, rank 0 writes the
  checkpoint, and all exit (status 130, as a one-process run). torchrun kills ranks that have
  not exited 30 s after the signal.
- When a rank fails, it exits at once (no barrier), torchrun notices within a fraction of a
  second and stops the other ranks. Each rank records its exception in an error file (the
  ``python -m ssl_core.cli`` entry point is wrapped in torchrun's ``record``); afterwards the
  first failure is printed: rank, exception, message.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

FORWARDED = (signal.SIGTERM, signal.SIGINT)
INTERRUPTED_STATUS = 130


def torchrun_command(nproc_per_node: int, argv: list[str], log_dir: str) -> list[str]:
    """The torchrun command line that runs ``ssl <argv>`` on ``nproc_per_node`` local ranks."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc_per_node}",
            f"--log-dir={log_dir}", "-m", "ssl_core.cli", *argv]


def rank_failures(log_dir: str | Path) -> list[tuple[int, str]]:
    """(rank, "ExceptionType: message") for every rank that recorded an error, first failure first."""
    found = []
    for path in Path(log_dir).glob("**/attempt_*/*/error.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            message = data["message"]
            text = message["message"] if isinstance(message, dict) else str(message)
            stamp = int(message.get("extraInfo", {}).get("timestamp", 0)) if isinstance(message, dict) else 0
            found.append(((stamp, path.stat().st_mtime_ns), int(path.parent.name), text))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a file cut short by a killed rank
    return [(rank, text) for _, rank, text in sorted(found)]


def stop_message(received: list[int], nproc_per_node: int) -> str:
    """What ``ssl`` says after passing stop signals on: one signal lets each rank write its
    checkpoint first; a second makes the ranks give up at once, without one."""
    name = signal.Signals(received[0]).name
    if len(received) == 1:
        return (f"{name} passed on to all {nproc_per_node} ranks; each writes its checkpoint before stopping "
                f"(its message above says so), then continue with --resume.")
    return (f"{name} passed on to all {nproc_per_node} ranks, then a second signal: the ranks stopped at once, "
            f"without writing a checkpoint. --resume continues from the last checkpoint written before.")


def launch(nproc_per_node: int, argv: list[str]) -> int:
    """Run ``ssl <argv>`` on ``nproc_per_node`` ranks; return the exit status for ``ssl``."""
    log_dir = tempfile.mkdtemp(prefix="ssl-torchrun-")
    cmd = torchrun_command(nproc_per_node, argv, log_dir)
    print("Launching: " + " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.Popen(cmd, start_new_session=True)
    received: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        received.append(signum)
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        status = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    try:
        if received:
            print(stop_message(received, nproc_per_node), file=sys.stderr)
            return INTERRUPTED_STATUS
        if status != 0:
            failures = rank_failures(log_dir)
            if failures:
                rank, text = failures[0]
                print(f"Rank {rank} of {nproc_per_node} failed first: {text}", file=sys.stderr)
                print("The other ranks were stopped. Its traceback is printed above; the last checkpoint "
                      "written before the failure is kept.", file=sys.stderr)
            else:
                print(f"torchrun exited with status {status}; see the ranks' messages above.", file=sys.stderr)
        return status
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
