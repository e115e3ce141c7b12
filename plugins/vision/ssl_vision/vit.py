"""Vision Transformer encoders (Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021).

The trunk is timm's ``VisionTransformer`` (patch embedding, pre-norm blocks, class token, its
weight initialisation); this module adds what self-supervised methods need on top:

- fixed 2-D sine-cosine position embeddings computed for whatever patch grid the input has, as
  in MAE (He et al., 2022, Sec. 3) and MoCo v3 (Chen et al., 2021). One encoder therefore takes
  DINO's global and local crops of different sizes without interpolating learned embeddings;
- :meth:`ViTEncoder.forward_visible`, which encodes only a subset of patches (MAE's encoder sees
  the visible 25% only).

Sizes follow DeiT/ViT: ``vit_tiny`` (192-d, 12 blocks, 3 heads), ``vit_small`` (384, 12, 6),
``vit_base`` (768, 12, 12), with 16-pixel patches for 224-pixel images. ``vit_micro`` (192-d,
6 blocks, 3 heads, 4-pixel patches) and ``vit_nano`` (128-d, 4 blocks, 4 heads, 4-pixel patches)
are sized for 16-32 pixel images on a CPU.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from timm.models.vision_transformer import VisionTransformer

from ssl_core.interfaces import Encoder
from ssl_vision.encoders import _Normalize

VIT_SIZES: dict[str, dict[str, int]] = {
    "vit_nano": {"embed_dim": 128, "depth": 4, "num_heads": 4, "patch_size": 4},
    "vit_micro": {"embed_dim": 192, "depth": 6, "num_heads": 3, "patch_size": 4},
    "vit_tiny": {"embed_dim": 192, "depth": 12, "num_heads": 3, "patch_size": 16},
    "vit_small": {"embed_dim": 384, "depth": 12, "num_heads": 6, "patch_size": 16},
    "vit_base": {"embed_dim": 768, "depth": 12, "num_heads": 12, "patch_size": 16},
}


def sincos_pos_embed_2d(grid_h: int, grid_w: int, dim: int, device: torch.device | None = None) -> Tensor:
    """Fixed 2-D sine-cosine position embeddings ``[grid_h * grid_w, dim]`` (row-major patches).

    Half of the channels encode the row, half the column; each half is ``[sin(p * w_k),
    cos(p * w_k)]`` with frequencies ``w_k = 1 / 10000^(k / (dim/4))`` (Vaswani et al., 2017,
    extended to 2-D as in MAE).
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos position embeddings need embed_dim divisible by 4, got {dim}.")
    quarter = dim // 4
    omega = 1.0 / (10000.0 ** (torch.arange(quarter, dtype=torch.float64, device=device) / quarter))
    ys, xs = torch.meshgrid(
        torch.arange(grid_h, dtype=torch.float64, device=device),
        torch.arange(grid_w, dtype=torch.float64, device=device), indexing="ij",
    )

    def encode(pos: Tensor) -> Tensor:
        angles = pos.reshape(-1, 1) * omega.view(1, -1)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(ys), encode(xs)], dim=1).float()


