"""`ssl report` and `ssl compare` render HTML whose images exist and are real, non-empty PNGs."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ssl_core.registry import Registry
from ssl_core.report import write_comparison, write_report
from ssl_core.runner import resolve_config, run_experiment

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])
        if tag == "table":
            self.tables += 1


def _images(index: Path) -> tuple[list[Path], int]:
    p = _Images()
    p.feed(index.read_text())
    return [(index.parent / s).resolve() for s in p.srcs], p.tables


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    reg = Registry()
    out = []
    for name, t in (("a", 2.0), ("b", 4.0)):
        run_dir = tmp_path_factory.mktemp("runs") / name
        cfg = resolve_config("toy_align", registry=reg, overrides={
            "out": str(run_dir), "objective_kwargs": {"t": t},
            "train": {"steps": 30, "probe_every": 10, "health_every": 10}})
        run_experiment(cfg, registry=reg)
        out.append(run_dir)
    # a picture a plugin wrote (e.g. a nearest-neighbour grid) must show up in the report
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.imsave(out[0] / "nn_grid.png", [[0.0, 1.0], [1.0, 0.0]])
    return out


def test_report_renders_plots_table_and_pictures(runs: list[Path]) -> None:
    index = write_report(runs[0])
    images, tables = _images(index)
    names = {p.name for p in images}
    assert {"loss.png", "lr.png", "throughput.png", "probe.png", "health.png", "nn_grid.png"} <= names
    for img in images:
        data = img.read_bytes()
        assert data.startswith(PNG_MAGIC), img
        if img.parent.name == "report":  # our own plots: real charts, not empty canvases
            assert len(data) > 5000, (img, len(data))
    assert tables == 1  # the evaluation table
    evals = json.loads((runs[0] / "eval.json").read_text())
    assert f"{evals['trained']['knn_top1']:.4f}" in index.read_text()


def test_compare_renders_side_by_side(runs: list[Path], tmp_path: Path) -> None:
    rows, index = write_comparison(runs, tmp_path / "cmp")
    assert [r["run"] for r in rows] == ["a", "b"]
    assert all("knn_top1" in r for r in rows)
    images, tables = _images(index)
    names = {p.name for p in images}
    # one figure per logged metric, every run overlaid, grouped under headings
    assert {"loss.png", "probe_knn_top1.png", "health_effective_rank.png", "lr.png", "align.png"} <= names
    page = index.read_text()
    for group in ("loss", "probe", "health", "schedule", "objective"):
        assert f"<h2>{group}</h2>" in page
    assert tables == 1 and all(p.read_bytes().startswith(PNG_MAGIC) for p in images)
    # a column per run (not per metric), so the table stays narrow however many metrics there are
    assert "<thead><tr><th></th><th>a</th><th>b</th></tr></thead>" in page


def test_every_plot_has_axis_labels(runs: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    seen: list[tuple[str, str, str]] = []
    original = Figure.savefig

    def record(fig, path, *args, **kwargs):  # type: ignore[no-untyped-def]
        for ax in fig.axes:
            if ax.get_visible():
                seen.append((Path(path).name, ax.get_xlabel(), ax.get_ylabel()))
        return original(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    write_report(runs[0])
    write_comparison(runs, tmp_path / "cmp")
    assert len({name for name, _, _ in seen}) >= 10
    unlabelled = [s for s in seen if not s[1] or not s[2]]
    assert not unlabelled, unlabelled


def test_report_plots_objective_values_and_flags_worse_than_random(runs: list[Path]) -> None:
    metrics = json.loads((runs[1] / "eval.json").read_text())
    metrics["random"]["knn_top1"] = metrics["trained"]["knn_top1"] + 0.1  # pretend training hurt kNN
    (runs[1] / "eval.json").write_text(json.dumps(metrics))
    index = write_report(runs[1])
    page = index.read_text()
    assert "objective.png" in page  # the toy objective logs 'align' and 'uniform'
    row = page[page.index("<td>knn_top1</td>") - 40: page.index("<td>knn_top1</td>") + 300]
    assert 'class="worse"' in row and "WORSE than random" in row and "-0.1000" in row


def test_evaluation_rows_know_which_way_is_better() -> None:
    from ssl_core.cli._table import metrics_table
    from ssl_core.report import evaluation_rows, lower_is_better

    assert lower_is_better("perplexity") and lower_is_better("enc/masked_loss") and not lower_is_better("knn_top1")
    metrics = {"trained": {"knn_top1": 0.9, "perplexity": 30.0, "linear_top1": 0.5},
               "random": {"knn_top1": 0.5, "perplexity": 20.0, "linear_top1": 0.6}}
    headers, rows, classes = evaluation_rows(metrics)
    assert headers == ["metric", "trained", "random", "trained - random", "verdict"]
    verdicts = {r[0]: (r[4], c) for r, c in zip(rows, classes)}
    assert verdicts == {"knn_top1": ("better", ""), "perplexity": ("WORSE than random", "worse"),
                        "linear_top1": ("WORSE than random", "worse")}
    table = metrics_table(metrics)
    assert re.search(r"perplexity\s+30\.0000\s+20\.0000\s+\+10\.0000\s+WORSE than random", table), table


def test_default_runs_probe_a_few_times_during_training(tmp_path: Path) -> None:
    """With no probe_every set, a run logs a few evenly spaced kNN probes (the report shows learning)."""
    import yaml

    reg = Registry()
    cfg = resolve_config("toy_align", registry=reg, overrides={"out": str(tmp_path / "r"), "evaluators": ["knn"],
                                                               "train": {"steps": 20}})
    assert cfg.train.probe_every is None
    run_experiment(cfg, registry=reg)
    steps = [json.loads(line)["step"] for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
             if "probe/knn_top1" in line]
    assert steps == [5, 10, 15, 20]
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["train"]["probe_every"] == 5


def test_the_in_training_probe_reads_evenly_spaced_subsets_and_the_final_one_all() -> None:
    """``train.probe_samples`` thins the labelled splits for the learning-curve probe (every class
    keeps its share of a class-ordered split); ``None`` and small splits are left whole."""
    import torch

    from ssl_core.data import TensorDictDataset
    from ssl_core.interfaces import DataModule
    from ssl_core.trainer import thinned_probe_data

    labels = torch.arange(10).repeat_interleave(100)  # ordered by class
    split = TensorDictDataset(image=torch.zeros(1000, 1), label=labels)
    data = DataModule(train=split, eval_train=split, eval_test=TensorDictDataset(image=torch.zeros(50, 1), label=labels[:50]))
    thin = thinned_probe_data(data, 200)
    assert len(thin.eval_train) == 200 and len(thin.eval_test) == 50  # the small split is kept whole
    kept = torch.stack([thin.eval_train[i]["label"] for i in range(200)])
    assert torch.equal(torch.bincount(kept, minlength=10), torch.full((10,), 20))
    assert thinned_probe_data(data, None) is data and data.eval_train is split  # the original is untouched
