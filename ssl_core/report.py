"""Run reports: an HTML page with PNG plots of a run's metrics, its evaluation table and the
pictures its plugins wrote; and side-by-side comparison of several runs.

Works on ``ssl run`` folders (``config.yaml``) and on Experiment folders (``experiment.yaml``:
every objective's loss and weight are shown). Every plot has axis labels; the evaluation table
puts the trained encoder next to a random one and flags a metric where training made it worse.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any, Sequence

import yaml

from ssl_core.checkpoint import atomic_write_text
from ssl_core.errors import DataError
from ssl_core.jsonio import loads_metrics

REPORT_DIR = "report"
STEP_LABEL = "optimiser step"
_TRAINER_KEYS = {"step", "epoch", "loss", "lr", "weight_decay", "samples_per_s", "time_s"}
# (file, keys or key prefix, title, y-axis label)
_PLOTS = [
    ("lr", ["lr"], "learning-rate schedule", "learning rate"),
    ("throughput", ["samples_per_s"], "training throughput", "samples / s"),
    ("probe", "probe/", "kNN probe during training", "top-1 accuracy"),
    ("health", "health/", "embedding health (collapse check)", "value"),
]
_LOWER_IS_BETTER = ("loss", "perplexity", "nll", "error")


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is better (losses, perplexity, error rates)."""
    leaf = metric.rsplit("/", 1)[-1].lower()
    return any(word in leaf for word in _LOWER_IS_BETTER)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The run's metrics.jsonl as a list of dicts (a line cut short by a crash is skipped)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        raise DataError(f"{path} is missing: is {run_dir} an `ssl run` or Experiment directory?")
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(loads_metrics(line))
        except json.JSONDecodeError:
            continue
    return records


def run_info(run_dir: Path) -> dict[str, Any]:
    """What a run folder was: title, encoder(s), data, and its objectives with their weights.

    ``objectives`` is a list of ``{"name", "objective", "weight", "encoder", "data"}``; an
    ``ssl run`` folder has one, with weight 1.
    """
    exp_path, cfg_path = run_dir / "experiment.yaml", run_dir / "config.yaml"
    if exp_path.exists():
        spec = yaml.safe_load(exp_path.read_text(encoding="utf-8")) or {}
        objectives = [{"name": o.get("name"), "objective": o.get("objective") or "(instance)",
                       "weight": o.get("weight", 1.0), "encoder": o.get("encoder"), "data": o.get("data")}
                      for o in spec.get("objectives", [])]
        data = spec.get("data", {})
        return {"kind": "experiment", "title": "Experiment: " + " + ".join(o["name"] for o in objectives),
                "objective": "+".join(o["name"] for o in objectives),
                "encoder": ", ".join(spec.get("encoders", {})) or "?",
                "dataset": ", ".join(f"{k}={v.get('dataset') or '(in-memory)'}" for k, v in data.items()) or "?",
                "objectives": objectives}
    cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) if cfg_path.exists() else {}
    cfg = cfg or {}
    name = str(cfg.get("objective", run_dir.name))
    return {"kind": "run", "title": f"{name} ({cfg.get('modality', '?')})", "objective": name,
            "encoder": str(cfg.get("encoder", "?")), "dataset": str(cfg.get("data") or cfg.get("dataset", "?")),
            "objectives": [{"name": name, "objective": name, "weight": 1.0, "encoder": cfg.get("encoder"),
                            "data": cfg.get("data") or cfg.get("dataset")}]}


# ------------------------------------------------------------------------------------ plotting
def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(records: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    return [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float)) and "step" in r]


