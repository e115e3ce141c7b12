"""Nearest-neighbour retrieval grid: each query image next to its most similar training images.

For ``n_queries`` test images (spread evenly over the test split) the evaluator finds the ``k``
training images with the highest cosine similarity of frozen encoder features and, when
``out_dir`` is set, writes ``nn_grid.png``: one row per query, the query first (grey frame), then
its neighbours framed green when they share the query's label and red when not. It also returns
``nn_precision@k``, the fraction of the ``k`` nearest training images that share the label,
averaged over the whole test split (a retrieval view of the same features the kNN probe uses).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F

from ssl_core.evaluators.features import eval_splits, extract_features
from ssl_core.interfaces import DataModule, Encoder, Evaluator
from ssl_vision.images import save_image_grid

GRID_FILE = "nn_grid.png"
_QUERY, _SAME, _OTHER = (128, 128, 128), (0, 170, 0), (210, 0, 0)


class NNGridEvaluator(Evaluator):
    """Writes ``nn_grid.png`` (query + nearest training images, each captioned with its class
    name, coloured by whether it shares the query's class, with a legend) and reports precision@k."""

    name = "nn_grid"
    required_keys = ("image",)  # the grid shows the images themselves

    def __init__(self, n_queries: int = 10, k: int = 8, cell: int = 64, batch_size: int = 256,
                 filename: str = GRID_FILE) -> None:
        if n_queries < 1 or k < 1:
            raise ValueError(f"nn_grid needs n_queries >= 1 and k >= 1, got n_queries={n_queries}, k={k}")
        self.n_queries, self.k, self.cell = n_queries, k, cell
        self.batch_size, self.filename = batch_size, filename

    def evaluate(self, encoder: Encoder, data: DataModule) -> Mapping[str, float]:
        train_ds, test_ds = eval_splits(data)
        xtr, ytr = extract_features(encoder, train_ds, data, self.batch_size)
        xte, yte = extract_features(encoder, test_ds, data, self.batch_size)
        xtr, xte = F.normalize(xtr, dim=1), F.normalize(xte, dim=1)
        k = min(self.k, xtr.shape[0])
        top = torch.cat([(xte[i:i + 1024] @ xtr.T).topk(k, dim=1).indices for i in range(0, len(xte), 1024)])
        precision = (ytr[top] == yte.unsqueeze(1)).float().mean().item()
        if self.out_dir is not None:
            self._write(train_ds, test_ds, top, ytr, yte, data.class_names)
        return {f"nn_precision@{k}": precision}

    def _write(self, train_ds, test_ds, top: torch.Tensor, ytr: torch.Tensor, yte: torch.Tensor,  # type: ignore[no-untyped-def]
               class_names: list[str] | None) -> None:
        n = len(test_ds)
        queries = torch.linspace(0, n - 1, min(self.n_queries, n)).round().long().unique().tolist()

        def name(label: torch.Tensor) -> str:
            i = int(label)
            return class_names[i] if class_names is not None and 0 <= i < len(class_names) else str(i)

        rows, borders, captions = [], [], []
        for q in queries:
            neighbours = top[q].tolist()
            rows.append([test_ds[q]["image"]] + [train_ds[j]["image"] for j in neighbours])
            borders.append([_QUERY] + [_SAME if ytr[j] == yte[q] else _OTHER for j in neighbours])
            captions.append([name(yte[q])] + [name(ytr[j]) for j in neighbours])
        assert self.out_dir is not None
        titles = ["query"] + [f"NN {i + 1}" for i in range(top.shape[1])]
        legend = [(_QUERY, "query: a held-out image (its class below)"),
                  (_SAME, "neighbour of the same class"), (_OTHER, "neighbour of another class")]
        save_image_grid(rows, Path(self.out_dir) / self.filename, cell=self.cell, borders=borders,
                        column_titles=titles, captions=captions, legend=legend)
