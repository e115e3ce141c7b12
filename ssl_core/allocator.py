"""Keeping the CPU allocator from handing training buffers back to the operating system.

A training step on a CPU allocates and frees the same large tensors every step (activations
kept for the backward pass, gradients, augmented views: at batch 256 and 28 px many are 5-50
MB). glibc serves blocks above its mmap threshold (at most 32 MiB, adjusted as the program runs)
with a fresh ``mmap`` and gives them back with ``munmap`` on free, and trims freed memory at the
top of its heap beyond 128 KiB: the next step then faults every page in again, zeroed by the
kernel. On the SimCLR Fashion-MNIST workload that was tens of millions of minor page faults and
a large share of the run in system time (measured in ``benchmarks/bench_page_faults.py``,
results in ``benchmarks/RESULTS.md``).

:func:`tune_malloc` sets glibc's ``M_MMAP_MAX`` to 0 (every block comes from the heap, which is
reused) and ``M_TRIM_THRESHOLD`` to 4 GiB (freed memory stays with the process), the same as
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=4294967296`` in the environment. The cost: the
process keeps the memory of its peak step until it exits (its resident size stays at the peak
rather than falling between steps). The CLI and the Trainer call it at start-up; set
``SSLKIT_MALLOC_TUNING=0`` to leave the allocator alone (e.g. when another allocator such as
jemalloc or tcmalloc is preloaded, which this detects and leaves alone anyway).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

OPT_OUT = "SSLKIT_MALLOC_TUNING"
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
TRIM_THRESHOLD = 4 * 1024**3

_applied: bool | None = None


def tune_malloc() -> bool:
    """Apply the settings above once per process; True when glibc accepted them.

    Does nothing (False) off Linux/glibc, with ``SSLKIT_MALLOC_TUNING=0``, when the user set
    glibc's own ``MALLOC_*`` variables, or when another allocator is preloaded.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(OPT_OUT, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux") or any(k in os.environ for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    if any(name in os.environ.get("LD_PRELOAD", "") for name in ("jemalloc", "tcmalloc", "mimalloc")):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # M_TRIM_THRESHOLD takes an int: 4 GiB does not fit, so use the largest one
    trim = min(TRIM_THRESHOLD, 2**31 - 1)
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, trim))
    return _applied
