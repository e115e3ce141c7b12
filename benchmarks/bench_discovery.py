"""How long the discovery commands take: `ssl list`, `ssl info NAME`, `ssl --help`, `ssl run --help`.

Components are registered by import path and imported on first use, so these commands import
no plugin code and no torch. As a reference, the same run also times what listing used to cost:
importing every registered component's module (what an eager registry does).

Each command runs as a fresh process `--repeats` times after one untimed warm-up run (file
caches warm); the median wall time and the median CPU time (user + system of the child) are
reported, since on a shared machine CPU time is the steadier number.

    python benchmarks/bench_discovery.py [--repeats 5] [--no-reference]

Prints a table and writes benchmarks/results/discovery.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

SSL = [sys.executable, "-c", "from ssl_core.cli import main; main()"]
EAGER = [sys.executable, "-c",
         "from ssl_core.registry import get_registry\n"
         "for spec in get_registry().list():\n    spec.factory  # import every component's module\n"]
COMMANDS = {
    "ssl list": SSL + ["list"],
    "ssl info simclr": SSL + ["info", "simclr"],
    "ssl info resnet_small": SSL + ["info", "resnet_small"],
    "ssl --help": SSL + ["--help"],
    "ssl run --help": SSL + ["run", "--help"],
    "reference: import every component (eager listing)": EAGER,
}


def time_command(cmd: list[str], repeats: int) -> dict[str, float]:
    """Median wall and CPU seconds of ``cmd`` over ``repeats`` runs after one warm-up run."""
    env = {**os.environ, "TQDM_DISABLE": "1"}
    subprocess.run(cmd, capture_output=True, env=env, check=True)
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, env=env, check=True)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus),
            "wall_min_s": min(walls), "runs": repeats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "discovery.json"))
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the eager-import reference (about 10 s of CPU per run)")
    args = ap.parse_args()
    commands = {n: c for n, c in COMMANDS.items() if not (args.no_reference and c is EAGER)}
    results = {name: time_command(cmd, args.repeats) for name, cmd in commands.items()}
    width = max(len(n) for n in results)
    print(f"{'command':<{width}}  wall median (s)  wall min (s)  CPU median (s)")
    for name, r in results.items():
        print(f"{name:<{width}}  {r['wall_s']:15.2f}  {r['wall_min_s']:12.2f}  {r['cpu_s']:14.2f}")
    load = os.getloadavg()
    record = {"results": results, "python": sys.version.split()[0], "platform": platform.platform(),
              "cpus": os.cpu_count(), "load_average": load, "repeats": args.repeats}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2))
    print(f"load average while measuring: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; wrote {args.out}")


if __name__ == "__main__":
    main()
