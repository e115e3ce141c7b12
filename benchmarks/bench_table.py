"""The benchmark table: every registered objective at its default budget on its built-in data,
each probe of the trained encoder next to a randomly initialised encoder of the same architecture.

    python benchmarks/bench_table.py                         # every installed objective
    python benchmarks/bench_table.py --only simclr,byol      # a subset (rows of earlier runs are kept)
    python benchmarks/bench_table.py --only simclr --lightly # plus the method built from lightly's parts

Each method runs exactly as ``ssl run -m MODALITY -o NAME`` does (its recipe: encoder,
augmentations, built-in dataset, epochs, batch, evaluators), so the table is what a new user gets.
Per method it records the dataset actually used (a fallback shows), epochs and steps, wall time
(training + evaluation of both encoders) and the CPU seconds behind it (which, unlike the wall
time, other programs' load does not inflate), training samples/s, and every probe metric trained
vs random with the difference; the embedding-health statistics are not probes and are left out.
The files are rewritten after every row, so a run stopped half-way keeps the rows it finished.

``--lightly`` (vision only) adds the same method built from lightly 1.6.0's heads, losses and
transforms around the same backbone and initial weights, trained for the same epochs with a
plain loop (``bench_vision_methods.py``), probed with the same kNN and linear probe; its random
row is its own untrained start. lightly is a benchmark-only dependency: ``pip install lightly==1.6.0``.

Writes ``benchmarks/results/table.json`` (merged by method, so a table can be built piecewise)
and the Markdown table ``benchmarks/results/table.md``; ``--docs docs/benchmarks.md`` also
replaces the table between the ``<!-- bench_table -->`` markers there. Timings depend on the
machine's load, which is recorded per row.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import platform
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_vision_methods (for --lightly)

from ssl_core.config import nest, parse_override  # noqa: E402
from ssl_core.registry import get_registry  # noqa: E402
from ssl_core.runner import (build_data, build_encoder, build_objective, evaluate_encoder,  # noqa: E402
                             resolve_config, run_experiment)

RESULTS = Path(__file__).resolve().parent / "results"
NOT_PROBES = {"embed_std", "embed_std_ratio", "effective_rank"}
"""Metrics that describe the embedding rather than score it on a task."""
LOWER_IS_BETTER = ("perplexity", "loss")
"""Metric names containing these are better when smaller."""
LIGHTLY_METHODS = ("simclr", "byol", "dino", "mae")
MARK_BEGIN, MARK_END = "<!-- bench_table:begin -->", "<!-- bench_table:end -->"
HEADLINE_BEGIN, HEADLINE_END = "<!-- headline:begin -->", "<!-- headline:end -->"
HEADLINE_PROBES = {"knn_top1": "kNN top-1", "linear_top1": "linear top-1", "zeroshot_top1": "zero-shot top-1"}
"""The probes the README's headline shows, trained / random (the full table is in docs/)."""


def probes(trained: dict[str, float], random: dict[str, float]) -> list[dict[str, Any]]:
    """Every metric present for both encoders, with its difference and whether trained is ahead."""
    out = []
    for name, t in trained.items():
        if name in NOT_PROBES or name not in random:
            continue
        r = random[name]
        lower = any(k in name for k in LOWER_IS_BETTER)
        out.append({"probe": name, "trained": t, "random": r, "delta": t - r,
                    "ahead": (t < r) if lower else (t > r), "lower_is_better": lower})
    return out


