"""`ssl report` and `ssl compare` render HTML whose images exist and are real, non-empty PNGs."""

from __future__ import annotations

import json
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
    assert tables == 1 and {p.name for p in images} == {"loss.png", "probe.png"}
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in images)
