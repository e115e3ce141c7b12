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


def _exact_prediction(mae: MAE, images: torch.Tensor) -> torch.Tensor:
    """What a perfect decoder outputs: the per-patch normalised target (MAE Table 1c)."""
    target = patchify(mae.encoder.normalize(images), mae.encoder.patch_size)
    if not mae.norm_pix_loss:
        return target
    return (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_reconstruct_of_a_perfect_prediction_is_the_image_and_pastes_only_masked_patches(norm_pix_loss: bool) -> None:
    """A decoder that predicts its target exactly must reconstruct the image itself: ``reconstruct``
    undoes the per-patch normalisation (with the original's statistics) and the encoder's input
    standardisation. On a non-square 8x16 input (2x4 patches of 4x4), ``masked`` is the image
    with grey (0.5) masked patches and ``pasted`` the image with reconstructed masked patches."""
    mae = _mae(norm_pix_loss=norm_pix_loss)
    images = torch.rand(2, 1, 8, 16, generator=torch.Generator().manual_seed(4))
    images[0, :, :4, :4] = 0.3  # a flat patch (variance 0): the 1e-6 keeps it finite
    exact = _exact_prediction(mae, images)
    mae.decoder.forward = lambda latent, ids_restore, gh, gw: exact  # type: ignore[method-assign]
    rec = mae.reconstruct(images, seed=5)
    torch.testing.assert_close(rec["reconstruction"], images, atol=1e-4, rtol=0)
    mask = random_masking(2, 8, 0.75, torch.Generator().manual_seed(5), torch.device("cpu"))[1]
    pix = torch.zeros_like(images)
    for i, j in mask.nonzero().tolist():  # patch j of the row-major 2x4 grid
        pix[i, :, (j // 4) * 4:(j // 4 + 1) * 4, (j % 4) * 4:(j % 4 + 1) * 4] = 1.0
    assert int(pix.sum()) == 2 * 6 * 16
    torch.testing.assert_close(rec["masked"], torch.where(pix.bool(), 0.5, images))
    torch.testing.assert_close(rec["pasted"], torch.where(pix.bool(), rec["reconstruction"], images))
    assert torch.equal(rec["original"], images)


def test_reconstruct_clamps_an_overshooting_prediction_to_the_pixel_range() -> None:
    """A prediction 50x too far from each patch's mean: the pixels it implies leave [0, 1] on both
    sides and are clamped there, the rest are as computed by hand."""
    mae = _mae()
    images = torch.rand(2, 1, 8, 16, generator=torch.Generator().manual_seed(4))
    mae.decoder.forward = lambda latent, ids_restore, gh, gw: 50 * _exact_prediction(mae, images)  # type: ignore[method-assign]
    rec = mae.reconstruct(images)["reconstruction"]
    std, mu = mae.encoder.normalize.std, mae.encoder.normalize.mean
    z = (images - mu) / std  # per 4x4 patch: 50 x its deviation from the patch mean
    patch_mean = torch.nn.functional.avg_pool2d(z, 4).repeat_interleave(4, 2).repeat_interleave(4, 3)
    expected = ((patch_mean + 50 * (z - patch_mean)) * std + mu).clamp(0, 1)
    assert float((expected == 0).float().mean()) > 0.1 and float((expected == 1).float().mean()) > 0.1
    torch.testing.assert_close(rec, expected, atol=1e-4, rtol=0)


def test_on_train_end_draws_the_first_test_samples_or_nothing(tmp_path: Path) -> None:
    """``n_reconstructions`` rows, at most the test split's size (else the training split's), the
    first samples of a stream; 0 writes nothing and warns about nothing."""
    import warnings

    from PIL import Image

    from ssl_core.data import TensorDictDataset
    from ssl_core.interfaces import DataModule

    imgs = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    step = RECONSTRUCTION_CELL + 2 * 2 + 2

    def rows_drawn(mae: MAE, data: DataModule, out: Path) -> int:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the artefact's own failure would only warn
            mae.on_train_end(out, data)
        if not (out / RECONSTRUCTION_FILE).exists():
            return 0
        with Image.open(out / RECONSTRUCTION_FILE) as im:
            w, h = im.size
        assert w == 4 * step + 2
        return (h - 2) // step  # below the band of column titles (shorter than a row)

    test = TensorDictDataset(image=imgs, label=torch.zeros(3, dtype=torch.long))
    train = TensorDictDataset(image=imgs[:2], label=torch.zeros(2, dtype=torch.long))

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter([{"image": imgs[i]} for i in range(3)])

    for n, data, rows in [(5, DataModule(train=train, eval_test=test), 3), (2, DataModule(train=train, eval_test=test), 2),
                          (5, DataModule(train=train, eval_test=None), 2), (1, DataModule(train=Stream(), eval_test=None), 1),
                          (2, DataModule(train=Stream(), eval_test=None), 2), (0, DataModule(train=train, eval_test=test), 0)]:
        out = tmp_path / f"{n}-{rows}-{id(data)}"
        out.mkdir()
        assert rows_drawn(_mae(n_reconstructions=n), data, out) == rows, (n, rows)
    # a failure while drawing (images of different sizes) warns and leaves the run alone
    odd = [{"image": imgs[0]}, {"image": imgs[1, :, :8, :8]}]
    with pytest.warns(UserWarning, match="could not write"):
        _mae(n_reconstructions=2).on_train_end(tmp_path, DataModule(train=train, eval_test=odd))  # type: ignore[arg-type]


def test_reconstruct_records_no_graph() -> None:
    rec = _mae().reconstruct(torch.rand(1, 1, 16, 16))
    assert not any(v.requires_grad for v in rec.values())


def test_training_step_encodes_the_augmenters_view_or_else_the_raw_images() -> None:
    """The loss of ``training_step`` is the loss of ``forward_masked`` on the augmenter's output
    (here a fixed view), or on the batch's images as floats when there is no augmenter."""
    batch = {"image": torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))}
    view = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    for augmenter, images in [(lambda b, g: view, view), (None, batch["image"].float() / 255)]:
        mae = _mae()
        mae.augmenter = augmenter  # type: ignore[assignment]
        loss = mae.training_step(batch, StepInfo(0, 10, 0, torch.Generator().manual_seed(3)))["loss"]
        expected = mae.forward_masked(images, torch.Generator().manual_seed(3))[0]
        assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)