def run_sslkit(name: str, modality: str, threads: int, sets: dict[str, Any] | None = None) -> dict[str, Any]:
    """One default run of ``name`` through the runner (``sets``: dotted overrides, for smoke
    tests; they are recorded in the row); the row of the table."""
    torch.set_num_threads(threads)
    seen: dict[str, Any] = {}

    def announce(cfg: Any, data: Any) -> None:
        seen["description"] = data.description

    with tempfile.TemporaryDirectory() as tmp:
        overrides = {"out": tmp, "train.progress": False, "train.num_threads": threads, **(sets or {})}
        cfg = resolve_config(name, modality, overrides=nest(overrides))
        t0 = time.perf_counter()
        outcome = run_experiment(cfg, announce=announce)
        total = time.perf_counter() - t0
    return {
        "method": name, "implementation": "sslkit", "modality": cfg.modality, "dataset": cfg.dataset,
        "data": seen.get("description", ""), "encoder": cfg.encoder, "epochs": cfg.train.epochs,
        "steps": outcome.train.steps, "batch_size": cfg.train.batch_size, "train_s": outcome.train.wall_time_s,
        "total_s": total, "samples_per_s": outcome.train.samples_per_s,
        "probes": probes(outcome.metrics.get("trained", {}), outcome.metrics.get("random", {})),
        "load_average": os.getloadavg()[0], "overrides": dict(sets or {}), "cfg": cfg,
    }


