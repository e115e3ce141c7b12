"""Run reports: an HTML page with PNG plots of a run's metrics, its evaluation table and the
pictures its plugins wrote; and side-by-side comparison of several runs."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Sequence

import yaml

from ssl_core.checkpoint import atomic_write_text
from ssl_core.errors import DataError

REPORT_DIR = "report"
_PLOTS = [
    ("loss", ["loss"], "training loss"),
    ("lr", ["lr"], "learning rate"),
    ("throughput", ["samples_per_s"], "samples / s"),
    ("probe", ["probe/knn_top1"], "kNN top-1 during training"),
    ("health", ["health/embed_std_ratio", "health/effective_rank"], "embedding health"),
]


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The run's metrics.jsonl as a list of dicts (a line cut short by a crash is skipped)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        raise DataError(f"{path} is missing: is {run_dir} an `ssl run` directory?")
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _plot(records: list[dict[str, Any]], keys: list[str], title: str, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [(k, [(r["step"], r[k]) for r in records if k in r]) for k in keys]
    series = [(k, pts) for k, pts in series if pts]
    if not series:
        return False
    fig, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 3.2), squeeze=False)
    for ax, (k, pts) in zip(axes[0], series):
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker="." if len(xs) < 40 else None)
        ax.set_xlabel("step")
        ax.set_title(k)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
          "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
          "th{background:#f3f3f3}img{max-width:100%;margin:.5em 0;border:1px solid #eee}")


def write_report(run_dir: str | Path) -> Path:
    """Write ``RUN_DIR/report/index.html`` with plots, evaluation table and run pictures."""
    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    out = run_dir / REPORT_DIR
    out.mkdir(exist_ok=True)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").exists() else {}
    parts = [f"<h1>{html.escape(str(cfg.get('objective', run_dir.name)))} ({html.escape(str(cfg.get('modality', '')))})</h1>",
             f"<p>Run directory: <code>{html.escape(str(run_dir))}</code>; encoder "
             f"<code>{html.escape(str(cfg.get('encoder', '?')))}</code>; dataset "
             f"<code>{html.escape(str(cfg.get('data') or cfg.get('dataset', '?')))}</code>; "
             f"{records[-1]['step'] if records else 0} steps.</p>"]
    eval_path = run_dir / "eval.json"
    if eval_path.exists():
        metrics = json.loads(eval_path.read_text())
        names = list(dict.fromkeys(k for v in metrics.values() for k in v))
        cols = list(metrics)
        parts.append("<h2>Evaluation</h2>" + _table(["metric", *cols], [[n, *[metrics[c].get(n, "-") for c in cols]] for n in names]))
    parts.append("<h2>Training</h2>")
    for name, keys, title in _PLOTS:
        if _plot(records, keys, title, out / f"{name}.png"):
            parts.append(f'<img src="{name}.png" alt="{html.escape(title)}">')
    pictures = sorted(p for p in run_dir.rglob("*.png") if REPORT_DIR not in p.relative_to(run_dir).parts)
    if pictures:
        parts.append("<h2>Pictures</h2>")
        for p in pictures:
            rel = Path("..") / p.relative_to(run_dir)
            parts.append(f"<h3>{html.escape(str(p.relative_to(run_dir)))}</h3><img src=\"{html.escape(rel.as_posix())}\">")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>sslkit report</title><style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    index = out / "index.html"
    atomic_write_text(index, page)
    return index


def summarize(run_dir: Path) -> dict[str, Any]:
    """One row of a comparison: config basics, last training metrics, trained-encoder evaluation."""
    records = read_metrics(run_dir)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").exists() else {}
    last = records[-1] if records else {}
    speeds = [r["samples_per_s"] for r in records if "samples_per_s" in r]
    row: dict[str, Any] = {"run": run_dir.name, "objective": cfg.get("objective", "?"), "encoder": cfg.get("encoder", "?"),
                           "steps": last.get("step", 0), "final_loss": last.get("loss", float("nan")),
                           "samples_per_s": sum(speeds) / len(speeds) if speeds else float("nan")}
    eval_path = run_dir / "eval.json"
    if eval_path.exists():
        row.update(json.loads(eval_path.read_text()).get("trained", {}))
    return row


def write_comparison(run_dirs: Sequence[str | Path], out: str | Path) -> tuple[list[dict[str, Any]], Path]:
    """Compare runs: an HTML page with one table and overlaid loss / probe curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dirs = [Path(d) for d in run_dirs]
    rows = [summarize(d) for d in dirs]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    parts = ["<h1>sslkit run comparison</h1>", _table(keys, [[r.get(k, "-") for k in keys] for r in rows])]
    for key, fname in (("loss", "loss.png"), ("probe/knn_top1", "probe.png")):
        fig, ax = plt.subplots(figsize=(7, 3.5))
        drawn = False
        for d in dirs:
            pts = [(r["step"], r[key]) for r in read_metrics(d) if key in r]
            if pts:
                ax.plot(*zip(*pts), label=d.name)
                drawn = True
        if drawn:
            ax.set_xlabel("step")
            ax.set_title(key)
            ax.legend()
            ax.grid(alpha=0.3)
            fig.tight_layout()
            fig.savefig(out / fname, dpi=100)
            parts.append(f'<img src="{fname}" alt="{key}">')
        plt.close(fig)
    index = out / "index.html"
    atomic_write_text(index, f"<!doctype html><html><head><meta charset='utf-8'><title>sslkit comparison</title><style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>")
    return rows, index