def test_mae_defaults_are_the_papers() -> None:
    """Sec. 3 / Table 1: mask 75%, normalised-pixel target, decoder 512-d, 8 blocks of 16 heads
    with MLP ratio 4; 8 reconstructions drawn at the end of a run."""
    from ssl_vision.mae import MAEDecoder

    enc = ViTEncoder(embed_dim=32, depth=1, num_heads=2, patch_size=4, in_channels=1)
    for dec in (MAE(enc, None).decoder, MAEDecoder(32, 16)):
        assert dec.dim == 512 and len(dec.blocks) == 8
        block = dec.blocks[0]
        assert block.attn.num_heads == 16 and block.mlp.fc1.out_features == 4 * 512
    mae = MAE(enc, None)
    assert (mae.mask_ratio, mae.norm_pix_loss, mae.n_reconstructions) == (0.75, True, 8)
    for dim, heads in [(24, 16), (18, 2)]:  # not divisible by the heads, or by 4 (sin-cos positions)
        with pytest.raises(ValueError, match="decoder_dim"):
            MAEDecoder(32, 16, dim=dim, num_heads=heads)


def test_masking_bounds_hold_at_one_patch_of_each_and_ratios_inside_0_1() -> None:
    """At least one visible and one masked patch: 3 of 4 masked and 1 of 4 masked are allowed,
    a ratio that rounds to no masked patch is not; MAE itself takes ratios strictly inside (0, 1)
    and images whose sides are both multiples of the patch size."""
    cpu = torch.device("cpu")
    ids_keep, mask, _ = random_masking(2, 4, 0.75, torch.Generator().manual_seed(0), cpu)
    assert ids_keep.shape == (2, 1) and mask.sum(1).tolist() == [3.0, 3.0]
    ids_keep, mask, _ = random_masking(2, 4, 0.25, torch.Generator().manual_seed(0), cpu)
    assert ids_keep.shape == (2, 3) and mask.sum(1).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="masks 0"):
        random_masking(2, 4, 0.1, torch.Generator().manual_seed(0), cpu)
    for ratio in (0.0, -0.5):
        with pytest.raises(ValueError, match="mask_ratio"):
            _mae(mask_ratio=ratio)
    with pytest.raises(ValueError, match="not a multiple of the patch size"):
        _mae().forward_masked(torch.rand(2, 1, 16, 18), torch.Generator().manual_seed(0))


def test_mae_decoder_starts_from_xavier_uniform_weights_zero_biases_and_a_small_mask_token() -> None:
    """The reference initialisation: every linear layer (blocks included) Xavier-uniform with zero
    bias, layer norms at (1, 0), the mask token N(0, 0.02^2). PyTorch's default would leave
    biases non-zero and linear weights within 1/sqrt(fan_in), below Xavier's bound here."""
    import math

    from ssl_vision.mae import MAEDecoder

    torch.manual_seed(0)
    dec = MAEDecoder(encoder_dim=64, patch_pixels=48, dim=64, depth=2, num_heads=4).requires_grad_(False)
    linears = [m for m in dec.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 2 + 2 * 4  # embed, pred, and per block qkv, proj, fc1, fc2
    assert all(m.bias is not None for m in linears)  # qkv too (qkv_bias=True, as the reference)
    for m in linears:
        bound = math.sqrt(6 / (m.in_features + m.out_features))
        assert float(m.weight.abs().max()) <= bound and float(m.weight.abs().max()) > 0.9 * bound
        assert float(m.weight.abs().max()) > 1 / math.sqrt(m.in_features)  # not PyTorch's default
        assert m.bias is None or not m.bias.any()
    for m in dec.modules():
        if isinstance(m, torch.nn.LayerNorm):
            assert bool((m.weight == 1).all()) and not m.bias.any()
    assert 0.01 < float(dec.mask_token.std()) < 0.03 and abs(float(dec.mask_token.mean())) < 0.01