def _plot(records: list[dict[str, Any]], keys: list[str], title: str, ylabel: str, path: Path,
          baselines: dict[str, float] | None = None, titles: dict[str, str] | None = None) -> bool:
    """One PNG with a panel per key (x: optimiser step; y: ``ylabel``, or the key's name when
    there are several panels); ``baselines`` draws a dashed reference line (the random encoder)."""
    plt = _pyplot()
    series = [(k, pts) for k in keys if (pts := _series(records, k))]
    if not series:
        return False
    cols = min(3, len(series))
    rows = math.ceil(len(series) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(6.4, 4.6 * cols), 3.3 * rows), squeeze=False)
    for ax in axes.flat[len(series):]:
        ax.set_visible(False)
    for ax, (k, pts) in zip(axes.flat, series):
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker="o" if len(xs) < 40 else None, markersize=3, label="trained encoder")
        if baselines and k in baselines:
            ax.axhline(baselines[k], color="grey", linestyle="--", linewidth=1, label="random encoder (untrained)")
            ax.legend(fontsize=8)
        ax.set_xlabel(STEP_LABEL)
        ax.set_ylabel(ylabel if len(series) == 1 else k.rsplit("/", 1)[-1])
        ax.set_title((titles or {}).get(k, k), fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _loss_keys(records: list[dict[str, Any]], info: dict[str, Any]) -> list[str]:
    keys = ["loss"]
    if info["kind"] == "experiment":
        keys += [f"{o['name']}/loss" for o in info["objectives"]]
    return keys


def _objective_keys(records: list[dict[str, Any]], known: set[str]) -> list[str]:
    """Numeric values the objective logged itself (temperatures, accuracies, loss terms...)."""
    seen: dict[str, None] = {}
    for r in records:
        for k, v in r.items():
            if (isinstance(v, (int, float)) and not isinstance(v, bool) and k not in known
                    and not k.startswith(("probe/", "health/"))):
                seen[k] = None
    return list(seen)


# ------------------------------------------------------------------------------------ tables
def _cell(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], classes: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        f"<tr{f' class={chr(34)}{classes[i]}{chr(34)}' if classes and classes[i] else ''}>"
        + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>"
        for i, row in enumerate(rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def evaluation_rows(metrics: dict[str, dict[str, float]]) -> tuple[list[str], list[list[Any]], list[str]]:
    """Headers, rows and row classes of the evaluation table: each metric for every encoder,
    plus trained - random and a flag where the trained encoder is worse than the random one
    (for a lower-is-better metric such as perplexity, worse means higher)."""
    cols = list(metrics)
    names = list(dict.fromkeys(k for v in metrics.values() for k in v))
    both = {"trained", "random"} <= set(cols)
    headers = ["metric", *cols] + (["trained - random", "verdict"] if both else [])
    rows, classes = [], []
    for n in names:
        row: list[Any] = [n, *[metrics[c].get(n, "-") for c in cols]]
        flag = ""
        if both:
            t, r = metrics["trained"].get(n), metrics["random"].get(n)
            if isinstance(t, (int, float)) and isinstance(r, (int, float)):
                diff = t - r
                worse = diff > 0 if lower_is_better(n) else diff < 0
                row += [f"{diff:+.4f}", "WORSE than random" if worse and abs(diff) > 1e-12 else "better"]
                flag = "worse" if worse and abs(diff) > 1e-12 else ""
            else:
                row += ["-", ""]
        rows.append(row)
        classes.append(flag)
    return headers, rows, classes


_STYLE = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
          "table{border-collapse:collapse;margin:1em 0;font-size:14px}"
          "td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
          "td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}"
          "tr.worse td{background:#fde2e2;color:#a00;font-weight:bold}"
          "img{max-width:100%;margin:.5em 0;border:1px solid #eee}.note{color:#555}")


def _page(title: str, parts: list[str]) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>")


def write_report(run_dir: str | Path) -> Path:
    """Write ``RUN_DIR/report/index.html`` with plots, evaluation table and run pictures."""
    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    info = run_info(run_dir)
    out = run_dir / REPORT_DIR
    out.mkdir(exist_ok=True)
    last = records[-1] if records else {}
    parts = [f"<h1>{html.escape(info['title'])}</h1>",
             f"<p>Run directory: <code>{html.escape(str(run_dir))}</code>; encoder "
             f"<code>{html.escape(info['encoder'])}</code>; data <code>{html.escape(info['dataset'])}</code>; "
             f"{last.get('step', 0)} steps.</p>"]
    if info["kind"] == "experiment":
        rows = [[o["name"], o["objective"], float(o["weight"]), o["encoder"], o["data"],
                 last.get(f"{o['name']}/loss", "-")] for o in info["objectives"]]
        parts.append("<h2>Objectives</h2><p class='note'>The training loss is the weighted sum of the objectives' "
                     "losses.</p>" + _table(["objective", "method", "weight", "encoder", "data", "final loss"], rows))
    metrics: dict[str, dict[str, float]] = {}
    eval_path = run_dir / "eval.json"
    if eval_path.exists():
        metrics = loads_metrics(eval_path.read_text())
        headers, rows, classes = evaluation_rows(metrics)
        parts.append("<h2>Evaluation</h2>" + _table(headers, rows, classes))
        if any(classes):
            parts.append("<p class='note'>Rows in red: the trained encoder scores worse than a randomly initialised "
                         "one of the same architecture.</p>")
    errors_path = run_dir / "eval_errors.json"
    if errors_path.exists():
        errors = json.loads(errors_path.read_text())
        items = "".join(f"<li><b>{html.escape(name)}</b> ({html.escape(enc)} encoder): "
                        f"{html.escape(err.splitlines()[0])}</li>"
                        for enc, errs in errors.items() for name, err in errs.items())
        parts.append(f"<h3>Evaluators that failed</h3><ul>{items}</ul>")
    parts.append("<h2>Training</h2>")
    loss_keys = _loss_keys(records, info)
    weights = {f"{o['name']}/loss": f"{o['name']}/loss (weight {float(o['weight']):g})" for o in info["objectives"]}
    if _plot(records, loss_keys, "training loss" + (" (weighted sum, and each objective)" if len(loss_keys) > 1 else ""),
             "loss", out / "loss.png", titles=weights):
        parts.append('<img src="loss.png" alt="training loss">')
    random = metrics.get("random", {})
    for name, keys, title, ylabel in _PLOTS:
        chosen = keys if isinstance(keys, list) else sorted({k for r in records for k in r if k.startswith(keys)})
        baselines = {k: random[k.split("/", 1)[1]] for k in chosen if name == "probe" and k.split("/", 1)[1] in random}
        if _plot(records, chosen, title, ylabel, out / f"{name}.png", baselines or None):
            parts.append(f'<img src="{name}.png" alt="{html.escape(title)}">')
    logged = _objective_keys(records, _TRAINER_KEYS | set(loss_keys))
    if _plot(records, logged, "values the objective logged", "value", out / "objective.png"):
        parts.append('<img src="objective.png" alt="values the objective logged">')
    pictures = sorted(p for p in run_dir.rglob("*.png") if REPORT_DIR not in p.relative_to(run_dir).parts)
    if pictures:
        parts.append("<h2>Pictures</h2>")
        for p in pictures:
            rel = Path("..") / p.relative_to(run_dir)
            parts.append(f"<h3>{html.escape(str(p.relative_to(run_dir)))}</h3><img src=\"{html.escape(rel.as_posix())}\">")
    index = out / "index.html"
    atomic_write_text(index, _page(f"sslkit report: {info['title']}", parts))
    return index


# ------------------------------------------------------------------------------------ comparison
def summarize(run_dir: Path) -> dict[str, Any]:
    """One row of a comparison: config basics, last training metrics, trained-encoder evaluation."""
    records = read_metrics(run_dir)
    info = run_info(run_dir)
    last = records[-1] if records else {}
    speeds = [r["samples_per_s"] for r in records if "samples_per_s" in r]
    row: dict[str, Any] = {"run": run_dir.name, "objective": info["objective"], "encoder": info["encoder"],
                           "steps": last.get("step", 0), "final_loss": last.get("loss", float("nan")),
                           "samples_per_s": sum(speeds) / len(speeds) if speeds else float("nan")}
    eval_path = run_dir / "eval.json"
    if eval_path.exists():
        row.update(loads_metrics(eval_path.read_text()).get("trained", {}))
    return row


def comparison_table(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Runs as columns and fields as rows, so many metrics still fit a narrow window."""
    keys = [k for k in dict.fromkeys(k for r in rows for k in r) if k != "run"]
    headers = ["", *[str(r.get("run", "?")) for r in rows]]
    return headers, [[k, *[r.get(k, "-") for r in rows]] for k in keys]


def write_comparison(run_dirs: Sequence[str | Path], out: str | Path) -> tuple[list[dict[str, Any]], Path]:
    """Compare runs: an HTML page with one table (a column per run) and one figure per metric
    that at least one run logged, every run overlaid."""
    plt = _pyplot()
    dirs = [Path(d) for d in run_dirs]
    rows = [summarize(d) for d in dirs]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    headers, table = comparison_table(rows)
    parts = ["<h1>sslkit run comparison</h1>", _table(headers, table)]
    histories = {d.name: read_metrics(d) for d in dirs}
    keys = list(dict.fromkeys(k for recs in histories.values() for r in recs for k, v in r.items()
                              if isinstance(v, (int, float)) and k not in {"step", "epoch", "time_s"}))
    groups = [("loss", [k for k in keys if k == "loss" or k.endswith("/loss")]),
              ("probe", [k for k in keys if k.startswith("probe/")]),
              ("health", [k for k in keys if k.startswith("health/")]),
              ("schedule", [k for k in keys if k in ("lr", "weight_decay")]),
              ("throughput", [k for k in keys if k == "samples_per_s"])]
    grouped = {k for _, ks in groups for k in ks}
    groups.append(("objective", [k for k in keys if k not in grouped]))
    for group, metric_keys in groups:
        if not metric_keys:
            continue
        parts.append(f"<h2>{html.escape(group)}</h2>")
        for key in metric_keys:
            fig, ax = plt.subplots(figsize=(6.4, 3.4))
            drawn = False
            for name, recs in histories.items():
                pts = _series(recs, key)
                if pts:
                    ax.plot(*zip(*pts), marker="o" if len(pts) < 40 else None, markersize=3, label=name)
                    drawn = True
            if drawn:
                ax.set_xlabel(STEP_LABEL)
                ax.set_ylabel(key)
                ax.set_title(key)
                ax.legend(fontsize=8)
                ax.grid(alpha=0.3)
                fig.tight_layout()
                fname = key.replace("/", "_").replace("@", "_at_") + ".png"
                fig.savefig(out / fname, dpi=100)
                parts.append(f'<img src="{html.escape(fname)}" alt="{html.escape(key)}" style="max-width:49%">')
            plt.close(fig)
    index = out / "index.html"
    atomic_write_text(index, _page("sslkit comparison", parts))
    return rows, index
