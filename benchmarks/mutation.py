"""Mutation score of the maths and evaluator modules, measured with mutmut.

    .venv/bin/pip install "mutmut==3.8.1"        # benchmark-only: not a dependency of the toolkit
    .venv/bin/python benchmarks/mutation.py [--modules losses,ema,...] [--max-children 1]

mutmut (https://github.com/boxed/mutmut) makes small changes to the source (an operator, a
constant, a call argument), one at a time, and runs the tests that reach the changed function;
a mutant no test notices "survived". We use mutmut rather than cosmic-ray because it forks each
mutant's test run from a process that has already imported torch and the tests, and runs only the
tests that cover the mutated function: a mutant costs the run time of a few unit tests, not an
interpreter start plus a torch import (4-10 s of CPU each, which for ~1500 mutants would be hours).
Known limit: mutmut 3 does not mutate functions with decorators other than ``@staticmethod``/
``@classmethod`` (``ema_update``, ``DINOLoss.update_center`` under ``@torch.no_grad()``); their
behaviour is covered by the planted-bug checks in ``tests/vision/test_method_maths.py``.

mutmut derives module names from file paths under ``src/``, so the script lays the packages out
as ``WORKDIR/src/{ssl_core,ssl_vision,ssl_audio,ssl_text}`` (copies; the worktree is never
mutated), copies the fast unit tests, and runs ``mutmut run`` there. Only the fast unit tests
are used (seconds each); the learning and CLI tests are not. Results go to
``benchmarks/results/mutation.json`` (score per module and every surviving mutant's diff);
``benchmarks/MUTATION.md`` explains each survivor. Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PACKAGES = {  # package -> its folder in the repository
    "ssl_core": ROOT / "ssl_core",
    "ssl_vision": ROOT / "plugins" / "vision" / "ssl_vision",
    "ssl_audio": ROOT / "plugins" / "audio" / "ssl_audio",
    "ssl_text": ROOT / "plugins" / "text" / "ssl_text",
}

MODULES = {  # short name -> file under src/ (the maths and evaluator modules)
    "losses": "ssl_vision/losses.py",
    "ema": "ssl_vision/ema.py",
    "mae": "ssl_vision/mae.py",
    "byol": "ssl_vision/byol.py",
    "dino": "ssl_vision/dino.py",
    "simclr": "ssl_vision/simclr.py",
    "quantizer": "ssl_audio/quantizer.py",
    "wav2vec2": "ssl_audio/wav2vec2.py",
    "hubert": "ssl_audio/hubert.py",
    "kmeans": "ssl_audio/kmeans.py",
    "audio_masking": "ssl_audio/masking.py",
    "text_masking": "ssl_text/masking.py",
    "knn": "ssl_core/evaluators/knn.py",
    "few_shot": "ssl_core/evaluators/few_shot.py",
    "linear_probe": "ssl_core/evaluators/linear_probe.py",
    "health": "ssl_core/evaluators/health.py",
    "optim": "ssl_core/optim.py",
}

FAST_TESTS = [  # seconds each; mutmut runs, per mutant, only those that reach the mutated function
    "tests/vision/test_losses.py", "tests/vision/test_method_maths.py", "tests/vision/test_mae.py",
    "tests/vision/test_teachers.py",
    "tests/audio/test_quantizer.py", "tests/audio/test_quantizer_grads.py", "tests/audio/test_objectives.py",
    "tests/audio/test_masking.py",
    "tests/text/test_masking.py",
    "tests/core/test_evaluators.py", "tests/core/test_evaluator_settings.py", "tests/core/test_schedules_optim.py",
]
SUPPORT = ["tests/conftest.py", "tests/vision/conftest.py", "tests/audio/conftest.py", "tests/text/conftest.py",
           "tests/core/__init__.py"]


def build_workdir(workdir: Path, modules: list[str]) -> None:
    """A fresh copy of the packages (under src/) and the fast tests, with mutmut's config."""
    if workdir.exists():
        shutil.rmtree(workdir)
    for name, folder in PACKAGES.items():
        shutil.copytree(folder, workdir / "src" / name, ignore=shutil.ignore_patterns("__pycache__"))
    for rel in FAST_TESTS + SUPPORT:
        if (ROOT / rel).exists():
            (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, workdir / rel)
    only = "\n".join(f"    src/{MODULES[m]}" for m in modules)
    tests = "\n".join(f"    {t}" for t in FAST_TESTS)
    (workdir / "setup.cfg").write_text(
        "[mutmut]\nsource_paths = src\n"
        f"only_mutate =\n{only}\n"
        f"pytest_add_cli_args_test_selection =\n{tests}\n"
        "pytest_add_cli_args =\n    -p no:cacheprovider\n    -q\n"
        "process_isolation = forkserver\n"
        "timeout_multiplier = 10.0\ntimeout_constant = 30.0\n"
        "[tool:pytest]\naddopts = --import-mode=importlib\n"
    )


