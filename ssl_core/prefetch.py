"""Copying the next step's batch to the device while the current step computes."""

from __future__ import annotations

from typing import Any, Iterator, TypeVar

import torch

from ssl_core.data import move_to_device

T = TypeVar("T")


class DevicePrefetcher:
    """Wraps an iterator of ``(key, [micro-batch dicts])`` and yields the same items with their
    tensors already on ``device``, one step ahead.

    On CUDA the copies of step ``n + 1`` are issued on a side stream (from pinned memory, so they
    are asynchronous) before step ``n`` is handed out, and the compute stream waits for them
    only when step ``n + 1`` begins; on other devices the batch is simply moved. Reading one step
    ahead is safe for map-style data, whose position is the step count, not what was read.
    """

    def __init__(self, items: Iterator[tuple[Any, list[dict[str, Any]]]], device: torch.device) -> None:
        self.items, self.device = items, device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def _move(self, micro: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.stream is None:
            return [move_to_device(b, self.device, non_blocking=True) for b in micro]
        with torch.cuda.stream(self.stream):
            return [move_to_device(b, self.device, non_blocking=True) for b in micro]

    def _ready(self, micro: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.stream is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(self.stream)
            for batch in micro:  # the caching allocator must not reuse these while compute reads them
                for v in _tensors(batch):
                    v.record_stream(current)
        return micro

    def __iter__(self) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
        pending = None
        for key, micro in self.items:
            moved = (key, self._move(micro))
            if pending is not None:
                yield pending[0], self._ready(pending[1])
            pending = moved
        if pending is not None:
            yield pending[0], self._ready(pending[1])


def _tensors(batch: dict[str, Any]) -> Iterator[torch.Tensor]:
    for v in batch.values():
        if isinstance(v, torch.Tensor):
            yield v
        elif isinstance(v, dict):
            yield from _tensors(v)
