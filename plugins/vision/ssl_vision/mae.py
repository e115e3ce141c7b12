"""MAE: He, Chen, Xie, Li, Dollár & Girshick, "Masked Autoencoders Are Scalable Vision
Learners", CVPR 2022 (arXiv:2111.06377).

An image is cut into patches and a large random subset (75%) is removed. The ViT encoder sees
only the visible patches (no mask tokens in the encoder); a lightweight transformer decoder
gets the encoded visible patches plus a shared, learned mask token at every removed position
(all with fixed sin-cos position embeddings) and predicts the pixels of every patch. The loss is
the mean squared error on the removed patches only, against per-patch normalised pixels
(``norm_pix_loss``; the CPU recipe for 28 px grey images predicts plain pixels, docs/vision.md).

Follows the paper: per-sample uniform random masking by shuffling patch indices with random
noise and keeping the first ``(1 - mask_ratio) * L`` (Sec. 3), class token in the encoder,
decoder embed/blocks/norm/linear prediction head, normalised-pixel target (Table 1c), crop
scale 0.2-1 + flip augmentation (``mae_views``), AdamW with betas (0.9, 0.95).

Deviations (documented so results can be compared): the CPU recipe uses a narrow, shallow
decoder (128-d, 2 blocks; the paper's default is 512-d, 8 blocks, which is available by
``decoder_dim``/``decoder_depth``), and the number of masked patches is ``round(mask_ratio *
L)`` so that the requested ratio is met exactly whenever ``mask_ratio * L`` is an integer.
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn
from timm.models.vision_transformer import Block

from ssl_core.interfaces import Augmenter, Batch, DataModule, Encoder, Objective, StepInfo
from ssl_core.randomness import sample_rand
from ssl_vision.augment import to_float_images
from ssl_vision.images import save_image_grid
from ssl_vision.losses import masked_patch_mse
from ssl_vision.vit import ViTEncoder, sincos_pos_embed_2d

RECONSTRUCTION_FILE = "mae_reconstructions.png"
RECONSTRUCTION_CELL = 112
"""Pixels per picture in the reconstruction grid (16-32 px inputs are enlarged to be seen)."""


def patchify(images: Tensor, patch: int) -> Tensor:
    """``[B, C, H, W]`` -> ``[B, L, patch*patch*C]`` (row-major patches, channels last)."""
    b, c, h, w = images.shape
    gh, gw = h // patch, w // patch
    x = images.reshape(b, c, gh, patch, gw, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, gh * gw, patch * patch * c)


def unpatchify(patches: Tensor, patch: int, grid_h: int, grid_w: int, channels: int) -> Tensor:
    """Inverse of :func:`patchify`: ``[B, L, patch*patch*C]`` -> ``[B, C, H, W]``."""
    b = patches.shape[0]
    x = patches.reshape(b, grid_h, grid_w, patch, patch, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, channels, grid_h * patch, grid_w * patch)


def random_masking(
    batch_size: int, num_patches: int, mask_ratio: float, generator: torch.Generator, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample random masking by argsort of uniform noise (MAE, Sec. 3).

    Returns ``(ids_keep [B, K], mask [B, L], ids_restore [B, L])``: the kept patch indices, a
    0/1 mask with 1 for removed patches (exactly ``round(mask_ratio * L)`` per sample), and the
    permutation that puts shuffled tokens back in patch order.
    """
    n_mask = int(round(mask_ratio * num_patches))
    n_keep = num_patches - n_mask
    if not 0.0 < mask_ratio < 1.0 or n_keep < 1 or n_mask < 1:
        raise ValueError(
            f"mask_ratio {mask_ratio} over {num_patches} patches keeps {n_keep} and masks {n_mask}; "
            "MAE needs at least one of each. Use a ratio in (0, 1) or more patches (smaller patch_size)."
        )
    noise = sample_rand(generator, (batch_size, num_patches), device)  # per image, any process count
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(batch_size, num_patches, device=device)
    mask[:, :n_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return ids_shuffle[:, :n_keep], mask, ids_restore


class MAEDecoder(nn.Module):
    """MAE's lightweight decoder: embed, insert mask tokens, add sin-cos positions, transformer
    blocks (timm), norm, and a linear layer predicting ``patch*patch*C`` pixels per patch."""

    def __init__(self, encoder_dim: int, patch_pixels: int, dim: int = 512, depth: int = 8, num_heads: int = 16,
                 mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if dim % num_heads or dim % 4:
            raise ValueError(f"decoder_dim ({dim}) must be divisible by decoder_heads ({num_heads}) and by 4.")
        self.dim = dim
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, num_heads, mlp_ratio, qkv_bias=True,
                                            norm_layer=nn.LayerNorm) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.pred = nn.Linear(dim, patch_pixels)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, latent: Tensor, ids_restore: Tensor, grid_h: int, grid_w: int) -> Tensor:
        """``latent`` ``[B, 1+K, D_enc]`` (class token first) -> pixel predictions ``[B, L, P]``."""
        x = self.embed(latent)
        b, num_patches = x.shape[0], ids_restore.shape[1]
        masks = self.mask_token.to(x.dtype).expand(b, num_patches + 1 - x.shape[1], -1)
        x_ = torch.cat([x[:, 1:], masks], dim=1)
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, self.dim))
        pos = sincos_pos_embed_2d(grid_h, grid_w, self.dim, x.device).unsqueeze(0).to(x.dtype)
        x = torch.cat([x[:, :1], x_ + pos], dim=1)
        x = self.norm(self.blocks(x))
        return self.pred(x[:, 1:])