def _environment(workdir: Path) -> dict[str, str]:
    fixtures = [ROOT / "tests" / "fixtures" / "sslkit_testplugins", ROOT / "examples" / "sslkit-vicreg"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # the mutated copies first; the test plugins from the repository (never mutated)
    env["PYTHONPATH"] = os.pathsep.join([str(workdir / "mutants" / "src"), *map(str, fixtures)])
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TQDM_DISABLE="1")
    return env


def _survivor_diffs(workdir: Path, env: dict[str, str]) -> dict[str, list[dict[str, str]]]:
    """Every mutant that survived (or timed out), with its diff, grouped by module."""
    res = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=workdir, env=env,
                         capture_output=True, text=True)
    out: dict[str, list[dict[str, str]]] = {}
    for line in res.stdout.splitlines():
        m = re.match(r"\s*([\w.]+__mutmut_\d+): (.+)$", line.strip())
        if not m or m.group(2).strip() in ("killed", "caught by type check"):
            continue
        name, status = m.group(1), m.group(2).strip()
        diff = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=workdir, env=env,
                              capture_output=True, text=True).stdout
        out.setdefault(name.split(".x")[0].split(".x_")[0], []).append({"mutant": name, "status": status, "diff": diff})
    return out


def _counts(workdir: Path, env: dict[str, str]) -> dict[str, dict[str, int]]:
    res = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=workdir, env=env,
                         capture_output=True, text=True)
    counts: dict[str, dict[str, int]] = {}
    for line in res.stdout.splitlines():
        m = re.match(r"\s*([\w.]+)\.(x_?[\w]+)__mutmut_\d+: (.+)$", line.strip())
        if m:
            module, status = m.group(1), m.group(3).strip()
            counts.setdefault(module, {}).setdefault(status, 0)
            counts[module][status] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", default=",".join(MODULES), help=f"comma-separated, from: {', '.join(MODULES)}")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/sslkit-mutation"))
    parser.add_argument("--max-children", type=int, default=1, help="parallel mutant runs (keep low on a shared machine)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "mutation.json")
    args = parser.parse_args()
    modules = [m.strip() for m in args.modules.split(",") if m.strip()]
    unknown = set(modules) - set(MODULES)
    if unknown:
        parser.error(f"unknown module(s) {sorted(unknown)}; choose from {', '.join(MODULES)}")
    build_workdir(args.workdir, modules)
    env = _environment(args.workdir)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children)],
                   cwd=args.workdir, env=env, check=False)
    wall = time.perf_counter() - start
    counts = _counts(args.workdir, env)
    survivors = _survivor_diffs(args.workdir, env)
    rows = []
    for module in sorted(counts):
        c = counts[module]
        total = sum(c.values())
        killed = c.get("killed", 0) + c.get("caught by type check", 0)
        rows.append({"module": module, "mutants": total, "killed": killed,
                     "survived": c.get("survived", 0), "timeout": c.get("timeout", 0),
                     "no_tests": c.get("no tests", 0), "other": {k: v for k, v in c.items() if k not in
                                                                ("killed", "survived", "timeout", "no tests")},
                     "score": round(killed / total, 4) if total else None})
    total = sum(r["mutants"] for r in rows)
    killed = sum(r["killed"] for r in rows)
    report = {"command": "python benchmarks/mutation.py --modules " + ",".join(modules) +
                         f" --max-children {args.max_children}",
              "tool": "mutmut " + _mutmut_version(), "wall_s": round(wall, 1),
              "score": round(killed / total, 4) if total else None, "mutants": total, "killed": killed,
              "modules": rows, "survivors": survivors}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'module':<40} {'mutants':>8} {'killed':>7} {'survived':>9} {'score':>6}")
    for r in rows:
        print(f"{r['module']:<40} {r['mutants']:>8} {r['killed']:>7} {r['survived']:>9} {r['score'] or 0:>6.2f}")
    print(f"total: {killed}/{total} killed ({report['score']}); {wall:.0f} s; written to {args.out}")


def _mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


if __name__ == "__main__":
    main()
