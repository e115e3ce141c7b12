"""The process group's life cycle in ``ssl_core.distributed``: a run ends with a barrier and keeps
the group (several runs in one launch share it), the group the core joined is left at exit, and
a group the caller created is never left by the core. Multi-run launches are exercised end to
end by ``tests/core/_runs_script.py`` (test_launch.py, test_loggers.py, test_fsdp_modalities.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch.distributed as dist

from ssl_core import distributed as D


def test_the_core_leaves_the_group_it_joined_and_no_other(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_init = dist.init_process_group

    def one_rank(name: str):  # a real gloo group of one process, on a file store
        return lambda backend, timeout=None: real_init(backend, store=dist.FileStore(str(tmp_path / name), 1),
                                                       rank=0, world_size=1, timeout=timeout)

    monkeypatch.setenv("WORLD_SIZE", "2")  # as under torchrun; the group itself has one rank
    monkeypatch.setattr(D, "_joined_here", False)  # restored after the test, so the exit hook is a no-op
    try:
        monkeypatch.setattr(dist, "init_process_group", one_rank("joined"))
        D.init_from_env("cpu")
        assert dist.is_initialized() and D._joined_here
        D.end_of_run()  # what Strategy.close does after a run
        assert dist.is_initialized()
        D.init_from_env("cpu")  # the next run in the same process joins nothing new
        assert D._joined_here
        D._leave_at_exit(settle_s=0.0)
        assert not dist.is_initialized() and not D._joined_here

        one_rank("callers")("gloo")  # the caller's own group
        D.init_from_env("cpu")
        assert not D._joined_here
        D.end_of_run()
        D._leave_at_exit(settle_s=0.0)
        assert dist.is_initialized(), "the core destroyed a process group the caller created"

        dist.destroy_process_group()
        monkeypatch.setattr(dist, "init_process_group", one_rank("failed"))
        D.init_from_env("cpu")
        D.forget_group()  # Strategy.abandon after an error on this rank
        D._leave_at_exit(settle_s=0.0)
        assert dist.is_initialized(), "after an error the exit hook must not touch the group"
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