class MAE(Objective):
    """Masked autoencoder: ViT encoder on visible patches, light decoder, masked-patch MSE."""

    def __init__(
        self,
        encoder: Encoder,
        augmenter: Augmenter | None = None,
        mask_ratio: float = 0.75,
        decoder_dim: int = 512,
        decoder_depth: int = 8,
        decoder_heads: int = 16,
        norm_pix_loss: bool = True,
        n_reconstructions: int = 8,
    ) -> None:
        super().__init__()
        if not isinstance(encoder, ViTEncoder):
            raise TypeError(
                f"MAE needs a ViT encoder that can encode only the visible patches (vit_micro, vit_tiny, "
                f"vit_small, vit_base); got {type(encoder).__name__}. A CNN has no patch tokens to drop: "
                "pass --encoder vit_micro (or another vit_*)."
            )
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.encoder = encoder
        self.augmenter = augmenter
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.n_reconstructions = n_reconstructions
        p, c = encoder.patch_size, encoder.in_channels
        self.decoder = MAEDecoder(encoder.embed_dim, p * p * c, decoder_dim, decoder_depth, decoder_heads)

    def _images(self, batch: Batch, generator: torch.Generator) -> Tensor:
        if self.augmenter is not None:
            return self.augmenter(batch, generator)
        return to_float_images(batch["image"])

    def forward_masked(self, images: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Mask, encode, decode: ``(loss, pred [B, L, P], mask [B, L], target [B, L, P])``."""
        enc: ViTEncoder = self.encoder  # type: ignore[assignment]
        p = enc.patch_size
        h, w = images.shape[-2:]
        if h % p or w % p:
            raise ValueError(f"MAE input {h}x{w} is not a multiple of the patch size {p}; change image_size or patch_size.")
        gh, gw = h // p, w // p
        ids_keep, mask, ids_restore = random_masking(images.shape[0], gh * gw, self.mask_ratio, generator, images.device)
        latent = enc.forward_visible(images, ids_keep)
        pred = self.decoder(latent, ids_restore, gh, gw)
        target = patchify(enc.normalize(images), p)
        loss = masked_patch_mse(pred, target, mask, self.norm_pix_loss)
        return loss, pred, mask, target

    def training_step(self, batch: Batch, step: StepInfo) -> dict[str, Tensor]:
        loss, _, mask, _ = self.forward_masked(self._images(batch, step.generator), step.generator)
        return {"loss": loss, "mask_ratio": mask.mean()}

    # ------------------------------------------------------------------ artifacts
    @torch.no_grad()
    def reconstruct(self, images: Tensor, seed: int = 0) -> dict[str, Tensor]:
        """Originals, masked inputs and reconstructions (all ``[B, C, H, W]`` in [0, 1]).

        ``reconstruction`` is the decoder's output everywhere; ``pasted`` keeps the visible
        patches of the original and the reconstruction elsewhere (the paper's Figure 2 shows it).
        """
        enc: ViTEncoder = self.encoder  # type: ignore[assignment]
        was_training = self.training
        self.eval()
        try:
            g = torch.Generator(device=images.device).manual_seed(seed)
            _, pred, mask, target = self.forward_masked(images, g)
        finally:
            self.train(was_training)
        p, c = enc.patch_size, images.shape[1]
        gh, gw = images.shape[-2] // p, images.shape[-1] // p
        if self.norm_pix_loss:  # undo the per-patch normalisation with the original's statistics
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            pred = pred * (var + 1e-6).sqrt() + mean
        std, mu = enc.normalize.std, enc.normalize.mean  # undo the encoder's input standardisation
        recon = (unpatchify(pred, p, gh, gw, c) * std + mu).clamp(0, 1)
        pix_mask = unpatchify(mask.unsqueeze(-1).expand(-1, -1, p * p * c), p, gh, gw, c)
        masked = images * (1 - pix_mask) + 0.5 * pix_mask
        pasted = images * (1 - pix_mask) + recon * pix_mask
        return {"original": images, "masked": masked, "reconstruction": recon, "pasted": pasted}

    def on_train_end(self, run_dir: Path | None, data: DataModule) -> None:
        """Write ``mae_reconstructions.png`` (rows: original | masked | reconstruction | pasted)."""
        if run_dir is None or self.n_reconstructions <= 0:
            return
        dataset = data.eval_test if data.eval_test is not None else data.train
        try:
            if isinstance(dataset, torch.utils.data.IterableDataset):  # a stream: its first samples
                it = iter(dataset)
                try:
                    first = list(itertools.islice(it, self.n_reconstructions))
                finally:
                    getattr(it, "close", lambda: None)()
            else:
                n = min(self.n_reconstructions, len(dataset))  # type: ignore[arg-type]
                first = [dataset[i] for i in range(n)]
            images = torch.stack([to_float_images(s["image"]) for s in first])
            device = next(self.parameters()).device
            out = self.reconstruct(images.to(device))
            rows = [[out[k][i] for k in ("original", "masked", "reconstruction", "pasted")] for i in range(len(first))]
            titles = ["original", f"masked {self.mask_ratio:.0%}", "reconstruction", "recon. + visible"]
            save_image_grid(rows, Path(run_dir) / RECONSTRUCTION_FILE, cell=RECONSTRUCTION_CELL, column_titles=titles)
        except Exception as exc:  # an artifact must never fail a finished run
            warnings.warn(f"MAE could not write {Path(run_dir) / RECONSTRUCTION_FILE}: {exc}", stacklevel=2)