def run_lightly(sslkit_row: dict[str, Any], threads: int, workers: int) -> dict[str, Any]:
    """The same method from lightly's parts, same backbone/initial weights/data/epochs/schedule."""
    import lightly

    from bench_vision_methods import train_lightly

    torch.set_num_threads(threads)
    cfg = sslkit_row["cfg"]
    data = build_data(cfg)
    with_probes = dataclasses.replace(cfg, evaluators=["knn", "linear_probe"])
    if not cfg.train.epochs:
        raise SystemExit("--lightly compares at the same number of epochs: set train.epochs, not train.steps.")
    t0 = time.perf_counter()
    res = train_lightly(sslkit_row["method"], cfg, data, int(cfg.train.epochs), workers,
                        lambda enc: evaluate_encoder(enc, data, with_probes))
    return {
        "method": sslkit_row["method"], "implementation": f"lightly {lightly.__version__}", "modality": "vision",
        "dataset": cfg.dataset, "data": data.description, "encoder": cfg.encoder, "epochs": cfg.train.epochs,
        "steps": None, "batch_size": cfg.train.batch_size, "train_s": res["train_s"],
        "total_s": time.perf_counter() - t0, "samples_per_s": res["samples_per_s"],
        "probes": probes(res["after"], res["before"]), "load_average": os.getloadavg()[0],
        "overrides": sslkit_row.get("overrides", {}),
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    """One line per (method, implementation, probe); the run's facts on its first line."""
    head = ("| method | implementation | data | epochs (steps) | wall s | CPU s | samples/s | probe | trained | random "
            "| trained - random |\n|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        steps = f" ({r['steps']})" if r.get("steps") else ""
        changed = "".join(f", {k}={v}" for k, v in r.get("overrides", {}).items())  # never silent
        facts = [r["method"], r["implementation"] + (f" (non-default{changed})" if changed else ""), r["dataset"],
                 f"{r['epochs']}{steps}", f"{r['total_s']:.0f}",
                 f"{r['cpu_s']:.0f}" if r.get("cpu_s") is not None else "-", f"{r['samples_per_s']:.0f}"]
        for i, p in enumerate(r["probes"] or [{"probe": "-", "trained": float("nan"), "random": float("nan"),
                                                "delta": float("nan"), "ahead": False}]):
            cells = facts if i == 0 else [""] * len(facts)
            flag = "" if p["ahead"] else " **(behind random)**"
            lines.append("| " + " | ".join(cells + [p["probe"], f"{p['trained']:.3f}", f"{p['random']:.3f}",
                                                     f"{p['delta']:+.3f}{flag}"]) + " |")
    return "\n".join(lines) + "\n"


MODALITY_ORDER = ["vision", "text", "audio", "image-text"]


def order(rows: list[dict[str, Any]], objectives: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Rows by modality (vision, text, audio, image-text, then others), method name, sslkit first."""
    modality = dict(objectives)

    def key(r: dict[str, Any]) -> tuple[int, str, bool]:
        m = modality.get(r["method"], r.get("modality", ""))
        return (MODALITY_ORDER.index(m) if m in MODALITY_ORDER else len(MODALITY_ORDER), r["method"],
                r["implementation"] != "sslkit")

    return sorted(rows, key=key)


def provenance(rows: list[dict[str, Any]], command: str, json_path: Path) -> str:
    """The line above a written table saying where its rows came from: the command, when one run
    made every row; otherwise how many runs did, and where each row's own command is kept (a
    merge's command names the other runs' files, often temporary ones, not how to reproduce)."""
    stamp = _dt.date.today().isoformat()
    commands = {r["command"] for r in rows if r.get("command")}
    if len(commands) <= 1:
        return f"_Written by `{next(iter(commands), command)}` on {stamp}._"
    try:  # the JSON's path as a reader of the repository sees it
        where = json_path.resolve().relative_to(RESULTS.parent.parent).as_posix()
    except ValueError:
        where = json_path.name
    return (f"_Rows from {len(commands)} runs of `python benchmarks/bench_table.py` (each row's own command is "
            f"in `{where}`), joined with `--merge` on {stamp}._")


def update_docs(path: Path, table: str, header: str, begin: str = MARK_BEGIN, end: str = MARK_END) -> None:
    """Replace the text between ``begin`` and ``end`` in ``path`` with ``header`` and ``table`` (the
    rest of the page is hand-written)."""
    text = path.read_text(encoding="utf-8") if path.exists() else f"# Benchmarks\n\n{begin}\n{end}\n"
    if begin not in text or end not in text:
        raise SystemExit(f"{path} has no {begin} ... {end} markers to put the table between.")
    before, rest = text.split(begin, 1)
    after = rest.split(end, 1)[1]
    block = f"{begin}\n{header}\n\n{table}{end}"
    path.write_text(before + block + after, encoding="utf-8")


def headline(rows: list[dict[str, Any]]) -> str:
    """The README's short table: each sslkit method's main probes, trained / random, and its wall
    time; a probe behind random is marked."""
    cols = [k for k in HEADLINE_PROBES if any(p["probe"] == k for r in rows for p in r["probes"])]
    lines = ["| method | data | epochs (steps) | wall / CPU time | " + " | ".join(f"{HEADLINE_PROBES[k]}, trained / random" for k in cols)
             + " |", "|---|---|---|---|" + "---|" * len(cols)]
    for r in rows:
        if r["implementation"] != "sslkit":
            continue
        by_name = {p["probe"]: p for p in r["probes"]}
        cells = []
        for k in cols:
            p = by_name.get(k)
            cells.append("-" if p is None else f"{p['trained']:.3f} / {p['random']:.3f}" + ("" if p["ahead"] else " **(behind)**"))
        budget = f"{r['epochs']} ({r['steps']})" if r.get("epochs") else f"{r.get('steps')} steps"
        cpu = f" / {r['cpu_s'] / 60:.1f}" if r.get("cpu_s") is not None else ""
        changed = " (non-default)" if r.get("overrides") else ""
        lines.append(f"| {r['method']}{changed} | {r['dataset']} | {budget} | {r['total_s'] / 60:.1f}{cpu} min | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated objective names (default: all installed)")
    parser.add_argument("--lightly", action="store_true", help="add lightly builds of the vision methods")
    parser.add_argument("--lightly-only", action="store_true",
                        help="only the lightly builds (the sslkit rows come from another run of the same recipes)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for lightly's per-image transforms")
    parser.add_argument("--fresh", action="store_true", help="drop rows of earlier runs instead of merging")
    parser.add_argument("--merge", type=Path, nargs="+", default=[], metavar="JSON",
                        help="also merge the rows of these table.json files (tables run in parallel, with their own "
                             "--json); without --only, nothing is trained")
    parser.add_argument("--json", type=Path, default=RESULTS / "table.json")
    parser.add_argument("--md", type=Path, default=RESULTS / "table.md")
    parser.add_argument("--docs", type=Path, default=None, help="also update the table in this Markdown page")
    parser.add_argument("--readme", type=Path, default=None,
                        help="also write the short headline table between the headline markers of this page (README.md)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field for every method (smoke tests; marked non-default in the table)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")

    registry = get_registry()
    objectives = [(s.name, s.modality) for s in registry.list("objective")]
    names = [n for n in args.only.split(",") if n] or ([] if args.merge else [n for n, _ in objectives])
    unknown = sorted(set(names) - {n for n, _ in objectives})
    if unknown:
        raise SystemExit(f"Unknown objective(s) {unknown}; installed: {[n for n, _ in objectives]}")
    old = [] if args.fresh or not args.json.exists() else json.loads(args.json.read_text())["rows"]
    for other in args.merge:  # the other file's rows win over this file's older ones
        old = overlay(old, json.loads(other.read_text())["rows"])
    command = "python benchmarks/bench_table.py" + "".join(f" {a}" for a in sys.argv[1:])
    sets = dict(parse_override(x) for x in args.sets)
    rows: list[dict[str, Any]] = []
    merged: list[dict[str, Any]] = order(old, objectives)
    for name, modality in objectives:
        if name not in names:
            continue
        if args.lightly_only and (modality != "vision" or name not in LIGHTLY_METHODS):
            continue
        print(f"== {name} ({modality})", flush=True)
        if args.lightly_only:
            overrides = {"train.progress": False, "train.num_threads": args.threads, **sets}
            cfg = resolve_config(name, modality, overrides=nest(overrides))
            data = build_data(cfg)  # completes the config as a run does (augmenter sizes from the data)
            build_objective(cfg, build_encoder(cfg, data), data)
            row = {"method": name, "overrides": sets, "cfg": cfg}
        else:
            row = timed(run_sslkit, name, modality, args.threads, sets)
        cfg = row.pop("cfg")
        if not args.lightly_only:
            row["command"] = command  # rows merged from several runs each keep the one that made them
            rows.append(row)
            print(markdown([row]), flush=True)
            merged = save(args, old, rows, objectives, command)  # a run stopped later keeps this row
        if (args.lightly or args.lightly_only) and modality == "vision" and name in LIGHTLY_METHODS:
            lrow = timed(run_lightly, {**row, "cfg": cfg}, args.threads, args.workers)
            lrow["command"] = command
            rows.append(lrow)
            print(markdown([lrow]), flush=True)
            merged = save(args, old, rows, objectives, command)

    if not rows:
        merged = save(args, old, rows, objectives, command)
    print("\n" + markdown(merged))
    behind = [f"{r['method']} ({r['implementation']}) {p['probe']}" for r in merged for p in r["probes"] if not p["ahead"]]
    print("Every probe ahead of random." if not behind else "BEHIND RANDOM: " + "; ".join(behind))
    print(f"wrote {args.json} and {args.md}" + "".join(f" and {p}" for p in (args.docs, args.readme) if p))


def overlay(rows: list[dict[str, Any]], newer: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with every row that ``newer`` measures again (same method and implementation,
    whatever the version) replaced by ``newer``'s."""
    def key(r: dict[str, Any]) -> tuple[str, str]:
        return r["method"], r["implementation"].split()[0]

    again = {key(r) for r in newer}
    return [r for r in rows if key(r) not in again] + newer


def timed(fn: Any, *args: Any) -> dict[str, Any]:
    """``fn(*args)``'s row with the CPU seconds it took (this process and its finished children,
    e.g. DataLoader workers): unlike wall time, that does not grow with other programs' load."""
    def cpu() -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    start = cpu()
    row = fn(*args)
    row["cpu_s"] = cpu() - start
    return row


def save(args: argparse.Namespace, old: list[dict[str, Any]], rows: list[dict[str, Any]],
         objectives: list[tuple[str, str]], command: str) -> list[dict[str, Any]]:
    """Merge this run's rows over the earlier ones (by method and implementation) and write the
    JSON, the Markdown and (with --docs) the docs page; returns the merged rows."""
    merged = order(overlay(old, rows), objectives)
    result = {
        "benchmark": "bench_table",
        "description": "every objective at its default budget on its built-in data; probes trained vs a randomly "
                       "initialised encoder of the same architecture (lightly rows: vs lightly's own initial weights)",
        "last_command": command,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "load_average_at_end": os.getloadavg()},
        "rows": merged,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(merged)
    args.md.write_text(table)
    header = provenance(merged, command, args.json)
    if args.docs:
        update_docs(args.docs, table, header)
    if args.readme:
        update_docs(args.readme, headline(merged), header, HEADLINE_BEGIN, HEADLINE_END)
    return merged


if __name__ == "__main__":
    main()
