"""Batched image augmentations with per-sample random parameters, run on the training device.

Every op takes a float image batch ``[B, C, H, W]`` in [0, 1] and a ``torch.Generator`` on the
same device, draws one set of parameters per image, and transforms the whole batch with tensor
ops (no per-image Python loop). Parameters are drawn with :func:`ssl_core.randomness.sample_rand`,
so an image gets the same views however many processes share the batch. The recipe follows SimCLR (Chen et al., 2020, Appendix A) and
BYOL (Grill et al., 2020, Table 6):

- random resized crop (area scale, log-uniform aspect ratio) and horizontal flip, done together
  as one affine ``grid_sample`` per image;
- colour jitter (brightness, contrast, saturation, hue) with probability ``p``;
- random grayscale; Gaussian blur with a random sigma; solarisation.

Deviations from torchvision's per-image ops, documented so results can be compared:
colour-jitter factors are applied in a fixed order (brightness, contrast, saturation, hue)
rather than a random permutation, and hue is rotated in YIQ space instead of shifted in HSV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_core.interfaces import Augmenter, Batch
from ssl_core.randomness import sample_rand

_LUMA = (0.299, 0.587, 0.114)


def _uniform(n: int, low: float, high: float, g: torch.Generator, device: torch.device) -> Tensor:
    return sample_rand(g, (n,), device) * (high - low) + low


def _bernoulli(n: int, p: float, g: torch.Generator, device: torch.device) -> Tensor:
    return sample_rand(g, (n,), device) < p


def random_resized_crop(
    x: Tensor, size: int, g: torch.Generator, scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3), hflip_p: float = 0.5,
) -> Tensor:
    """Crop a random area fraction/aspect ratio per image, flip, and resize to ``size``x``size``."""
    b, device = x.shape[0], x.device
    area = _uniform(b, *scale, g, device)
    log_r = _uniform(b, math.log(ratio[0]), math.log(ratio[1]), g, device)
    r = torch.exp(log_r)
    # crop width/height as fractions of the image side, clipped so the crop fits
    w = torch.sqrt(area * r).clamp(max=1.0)
    h = torch.sqrt(area / r).clamp(max=1.0)
    cx = (sample_rand(g, (b,), device) * 2 - 1) * (1 - w)
    cy = (sample_rand(g, (b,), device) * 2 - 1) * (1 - h)
    flip = torch.where(_bernoulli(b, hflip_p, g, device), -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=device, dtype=x.dtype)
    theta[:, 0, 0] = w * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, [b, x.shape[1], size, size], align_corners=False)
    # crops lie inside the image; "border" only decides the half pixel bilinear sampling may touch
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))
_CONSTANTS: dict[tuple[str, torch.device, torch.dtype], Tensor] = {}


def _constant(name: str, device: torch.device, dtype: torch.dtype) -> Tensor:
    """A colour-space matrix on ``device``, built and copied there once per (device, dtype):
    a ``torch.tensor(..., device=cuda)`` in every step would be a blocking host-to-device copy,
    and ``torch.linalg.inv`` on a GPU reads its error flag on the host."""
    key = (name, device, dtype)
    if key not in _CONSTANTS:
        yiq = torch.tensor(_TO_YIQ, dtype=torch.float64)
        values = {"luma": torch.tensor(_LUMA, dtype=torch.float64).view(1, 3, 1, 1),
                  "to_yiq": yiq, "to_rgb": torch.linalg.inv(yiq)}[name]
        _CONSTANTS[key] = values.to(device=device, dtype=dtype)
    return _CONSTANTS[key]


def grayscale(x: Tensor) -> Tensor:
    """Luma of an RGB batch, repeated over channels (grey batches are returned unchanged)."""
    if x.shape[1] == 1:
        return x
    w = _constant("luma", x.device, x.dtype)
    return (x * w).sum(1, keepdim=True).expand_as(x)


def _rotate_hue(x: Tensor, angle: Tensor) -> Tensor:
    """Rotate chroma in YIQ space by ``angle`` radians per image."""
    to_yiq, to_rgb = _constant("to_yiq", x.device, x.dtype), _constant("to_rgb", x.device, x.dtype)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(x.shape[0], 3, 3, device=x.device, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2] = cos, -sin
    rot[:, 2, 1], rot[:, 2, 2] = sin, cos
    m = to_rgb @ rot @ to_yiq  # [B, 3, 3]
    return torch.einsum("bij,bjhw->bihw", m, x)


def color_jitter(
    x: Tensor, g: torch.Generator, brightness: float, contrast: float, saturation: float, hue: float, p: float
) -> Tensor:
    """Per-image brightness/contrast/saturation/hue jitter, applied with probability ``p``."""
    b, device = x.shape[0], x.device
    apply = _bernoulli(b, p, g, device).view(b, 1, 1, 1)
    out = x
    if brightness > 0:
        f = _uniform(b, max(0.0, 1 - brightness), 1 + brightness, g, device).view(b, 1, 1, 1)
        out = (out * f).clamp(0, 1)
    if contrast > 0:
        f = _uniform(b, max(0.0, 1 - contrast), 1 + contrast, g, device).view(b, 1, 1, 1)
        mean = grayscale(out).mean(dim=(1, 2, 3), keepdim=True)
        out = (f * out + (1 - f) * mean).clamp(0, 1)
    if x.shape[1] == 3:
        if saturation > 0:
            f = _uniform(b, max(0.0, 1 - saturation), 1 + saturation, g, device).view(b, 1, 1, 1)
            out = (f * out + (1 - f) * grayscale(out)).clamp(0, 1)
        if hue > 0:
            angle = _uniform(b, -hue, hue, g, device) * 2 * math.pi
            out = _rotate_hue(out, angle).clamp(0, 1)
    return torch.where(apply, out, x)


def gaussian_blur(x: Tensor, g: torch.Generator, sigma: tuple[float, float], p: float, kernel_frac: float = 0.1) -> Tensor:
    """Blur each image with its own sigma (kernel ~10% of the side, as in SimCLR), prob. ``p``."""
    b, c, h, w = x.shape
    device = x.device
    ksize = max(3, int(round(kernel_frac * h)) | 1)
    apply = _bernoulli(b, p, g, device)
    s = _uniform(b, *sigma, g, device)
    coords = torch.arange(ksize, device=device, dtype=x.dtype) - ksize // 2
    k = torch.exp(-(coords.view(1, -1) ** 2) / (2 * s.view(-1, 1).to(x.dtype) ** 2))
    k = k / k.sum(1, keepdim=True)  # [B, K]
    k = k.repeat_interleave(c, 0)  # one kernel per (image, channel)
    pad = ksize // 2
    y = x.reshape(1, b * c, h, w)
    y = F.conv2d(F.pad(y, (pad, pad, 0, 0), mode="reflect"), k.view(b * c, 1, 1, ksize), groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, pad, pad), mode="reflect"), k.view(b * c, 1, ksize, 1), groups=b * c)
    return torch.where(apply.view(b, 1, 1, 1), y.view(b, c, h, w), x)


def solarize(x: Tensor, g: torch.Generator, p: float, threshold: float = 0.5) -> Tensor:
    """Invert pixels above ``threshold`` in each image with probability ``p``."""
    apply = _bernoulli(x.shape[0], p, g, x.device).view(-1, 1, 1, 1)
    return torch.where(apply & (x >= threshold), 1 - x, x)


@dataclass
class ViewRecipe:
    """Parameters of one view's augmentation pipeline (SimCLR/BYOL-style)."""

    size: int = 32
    scale: tuple[float, float] = (0.08, 1.0)
    hflip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    gray_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_frac: float = 0.1
    solarize_p: float = 0.0

    def apply(self, x: Tensor, g: torch.Generator) -> Tensor:
        """Augment a [0, 1] float batch into one view of side ``size``."""
        v = random_resized_crop(x, self.size, g, self.scale, hflip_p=self.hflip_p)
        if self.jitter_p > 0:
            v = color_jitter(v, g, self.brightness, self.contrast, self.saturation, self.hue, self.jitter_p)
        if self.gray_p > 0 and v.shape[1] == 3:
            gray = _bernoulli(v.shape[0], self.gray_p, g, v.device).view(-1, 1, 1, 1)
            v = torch.where(gray, grayscale(v), v)
        if self.blur_p > 0:
            v = gaussian_blur(v, g, self.blur_sigma, self.blur_p, self.blur_kernel_frac)
        if self.solarize_p > 0:
            v = solarize(v, g, self.solarize_p)
        return v


