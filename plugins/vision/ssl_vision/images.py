"""Writing image grids as PNG files (nearest-neighbour grids, MAE reconstructions) with PIL."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

Colour = tuple[int, int, int]


def to_float_image(x: Tensor) -> Tensor:
    """A ``[C, H, W]`` image (uint8 0-255 or float 0-1) as float32 in [0, 1] on the CPU."""
    x = x.detach().cpu()
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    return x.clamp(0, 1)


def save_image_grid(
    rows: Sequence[Sequence[Tensor]],
    path: str | Path,
    cell: int = 48,
    pad: int = 2,
    border: int = 2,
    borders: Sequence[Sequence[Colour | None]] | None = None,
    background: Colour = (255, 255, 255),
) -> Path:
    """Write ``rows`` of ``[C, H, W]`` images (1 or 3 channels) as one PNG grid.

    Every image is resized (nearest neighbour) to ``cell`` x ``cell`` pixels; ``borders[r][c]``
    optionally draws a coloured frame around cell (r, c). Returns the path written.
    """
    from PIL import Image

    if not rows or not any(rows):
        raise ValueError("save_image_grid needs at least one image.")
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    step = cell + 2 * border + pad
    canvas = np.empty((n_rows * step + pad, n_cols * step + pad, 3), dtype=np.uint8)
    canvas[:] = background
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            x = to_float_image(img)
            if x.ndim != 3 or x.shape[0] not in (1, 3):
                raise ValueError(f"Grid cell ({r}, {c}) must be a [C, H, W] image with 1 or 3 channels, got {tuple(x.shape)}.")
            x = F.interpolate(x.unsqueeze(0), size=(cell, cell), mode="nearest")[0]
            if x.shape[0] == 1:
                x = x.expand(3, -1, -1)
            pixels = (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            top, left = pad + r * step, pad + c * step
            colour = borders[r][c] if borders is not None and c < len(borders[r]) else None
            if colour is not None:
                canvas[top: top + cell + 2 * border, left: left + cell + 2 * border] = colour
            canvas[top + border: top + border + cell, left + border: left + border + cell] = pixels
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    Image.fromarray(canvas).save(tmp, format="PNG")
    tmp.replace(path)
    return path
