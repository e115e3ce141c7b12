"""MAE: exact masking ratio, visible-only encoding, patch bookkeeping, reconstruction PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_core.interfaces import StepInfo
from ssl_vision.augment import SingleViewAugmenter
from ssl_vision.encoders import resnet_small
from ssl_vision.mae import MAE, RECONSTRUCTION_CELL, RECONSTRUCTION_FILE, patchify, random_masking, unpatchify
from ssl_vision.vit import ViTEncoder


def _mae(**kw: object) -> MAE:
    torch.manual_seed(0)
    enc = ViTEncoder(embed_dim=32, depth=1, num_heads=2, patch_size=4, in_channels=1)
    return MAE(enc, SingleViewAugmenter(image_size=16, hflip_p=0.0), decoder_dim=32, decoder_depth=1,
               decoder_heads=2, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("ratio,patches,masked", [(0.75, 16, 12), (0.75, 64, 48), (0.5, 16, 8), (0.9, 100, 90)])
def test_random_masking_masks_exactly_the_ratio(ratio: float, patches: int, masked: int) -> None:
    g = torch.Generator().manual_seed(0)
    ids_keep, mask, ids_restore = random_masking(32, patches, ratio, g, torch.device("cpu"))
    assert (mask.sum(1) == masked).all()
    assert ids_keep.shape == (32, patches - masked)
    # kept indices are exactly the unmasked positions, and ids_restore inverts the shuffle
    kept = torch.zeros_like(mask).scatter_(1, ids_keep, 1.0)
    assert torch.equal(kept, 1 - mask)
    assert len({tuple(m.tolist()) for m in mask}) > 25  # a different mask for (nearly) every image
    assert torch.equal(torch.sort(ids_restore, dim=1).values, torch.arange(patches).expand(32, -1))


def test_masking_is_reproducible_and_rejects_bad_ratios() -> None:
    a = random_masking(4, 16, 0.75, torch.Generator().manual_seed(1), torch.device("cpu"))[1]
    b = random_masking(4, 16, 0.75, torch.Generator().manual_seed(1), torch.device("cpu"))[1]
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="mask_ratio"):
        random_masking(4, 4, 0.99, torch.Generator(), torch.device("cpu"))
    with pytest.raises(ValueError, match="mask_ratio"):
        _mae(mask_ratio=1.0)


def test_patchify_roundtrip() -> None:
    x = torch.rand(2, 3, 8, 12)
    p = patchify(x, 4)
    assert p.shape == (2, 6, 48)
    assert torch.equal(p[0, 1], x[0, :, 0:4, 4:8].permute(1, 2, 0).reshape(-1))
    assert torch.equal(unpatchify(p, 4, 2, 3, 3), x)


def test_training_step_reports_ratio_and_encoder_sees_visible_patches_only() -> None:
    mae = _mae()
    seen: list[int] = []
    hook = mae.encoder.vit.blocks.register_forward_hook(lambda m, i, o: seen.append(o.shape[1]))
    batch = {"image": torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8)}
    out = mae.training_step(batch, StepInfo(0, 10, 0, torch.Generator().manual_seed(0)))
    hook.remove()
    assert out["mask_ratio"].item() == pytest.approx(0.75)
    assert seen == [1 + 4]  # class token + the 25% visible patches of a 4x4 grid
    out["loss"].backward()
    assert mae.decoder.mask_token.grad is not None


def test_mae_rejects_a_cnn_with_a_fix() -> None:
    with pytest.raises(TypeError, match="vit_micro"):
        MAE(resnet_small(in_channels=1), None)


def test_reconstruction_png_is_written(tmp_path: Path, digits_data) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    mae = _mae(n_reconstructions=5)
    mae.on_train_end(tmp_path, digits_data)
    png = tmp_path / RECONSTRUCTION_FILE
    assert png.exists() and png.stat().st_size > 500
    with Image.open(png) as im:
        w, h = im.size
        grey = np.asarray(im.convert("L"))
    assert RECONSTRUCTION_CELL >= 96  # 16 px digits drawn at least 6x, large enough to see
    step = RECONSTRUCTION_CELL + 2 * 2 + 2  # cell, 2 px frame on each side, 2 px padding
    title_band = h - (5 * step + 2)  # 5 rows of 4 columns under a band of column headers
    assert w == 4 * step + 2 and title_band >= 12, (w, h)
    assert (grey[:title_band] < 100).sum() > 50  # dark header text ("original", "masked 75%", ...)
    assert len(np.unique(grey)) > 10  # a picture, not a blank canvas
    rec = mae.reconstruct(torch.rand(3, 1, 16, 16))
    vis = rec["masked"] != 0.5
    assert torch.equal(rec["pasted"][vis], rec["original"][vis])  # visible patches are kept as-is
    mae.on_train_end(None, digits_data)  # no run directory: nothing to write, no error
