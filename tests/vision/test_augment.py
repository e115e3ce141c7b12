"""Batched augmentations: shapes, dtypes, per-sample randomness, reproducibility, and that each
op does what the papers describe (crop geometry, flips, solarisation, blur, multi-crop)."""

from __future__ import annotations

import pytest
import torch

from ssl_vision.augment import (
    MultiCropAugmenter, SingleViewAugmenter, TwoViewAugmenter, byol_views, gaussian_blur,
    random_resized_crop, solarize,
)


def _batch(b: int = 16, c: int = 3, size: int = 16, same: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    img = torch.randint(0, 256, (1 if same else b, c, size, size), generator=g, dtype=torch.uint8)
    return {"image": img.expand(b, -1, -1, -1).clone() if same else img}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


AUGMENTERS = {
    "simclr_views": lambda: TwoViewAugmenter(image_size=16),
    "byol_views": lambda: byol_views(image_size=16),
    "multicrop": lambda: MultiCropAugmenter(image_size=16, n_local=3),
    "mae_views": lambda: SingleViewAugmenter(image_size=16),
}


def _views(out) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    return [out] if isinstance(out, torch.Tensor) else list(out)


@pytest.mark.parametrize("name", sorted(AUGMENTERS))
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_dtypes_and_range(name: str, channels: int) -> None:
    aug = AUGMENTERS[name]()
    for batch in (_batch(c=channels), {"image": _batch(c=channels)["image"].float() / 255}):
        views = _views(aug(batch, _gen(0)))
        for v in views:
            assert v.dtype == torch.float32
            assert v.shape[:2] == (16, channels)
            assert v.min() >= 0 and v.max() <= 1
        assert views[0].shape[-2:] == (16, 16)


@pytest.mark.parametrize("name", sorted(AUGMENTERS))
def test_views_differ_per_sample(name: str) -> None:
    """One image repeated over the batch must come out differently for (almost) every sample."""
    views = _views(AUGMENTERS[name]()(_batch(b=16, same=True), _gen(1)))
    for v in views:
        flat = v.flatten(1)
        distinct = {tuple(row.tolist()) for row in flat.round(decimals=4)}
        assert len(distinct) >= 15, f"{name}: only {len(distinct)} distinct views out of 16"


@pytest.mark.parametrize("name", sorted(AUGMENTERS))
def test_reproducible_with_same_seed(name: str) -> None:
    aug, batch = AUGMENTERS[name](), _batch()
    a, b, c = (_views(aug(batch, _gen(s))) for s in (7, 7, 8))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, z) for x, z in zip(a, c))


def test_two_views_of_one_image_differ() -> None:
    v1, v2 = TwoViewAugmenter(image_size=16)(_batch(), _gen(3))
    assert not torch.allclose(v1, v2)


def test_crop_full_area_no_flip_is_identity_and_flip_mirrors() -> None:
    x = torch.rand(4, 3, 12, 12)
    same = random_resized_crop(x, 12, _gen(0), scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip_p=0.0)
    assert torch.allclose(same, x, atol=1e-5)
    flipped = random_resized_crop(x, 12, _gen(0), scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip_p=1.0)
    assert torch.allclose(flipped, x.flip(-1), atol=1e-5)


def test_small_crops_zoom_in() -> None:
    """A crop of a small area of a smooth gradient spans a narrower range of values."""
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(8, 1, 32, 32).contiguous()
    small = random_resized_crop(ramp, 16, _gen(0), scale=(0.05, 0.06), hflip_p=0.0)
    full = random_resized_crop(ramp, 16, _gen(0), scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip_p=0.0)
    span = lambda v: (v.amax(dim=(1, 2, 3)) - v.amin(dim=(1, 2, 3)))  # noqa: E731
    assert (span(small) < 0.4).all() and (span(full) > 0.9).all()


def test_solarize_inverts_bright_pixels_per_sample() -> None:
    x = torch.rand(64, 3, 8, 8)
    assert torch.equal(solarize(x, _gen(0), p=1.0), torch.where(x >= 0.5, 1 - x, x))
    assert torch.equal(solarize(x, _gen(0), p=0.0), x)
    half = solarize(x, _gen(0), p=0.5)
    changed = (half != x).flatten(1).any(1)
    assert 16 < int(changed.sum()) < 48  # about half of the images, each all-or-nothing
    assert torch.equal(half[changed], torch.where(x[changed] >= 0.5, 1 - x[changed], x[changed]))


