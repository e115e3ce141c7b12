"""ViT and ResNet encoders: shapes at several resolutions, visible-patch encoding, errors."""

from __future__ import annotations

import pytest
import torch

from ssl_vision.encoders import resnet_small
from ssl_vision.vit import VIT_SIZES, ViTEncoder, sincos_pos_embed_2d, vit_micro, vit_tiny


def _small_vit(**kw: object) -> ViTEncoder:
    return ViTEncoder(embed_dim=32, depth=2, num_heads=2, patch_size=4, in_channels=1, **kw)  # type: ignore[arg-type]


def test_vit_pooled_and_token_shapes_at_several_resolutions() -> None:
    enc = _small_vit()
    for size in (8, 16, 32):
        x = torch.rand(3, 1, size, size)
        assert enc(x).shape == (3, 32)
        assert enc.forward_features(x).shape == (3, 1 + (size // 4) ** 2, 32)
    assert _small_vit(pool="mean")(torch.rand(2, 1, 16, 16)).shape == (2, 32)


def test_forward_visible_with_every_patch_equals_full_forward() -> None:
    enc = _small_vit().eval()
    x = torch.rand(2, 1, 16, 16)
    all_ids = torch.arange(16).expand(2, -1)
    assert torch.allclose(enc.forward_visible(x, all_ids), enc.forward_features(x), atol=1e-5)
    some = enc.forward_visible(x, torch.tensor([[0, 5, 9, 15], [1, 2, 3, 4]]))
    assert some.shape == (2, 5, 32)


def test_positions_are_distinct_and_fixed() -> None:
    pe = sincos_pos_embed_2d(4, 4, 32)
    assert pe.shape == (16, 32)
    assert torch.cdist(pe, pe).add(torch.eye(16) * 10).min() > 0.1  # every position distinguishable
    assert sum(p.numel() for n, p in _small_vit().named_parameters() if "pos" in n) == 0


def test_vit_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="multiple of the ViT patch size"):
        _small_vit()(torch.rand(1, 1, 10, 10))
    with pytest.raises(ValueError, match="in_channels"):
        _small_vit()(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="pool"):
        _small_vit(pool="max")
    with pytest.raises(ValueError, match="weight_init"):
        _small_vit(weight_init="zeros")


def test_xavier_init_matches_the_mae_recipe() -> None:
    torch.manual_seed(0)
    enc = _small_vit(weight_init="xavier")
    fc = enc.vit.blocks[0].mlp.fc1.weight.detach()
    bound = (6 / (fc.shape[0] + fc.shape[1])) ** 0.5
    assert fc.abs().max() <= bound and fc.abs().max() > 0.8 * bound  # Xavier-uniform range
    assert float(enc.vit.blocks[0].mlp.fc1.bias.detach().abs().max()) == 0.0


def test_named_sizes() -> None:
    assert VIT_SIZES["vit_small"]["embed_dim"] == 384 and VIT_SIZES["vit_base"]["depth"] == 12
    tiny = vit_tiny(in_channels=3)
    assert tiny.embed_dim == 192 and len(tiny.vit.blocks) == 12
    assert tiny(torch.rand(1, 3, 32, 32)).shape == (1, 192)
    micro = vit_micro(in_channels=1, mean=[0.3], std=[0.3])
    assert micro.patch_size == 4 and micro(torch.rand(2, 1, 16, 16)).shape == (2, 192)


def test_embed_accepts_uint8_batches() -> None:
    for enc in (_small_vit(), resnet_small(in_channels=1)):
        batch = {"image": torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8)}
        assert enc.embed(batch).shape == (2, enc.embed_dim)
