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

from ssl_core import distributed as D
from ssl_core.runner import build_data, build_encoder, resolve_config, run_experiment
from ssl_core.strategies.base import Strategy


def main() -> None:
    jobs = json.loads(Path(sys.argv[1]).read_text())
    # run_experiment leaves the process group after each run, and joining a new one on the same
    # port at once races between ranks: here the runs share one group, left at the end
    Strategy.close = lambda self: D.barrier()  # type: ignore[method-assign]
    for job in jobs:
        cfg = resolve_config(job["objective"], config_file=job.get("config_file"), overrides=job["overrides"])
        run_experiment(cfg, resume=job.get("resume", False), evaluate=job.get("evaluate", True))
        if job.get("save_fresh") and D.is_main_process():
            cfg = resolve_config(job["objective"], config_file=job.get("config_file"), overrides=job["overrides"])
            fresh = build_encoder(cfg, build_data(cfg)).state_dict()
            torch.save(fresh, Path(job["overrides"]["out"]) / "fresh_encoder.pt")
        D.barrier()
    D.shutdown()


if __name__ == "__main__":
    main()
