"""Counting the operations that make the host wait for the device, on any device.

On a GPU, reading a tensor's value on the host (``.item()``, ``float(t)``, ``.tolist()``,
``.cpu()``, ``if t:``), indexing with a boolean mask (its output size is data-dependent, so
PyTorch must read the mask) and building a tensor from Python numbers with
``torch.tensor(..., device=...)`` (a blocking host-to-device copy) each stall the host until
the device catches up. The training loop keeps these out of steps that do not log.
``torch.cuda.set_sync_debug_mode`` finds them only on a GPU; :class:`HostSyncCounter` counts the
same calls on a CPU too, so tests can assert a step has none::

    with HostSyncCounter() as syncs:
        trainer._train_step(micro, info)
    assert syncs.total == 0, syncs.calls
"""

from __future__ import annotations

import traceback
from collections import Counter
from typing import Any, Callable

import torch

def reads_are_free(device: torch.device) -> bool:
    """Whether reading a value on ``device`` back to the host costs nothing but the read itself.

    True on a CPU, where a tensor's value is already in host memory and nothing runs ahead of the
    host. Code that can pick a faster kernel by looking at the data (is there padding? an end of
    document?) looks only where this is true, and elsewhere takes the path that is right for any
    data without looking. Tests monkeypatch it to run the accelerator path on a CPU.
    """
    return device.type == "cpu"


_READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__")


def _is_mask(index: Any) -> bool:
    if isinstance(index, torch.Tensor):
        return index.dtype == torch.bool
    if isinstance(index, tuple):
        return any(_is_mask(i) for i in index)
    return False


class HostSyncCounter:
    """Counts host-device synchronising calls made while it is active (a context manager).

    :attr:`calls` maps a kind (``item``, ``__float__``, ``mask-index``, ``nonzero``,
    ``tensor(device=)`` ...) to a count; :attr:`where` keeps the innermost sslkit frame of
    each call, so a failing test says which line synchronised.
    """

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.where: list[str] = []
        self._saved: list[tuple[Any, str, Any]] = []
        self._depth = 0  # calls made by a counted call (e.g. tolist inside item) count once

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def _record(self, kind: str) -> None:
        self.calls[kind] += 1
        frames = [f for f in traceback.extract_stack() if "host_sync.py" not in f.filename]
        ours = [f for f in frames if "/ssl_" in f.filename or "/plugins/" in f.filename]
        f = (ours or frames)[-1]
        self.where.append(f"{kind} at {f.filename}:{f.lineno}")

    def _wrap(self, owner: Any, name: str, kind: str, when: Callable[..., bool] | None = None) -> None:
        original = getattr(owner, name)
        counter = self

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if counter._depth == 0 and (when is None or when(*args, **kwargs)):
                counter._record(kind)
            counter._depth += 1
            try:
                return original(*args, **kwargs)
            finally:
                counter._depth -= 1

        self._saved.append((owner, name, original))
        setattr(owner, name, wrapper)

    def __enter__(self) -> "HostSyncCounter":
        for name in _READS:
            self._wrap(torch.Tensor, name, name)
        self._wrap(torch.Tensor, "__getitem__", "mask-index", lambda self_, index: _is_mask(index))
        self._wrap(torch.Tensor, "__setitem__", "mask-index", lambda self_, index, value: _is_mask(index))
        self._wrap(torch.Tensor, "nonzero", "nonzero")
        self._wrap(torch, "nonzero", "nonzero")
        self._wrap(torch, "masked_select", "masked_select")
        self._wrap(torch.Tensor, "masked_select", "masked_select")
        self._wrap(torch, "tensor", "tensor(device=)", lambda *a, **k: k.get("device") is not None)
        return self

    def __exit__(self, *exc: Any) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()
