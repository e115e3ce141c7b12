"""The nn_grid evaluator: writes a real PNG grid when out_dir is set, measures precision@k."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from ssl_core.interfaces import Encoder
from ssl_vision.nn_grid import GRID_FILE, NNGridEvaluator


class _LabelOracle(Encoder):
    """Embeds an image as its one-hot label (a perfect encoder) or as noise (a useless one)."""

    modality = "vision"
    input_key = "image"
    embed_dim = 10

    def __init__(self, perfect: bool) -> None:
        super().__init__()
        self.perfect = perfect
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.randn(x.shape[0], 10, generator=torch.Generator().manual_seed(x.shape[0]))

    def embed(self, batch: dict) -> Tensor:
        if self.perfect:
            return torch.nn.functional.one_hot(batch["label"], 10).float() + 0.01 * torch.rand(len(batch["label"]), 10)
        return self(batch["image"])


def test_grid_png_is_written_and_precision_tracks_quality(tmp_path: Path, digits_data) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    ev = NNGridEvaluator(n_queries=4, k=5, cell=20)
    ev.out_dir = tmp_path
    good = ev.evaluate(_LabelOracle(perfect=True), digits_data)
    png = tmp_path / GRID_FILE
    assert png.exists() and png.stat().st_size > 500
    with Image.open(png) as im:
        arr = np.asarray(im.convert("RGB"))
    # 4 rows and 6 columns (query + 5 neighbours) of 20 px cells with 2 px frames and padding, under
    # column titles, each row with a caption line (class names), and a 3-line legend at the bottom
    legend_h = 3 * (14 + 4) + 2  # 10 px font -> 14 px lines
    assert arr.shape == (16 + 4 * (26 + 14) + 2 + legend_h, 6 * 26 + 2, 3) or arr.shape[1] > 6 * 26 + 2
    grid, legend = arr[: arr.shape[0] - legend_h], arr[arr.shape[0] - legend_h:]
    greens = ((grid[..., 1] > 150) & (grid[..., 0] < 50)).sum()
    reds = ((grid[..., 0] > 150) & (grid[..., 1] < 50)).sum()
    assert ((legend[..., 0] > 150) & (legend[..., 1] < 50)).sum() > 0  # the legend shows the red key
    assert greens > 0 and reds == 0  # every neighbour of the perfect encoder shares the label
    assert good["nn_precision@5"] == pytest.approx(1.0)
    bad = NNGridEvaluator(k=5).evaluate(_LabelOracle(perfect=False), digits_data)
    assert bad["nn_precision@5"] < 0.3


def test_no_out_dir_writes_nothing(tmp_path: Path, digits_data, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    ev = NNGridEvaluator(k=3)
    assert ev.out_dir is None
    ev.evaluate(_LabelOracle(perfect=True), digits_data)
    assert not list(tmp_path.rglob("*.png"))


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="n_queries"):
        NNGridEvaluator(n_queries=0)
