"""Several ``ssl run``s (``run_experiment``, as each rank of ``ssl run --nproc-per-node N`` calls
it) one after the other on N ranks of one gloo group, started by ``ssl_core.equivalence.run_ranks``.

    python tests/core/_runs_script.py JOBS.json

JOBS.json is a list of ``{"objective": NAME, "overrides": {...}}`` with optionally
``"config_file"``, ``"resume": true`` (as ``--resume``), ``"evaluate": false`` (as
``--no-eval``) and ``"save_fresh": true``. Each run's folder is its ``overrides["out"]``; with
``save_fresh`` rank 0 also saves ``fresh_encoder.pt`` there: the state dict of a fresh,
unsharded encoder built from the same config, to compare the exported one with.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from ssl_core import distributed as D
from ssl_core.runner import build_data, build_encoder, resolve_config, run_experiment


def main() -> None:
    jobs = json.loads(Path(sys.argv[1]).read_text())
    group = None
    for job in jobs:
        cfg = resolve_config(job["objective"], config_file=job.get("config_file"), overrides=job["overrides"])
        run_experiment(cfg, resume=job.get("resume", False), evaluate=job.get("evaluate", True))
        # the runs of one launch share the process group the first one joined (joining a new one
        # on the same address at once would race between ranks); it is left when the process exits
        assert dist.is_initialized() and D.world_size() > 1, "run_experiment left the process group"
        group = group or dist.group.WORLD
        assert dist.group.WORLD is group, "a later run joined a new process group"
        if job.get("save_fresh") and D.is_main_process():
            cfg = resolve_config(job["objective"], config_file=job.get("config_file"), overrides=job["overrides"])
            fresh = build_encoder(cfg, build_data(cfg)).state_dict()
            torch.save(fresh, Path(job["overrides"]["out"]) / "fresh_encoder.pt")
        D.barrier()
    # no D.shutdown(): ssl_core.distributed leaves the group it joined at exit, as after `ssl run`


if __name__ == "__main__":
    main()