def to_float_images(x: Tensor) -> Tensor:
    """uint8 [0, 255] or float [0, 1] -> float [0, 1]."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


class TwoViewAugmenter(Augmenter):
    """Two independently augmented views of every image (SimCLR, BYOL).

    ``view2`` may differ from ``view1`` (BYOL's asymmetric blur/solarisation). Reads
    ``batch["image"]`` and returns ``(view1, view2)``, each ``[B, C, size, size]`` in [0, 1].
    """

    def __init__(self, image_size: int = 32, hflip_p: float = 0.5, scale: tuple[float, float] = (0.08, 1.0),
                 blur_p: tuple[float, float] = (0.5, 0.5), solarize_p: tuple[float, float] = (0.0, 0.0),
                 **overrides: Any) -> None:
        common = dict(size=image_size, hflip_p=hflip_p, scale=tuple(scale), **overrides)
        self.view1 = ViewRecipe(blur_p=blur_p[0], solarize_p=solarize_p[0], **common)  # type: ignore[arg-type]
        self.view2 = ViewRecipe(blur_p=blur_p[1], solarize_p=solarize_p[1], **common)  # type: ignore[arg-type]

    def __call__(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x = to_float_images(batch["image"])
        return self.view1.apply(x, generator), self.view2.apply(x, generator)


def byol_views(image_size: int = 32, hflip_p: float = 0.5, scale: tuple[float, float] = (0.08, 1.0),
               **overrides: Any) -> TwoViewAugmenter:
    """BYOL's asymmetric pair (Grill et al., 2020, Table 6): view 1 always blurred, never
    solarised; view 2 blurred with p=0.1 and solarised with p=0.2. Jitter/grayscale as SimCLR."""
    return TwoViewAugmenter(image_size=image_size, hflip_p=hflip_p, scale=scale,
                            blur_p=(1.0, 0.1), solarize_p=(0.0, 0.2), **overrides)


def dino_local_size(image_size: int, multiple: int = 4) -> int:
    """DINO's local crop side for ``image_size`` global crops: the paper's 96/224 of it, rounded to
    a multiple of ``multiple`` (a ViT patch side), at least one patch."""
    return max(multiple, int(round(image_size * 96 / 224 / multiple)) * multiple)


class MultiCropAugmenter(Augmenter):
    """DINO's multi-crop (Caron et al., 2021, Sec. 3.1 and Appendix; after SwAV, Caron et al., 2020).

    Returns a list ``[global_1, global_2, local_1, ..., local_n]``: two global views of side
    ``image_size`` covering ``global_scale`` of the image and ``n_local`` local views of side
    ``local_size`` covering ``local_scale``. As in DINO's data pipeline, global view 1 is always
    blurred, global view 2 is blurred with p=0.1 and solarised with p=0.2, and local views are
    blurred with p=0.5; all get flips, colour jitter (p=0.8) and grayscale (p=0.2).

    DINO uses 224/96 px crops; the default ``local_size`` keeps that ratio, rounded to a multiple
    of 4 (the small ViTs' patch) by :func:`dino_local_size` (28 -> 12, 224 -> 96). All local crops
    of a batch are produced in one batched call (``B * n_local`` per-sample draws).
    """

    def __init__(self, image_size: int = 32, local_size: int | None = None, n_local: int = 6,
                 global_scale: tuple[float, float] = (0.4, 1.0), local_scale: tuple[float, float] = (0.05, 0.4),
                 hflip_p: float = 0.5, jitter_p: float = 0.8, gray_p: float = 0.2) -> None:
        if n_local < 0:
            raise ValueError(f"n_local must be >= 0, got {n_local}")
        local_size = local_size or dino_local_size(image_size)
        common = dict(hflip_p=hflip_p, jitter_p=jitter_p, gray_p=gray_p)
        self.global1 = ViewRecipe(size=image_size, scale=tuple(global_scale), blur_p=1.0, **common)  # type: ignore[arg-type]
        self.global2 = ViewRecipe(size=image_size, scale=tuple(global_scale), blur_p=0.1, solarize_p=0.2, **common)  # type: ignore[arg-type]
        self.local = ViewRecipe(size=local_size, scale=tuple(local_scale), blur_p=0.5, **common)  # type: ignore[arg-type]
        self.n_local = n_local

    @property
    def n_views(self) -> int:
        """Number of views returned per image (2 global + ``n_local``)."""
        return 2 + self.n_local

    def __call__(self, batch: Batch, generator: torch.Generator) -> list[Tensor]:
        x = to_float_images(batch["image"])
        views = [self.global1.apply(x, generator), self.global2.apply(x, generator)]
        if self.n_local:
            local = self.local.apply(x.repeat(self.n_local, 1, 1, 1), generator)
            views += list(local.chunk(self.n_local))
        return views


class SingleViewAugmenter(Augmenter):
    """One random-resized crop + flip per image and nothing else: MAE's pre-training
    augmentation (He et al., 2022, Appendix A.1: crop scale 0.2-1, horizontal flip)."""

    def __init__(self, image_size: int = 32, hflip_p: float = 0.5, scale: tuple[float, float] = (0.2, 1.0)) -> None:
        self.view = ViewRecipe(size=image_size, scale=tuple(scale), hflip_p=hflip_p, jitter_p=0.0,  # type: ignore[arg-type]
                               gray_p=0.0, blur_p=0.0, solarize_p=0.0)

    def __call__(self, batch: Batch, generator: torch.Generator) -> Tensor:
        return self.view.apply(to_float_images(batch["image"]), generator)
