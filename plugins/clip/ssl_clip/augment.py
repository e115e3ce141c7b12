"""CLIP's only training augmentation: a random crop of each image, resized back (batched).

Radford et al. (2021, Sec. 2.5) used "a random square crop from resized images" as the only
data augmentation. Here every image of the batch gets its own crop (area fraction drawn from
``scale``, aspect ratio log-uniform in ``ratio``, position uniform), applied to the whole batch
at once with one affine ``grid_sample`` on the training device. The crop of a pair depends
only on the step's seed and the pair's place in the global batch, not on the process count. No flips: captions may mention
left and right, and digits change meaning when mirrored.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_core.interfaces import Augmenter, Batch
from ssl_core.randomness import sample_rand


class RandomCropAugmenter(Augmenter):
    """Per-sample random resized crop; returns float images in [0, 1] of the input size."""

    def __init__(self, scale: Sequence[float] = (0.6, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3),
                 image_key: str = "image") -> None:
        lo, hi = float(scale[0]), float(scale[1])
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"augmenter_kwargs.scale must satisfy 0 < low <= high <= 1, got {tuple(scale)}.")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"augmenter_kwargs.ratio must satisfy 0 < low <= high, got {tuple(ratio)}.")
        self.scale, self.ratio, self.image_key = (lo, hi), (float(ratio[0]), float(ratio[1])), image_key

    def __call__(self, batch: Batch, generator: torch.Generator) -> Tensor:
        x = batch[self.image_key]
        x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
        b, device = x.shape[0], x.device

        def u(low: float, high: float) -> Tensor:
            return sample_rand(generator, (b,), device) * (high - low) + low

        area = u(*self.scale)
        r = torch.exp(u(math.log(self.ratio[0]), math.log(self.ratio[1])))
        w = torch.sqrt(area * r).clamp(max=1.0)  # crop side as a fraction of the image side
        h = torch.sqrt(area / r).clamp(max=1.0)
        cx = u(-1.0, 1.0) * (1 - w)
        cy = u(-1.0, 1.0) * (1 - h)
        theta = torch.zeros(b, 2, 3, device=device, dtype=x.dtype)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, cx, h, cy
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def clip_crop(scale: Sequence[float] = (0.6, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3)) -> RandomCropAugmenter:
    """Random resized crop per image, batched on device (CLIP's only augmentation)."""
    return RandomCropAugmenter(scale, ratio)