def test_blur_smooths_with_per_sample_sigma() -> None:
    x = torch.rand(32, 1, 16, 16)
    y = gaussian_blur(x, _gen(0), sigma=(0.1, 2.0), p=1.0)
    assert y.shape == x.shape
    assert (y.std(dim=(1, 2, 3)) < x.std(dim=(1, 2, 3))).float().mean() > 0.9
    reduction = (x.std(dim=(1, 2, 3)) - y.std(dim=(1, 2, 3)))
    assert reduction.std() > 0.01  # sigmas differ between samples
    assert torch.equal(gaussian_blur(x, _gen(0), sigma=(1.0, 2.0), p=0.0), x)


def test_blur_kernel_frac_sets_how_much_of_a_large_sigma_the_kernel_holds() -> None:
    """At 28 px SimCLR's kernel of 10% of the side is 3 taps, which holds a sigma of 2 only as a
    near-box blur; ``blur_kernel_frac`` widens it (0.45 -> 13 taps, +-3 sigma) and the same sigma
    then smooths more. A kernel is renormalised, so a constant image stays constant."""
    from ssl_vision.augment import ViewRecipe

    x = torch.rand(16, 1, 28, 28)
    narrow = gaussian_blur(x, _gen(0), sigma=(2.0, 2.0), p=1.0)
    wide = gaussian_blur(x, _gen(0), sigma=(2.0, 2.0), p=1.0, kernel_frac=0.45)
    assert (wide.std(dim=(1, 2, 3)) < 0.8 * narrow.std(dim=(1, 2, 3))).all()
    flat = torch.full((2, 1, 28, 28), 0.3)
    assert torch.allclose(gaussian_blur(flat, _gen(0), sigma=(2.0, 2.0), p=1.0, kernel_frac=0.45), flat)
    views = {frac: ViewRecipe(size=28, hflip_p=0.0, jitter_p=0.0, blur_p=1.0, blur_sigma=(2.0, 2.0),
                              blur_kernel_frac=frac).apply(x, _gen(0)) for frac in (0.1, 0.45)}
    assert (views[0.45].std(dim=(1, 2, 3)) < views[0.1].std(dim=(1, 2, 3))).all()  # the recipe passes it on


def test_byol_views_are_asymmetric() -> None:
    """View 1 is never solarised, view 2 for about 20% of images (BYOL, Table 6); view 1 is
    always blurred and view 2 rarely."""
    aug = byol_views(image_size=16, scale=(1.0, 1.0), hflip_p=0.0, jitter_p=0.0, gray_p=0.0)
    img = torch.zeros(400, 1, 16, 16)
    img[..., :, :8] = 1.0  # half bright: solarising turns the whole image dark
    v1, v2 = aug({"image": img}, _gen(0))
    dark1 = (v1.mean(dim=(1, 2, 3)) < 0.1).float().mean().item()
    dark2 = (v2.mean(dim=(1, 2, 3)) < 0.1).float().mean().item()
    assert dark1 == 0.0
    assert 0.12 < dark2 < 0.28
    assert (aug.view1.blur_p, aug.view2.blur_p) == (1.0, 0.1)


def test_multicrop_global_and_local_views() -> None:
    aug = MultiCropAugmenter(image_size=16, n_local=4)
    views = aug(_batch(b=8), _gen(0))
    assert len(views) == aug.n_views == 6
    assert [tuple(v.shape[-2:]) for v in views] == [(16, 16)] * 2 + [(8, 8)] * 4
    for i in range(2, 6):
        for j in range(i + 1, 6):
            assert not torch.allclose(views[i], views[j])
    assert MultiCropAugmenter(image_size=32, local_size=12, n_local=2)(_batch(b=2, size=32), _gen(0))[2].shape[-1] == 12


def test_mae_views_change_geometry_only() -> None:
    """MAE's augmentation has no colour changes: a constant image stays exactly constant."""
    const = torch.full((8, 3, 16, 16), 0.3)
    out = SingleViewAugmenter(image_size=16)({"image": const}, _gen(0))
    assert torch.allclose(out, const, atol=1e-6)


def test_dino_local_size_keeps_the_papers_ratio_on_patch_multiples() -> None:
    from ssl_vision.augment import dino_local_size

    assert [dino_local_size(s) for s in (224, 28, 16, 32, 4)] == [96, 12, 8, 12, 4]
    assert MultiCropAugmenter(image_size=28, n_local=1)(_batch(b=2, size=28), _gen(0))[2].shape[-1] == 12