class ViTEncoder(Encoder):
    """A ViT trunk (timm) with sin-cos positions; input [B, C, H, W] in [0, 1], output [B, D].

    ``pool="cls"`` returns the class token (DINO, MAE's linear probe); ``pool="mean"`` averages
    the patch tokens. H and W must be multiples of ``patch_size``. ``weight_init="timm"`` keeps
    timm's DeiT-style initialisation (truncated normal, std 0.02; what DINO uses);
    ``"xavier"`` is the original ViT/MoCo v3/MAE one (Xavier-uniform linear layers, patch
    embedding initialised like a linear layer, class token normal with std 0.02).
    """

    modality = "vision"
    input_key = "image"

    def __init__(
        self,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        patch_size: int = 16,
        in_channels: int = 3,
        mlp_ratio: float = 4.0,
        pool: str = "cls",
        drop_path_rate: float = 0.0,
        weight_init: str = "timm",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if pool not in ("cls", "mean"):
            raise ValueError(f"ViTEncoder pool must be 'cls' or 'mean', got {pool!r}.")
        if weight_init not in ("timm", "xavier"):
            raise ValueError(f"ViTEncoder weight_init must be 'timm' or 'xavier', got {weight_init!r}.")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads}).")
        mean = list(mean) if mean is not None else [0.5] * in_channels
        std = list(std) if std is not None else [0.25] * in_channels
        self.normalize = _Normalize(mean, std)
        self.vit = VisionTransformer(
            img_size=patch_size * 8, patch_size=patch_size, in_chans=in_channels, num_classes=0,
            embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
            class_token=True, pos_embed="none", dynamic_img_size=True, global_pool="token",
            drop_path_rate=drop_path_rate,
        )
        if weight_init == "xavier":
            self._xavier_init()
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.pool = pool
        self._pos_cache: dict[tuple[int, int, str], Tensor] = {}

    @torch.no_grad()
    def _xavier_init(self) -> None:
        for m in self.vit.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        w = self.vit.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.vit.cls_token, std=0.02)

    # ------------------------------------------------------------------ pieces MAE reuses
    def pos_embed(self, grid_h: int, grid_w: int, device: torch.device) -> Tensor:
        """Cached sin-cos embeddings ``[1, grid_h * grid_w, D]`` for a patch grid."""
        key = (grid_h, grid_w, str(device))
        if key not in self._pos_cache:
            self._pos_cache[key] = sincos_pos_embed_2d(grid_h, grid_w, self.embed_dim, device).unsqueeze(0)
        return self._pos_cache[key]

    def patchify_embed(self, x: Tensor) -> tuple[Tensor, int, int]:
        """Normalise, embed patches and add positions: ``([B, L, D], grid_h, grid_w)``."""
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"Image size {h}x{w} is not a multiple of the ViT patch size {self.patch_size}. "
                f"Resize the views (augmenter image_size) or set encoder_kwargs.patch_size."
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"ViT expects {self.in_channels} channel(s) but got {x.shape[1]}; set encoder_kwargs.in_channels."
            )
        tokens = self.vit.patch_embed(self.normalize(x))  # [B, gh, gw, D]
        b, gh, gw, d = tokens.shape
        tokens = tokens.reshape(b, gh * gw, d) + self.pos_embed(gh, gw, x.device).to(tokens.dtype)
        return tokens, gh, gw

    def encode_tokens(self, patches: Tensor) -> Tensor:
        """Prepend the class token (no position, as in MAE) and run the blocks: ``[B, 1+L, D]``."""
        cls = self.vit.cls_token.expand(patches.shape[0], -1, -1).to(patches.dtype)
        x = torch.cat([cls, patches], dim=1)
        x = self.vit.norm_pre(x)
        x = self.vit.blocks(x)
        return self.vit.norm(x)

    def _pool(self, tokens: Tensor) -> Tensor:
        return tokens[:, 0] if self.pool == "cls" else tokens[:, 1:].mean(1)

    # ------------------------------------------------------------------ Encoder API
    def forward_features(self, x: Tensor) -> Tensor:
        """All tokens after the final norm, class token first: ``[B, 1 + L, D]``."""
        patches, _, _ = self.patchify_embed(x)
        return self.encode_tokens(patches)

    def forward_visible(self, x: Tensor, ids_keep: Tensor) -> Tensor:
        """Encode only the patches ``ids_keep`` ``[B, K]`` (row-major indices): ``[B, 1 + K, D]``."""
        patches, _, _ = self.patchify_embed(x)
        idx = ids_keep.unsqueeze(-1).expand(-1, -1, patches.shape[-1])
        return self.encode_tokens(torch.gather(patches, 1, idx))

    def forward(self, x: Tensor) -> Tensor:
        return self._pool(self.forward_features(x))

    def embed(self, batch: dict) -> Tensor:
        x = batch["image"]
        return self(x.float().div(255.0) if x.dtype == torch.uint8 else x.float())


def _build(size: str, overrides: dict[str, object]) -> ViTEncoder:
    kwargs: dict[str, object] = {**VIT_SIZES[size], **overrides}
    return ViTEncoder(**kwargs)  # type: ignore[arg-type]


def vit_nano(**kwargs: object) -> ViTEncoder:
    """ViT for 16-32 px images on CPU: patch 4, 128-d, 4 blocks, 4 heads (~0.8M params)."""
    return _build("vit_nano", kwargs)


def vit_micro(**kwargs: object) -> ViTEncoder:
    """ViT for 16-32 px images on CPU: patch 4, 192-d, 6 blocks, 3 heads (~2.7M params)."""
    return _build("vit_micro", kwargs)


def vit_tiny(**kwargs: object) -> ViTEncoder:
    """ViT-Tiny (DeiT-Ti): patch 16, 192-d, 12 blocks, 3 heads (~5.5M params)."""
    return _build("vit_tiny", kwargs)


def vit_small(**kwargs: object) -> ViTEncoder:
    """ViT-Small (DeiT-S): patch 16, 384-d, 12 blocks, 6 heads (~21M params)."""
    return _build("vit_small", kwargs)


def vit_base(**kwargs: object) -> ViTEncoder:
    """ViT-Base: patch 16, 768-d, 12 blocks, 12 heads (~86M params)."""
    return _build("vit_base", kwargs)
