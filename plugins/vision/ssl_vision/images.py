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
    column_titles: Sequence[str] | None = None,
    captions: Sequence[Sequence[str]] | None = None,
    legend: Sequence[tuple[Colour, str]] | None = None,
) -> Path:
    """Write ``rows`` of ``[C, H, W]`` images (1 or 3 channels) as one PNG grid.

    Every image is resized (nearest neighbour) to ``cell`` x ``cell`` pixels; ``borders[r][c]``
    optionally draws a coloured frame around cell (r, c). ``column_titles`` are written above
    the columns, ``captions[r][c]`` under cell (r, c) (e.g. class names, shortened to fit) and
    ``legend`` (colour, meaning) pairs under the grid. Returns the path written.
    """
    from PIL import Image, ImageDraw, ImageFont

    if not rows or not any(rows):
        raise ValueError("save_image_grid needs at least one image.")
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    font_px = max(10, min(14, cell // 4))
    line = font_px + 4
    step = cell + 2 * border + pad
    top_band = line + 2 if column_titles else 0
    row_h = step + (line if captions else 0)
    legend_h = (line + 4) * len(legend) + pad if legend else 0
    font = ImageFont.load_default(size=font_px)
    legend_w = max((pad + line + 8 + int(font.getlength(m)) for _, m in legend or []), default=0)
    canvas = np.empty((top_band + n_rows * row_h + pad + legend_h, max(n_cols * step + pad, legend_w), 3),
                      dtype=np.uint8)
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
            top, left = top_band + pad + r * row_h, pad + c * step
            colour = borders[r][c] if borders is not None and c < len(borders[r]) else None
            if colour is not None:
                canvas[top: top + cell + 2 * border, left: left + cell + 2 * border] = colour
            canvas[top + border: top + border + cell, left + border: left + border + cell] = pixels
    image = Image.fromarray(canvas)
    if column_titles or captions or legend:
        draw = ImageDraw.Draw(image)
        width = cell + 2 * border

        def fit(text: str) -> str:  # shorten to the cell's width
            text = str(text)
            while text and draw.textlength(text, font=font) > width:
                text = text[:-2] + "\u2026" if len(text) > 2 else text[:-1]
            return text

        for c, title in enumerate(column_titles or []):
            text = fit(title)
            x0 = pad + c * step + (width - draw.textlength(text, font=font)) / 2
            draw.text((x0, 1), text, fill=(0, 0, 0), font=font)
        for r, row_caps in enumerate(captions or []):
            for c, cap in enumerate(row_caps):
                text = fit(cap)
                x0 = pad + c * step + (width - draw.textlength(text, font=font)) / 2
                draw.text((x0, top_band + pad + r * row_h + step - pad + 1), text, fill=(40, 40, 40), font=font)
        y = top_band + n_rows * row_h + pad
        for colour, meaning in legend or []:
            draw.rectangle([pad, y + 2, pad + line - 2, y + line], fill=colour, outline=(0, 0, 0))
            draw.text((pad + line + 4, y + 2), meaning, fill=(0, 0, 0), font=font)
            y += line + 4
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    image.save(tmp, format="PNG")
    tmp.replace(path)
    return path
