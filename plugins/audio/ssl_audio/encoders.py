"""Speech encoders: torchaudio's wav2vec 2.0 architecture (CNN feature encoder + Transformer).

Baevski, Zhou, Mohamed & Auli, "wav2vec 2.0: A Framework for Self-Supervised Learning of Speech
Representations", NeurIPS 2020 (arXiv:2006.11477); HuBERT (Hsu et al., 2021) uses the same
network. The model is built with ``torchaudio.models.wav2vec2_model``; presets give the papers'
BASE and LARGE configurations for GPUs and a narrow ``small`` configuration that trains at tens
of clips per second on a CPU. Every preset keeps the paper's 7-layer convolution stack (kernel
400 samples, stride 320), so frames are 20 ms apart at 16 kHz.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core.host_sync import reads_are_free
from ssl_core.interfaces import Batch, Encoder
from ssl_audio.data import padding_mask

CONV_KERNELS_STRIDES = ((10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2))
"""The feature encoder's (kernel, stride) per layer in both papers: 25 ms receptive field, 20 ms hop."""

PRESETS: dict[str, dict[str, Any]] = {
    # smoke tests and CI: ~25 k parameters, same frame rate and code paths as the others.
    "tiny": dict(conv_channels=16, conv_bias=False, extractor_mode="group_norm", embed_dim=32,
                 num_layers=1, num_heads=2, ff_dim=64, pos_conv_kernel=8, pos_conv_groups=4,
                 layer_norm_first=False, projection_dropout=0.0, attention_dropout=0.0, ff_dropout=0.0,
                 dropout=0.0, layer_drop=0.0),
    # CPU: ~1.9 M parameters; CALIBRATION.md measured ~35 clips/s (1 s, batch 8) on 2 cores.
    "small": dict(conv_channels=64, conv_bias=False, extractor_mode="group_norm", embed_dim=192,
                  num_layers=4, num_heads=4, ff_dim=768, pos_conv_kernel=32, pos_conv_groups=16,
                  layer_norm_first=False, projection_dropout=0.1, attention_dropout=0.1, ff_dropout=0.0,
                  dropout=0.1, layer_drop=0.0),
    # wav2vec 2.0 BASE (Sec. 4.2) = HuBERT BASE: 95 M parameters.
    "base": dict(conv_channels=512, conv_bias=False, extractor_mode="group_norm", embed_dim=768,
                 num_layers=12, num_heads=12, ff_dim=3072, pos_conv_kernel=128, pos_conv_groups=16,
                 layer_norm_first=False, projection_dropout=0.1, attention_dropout=0.1, ff_dropout=0.0,
                 dropout=0.1, layer_drop=0.05),
    # wav2vec 2.0 LARGE (LV-60k variant: layer-norm feature encoder, pre-LN Transformer): 317 M.
    "large": dict(conv_channels=512, conv_bias=True, extractor_mode="layer_norm", embed_dim=1024,
                  num_layers=24, num_heads=16, ff_dim=4096, pos_conv_kernel=128, pos_conv_groups=16,
                  layer_norm_first=True, projection_dropout=0.1, attention_dropout=0.0, ff_dropout=0.1,
                  dropout=0.0, layer_drop=0.1),
}


def _init_pretraining(module: nn.Module) -> None:
    """Initialisation for pre-training from scratch, as in fairseq's wav2vec 2.0/HuBERT:
    Kaiming-normal convolutions in the feature encoder and BERT-style N(0, 0.02) linear layers."""
    import torchaudio.models.wav2vec2.components as C

    for m in module.modules():
        if isinstance(m, C.ConvLayerBlock):
            nn.init.kaiming_normal_(m.conv.weight)
    for m in module.encoder.transformer.layers.modules():  # type: ignore[union-attr]
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Wav2Vec2Encoder(Encoder):
    """wav2vec 2.0 / HuBERT network from ``torchaudio.models.wav2vec2_model``.

    ``forward(waveform, lengths)`` returns utterance embeddings: the mean over valid frames of
    every Transformer layer's output, averaged over layers (``pool_layer="mean"``, the default:
    the top layers specialise in the pre-training task), or of one layer (``pool_layer=-1``: the
    last). Objectives use the lower-level pieces (:meth:`extract`, :meth:`project`,
    :meth:`contextualize`) to mask frames in between.
    """

    modality = "audio"
    input_key = "waveform"

    def __init__(
        self,
        size: str = "small",
        conv_channels: int | None = None,
        conv_layers: Sequence[Sequence[int]] | None = None,
        conv_bias: bool | None = None,
        extractor_mode: str | None = None,
        embed_dim: int | None = None,
        num_layers: int | None = None,
        num_heads: int | None = None,
        ff_dim: int | None = None,
        pos_conv_kernel: int | None = None,
        pos_conv_groups: int | None = None,
        layer_norm_first: bool | None = None,
        projection_dropout: float | None = None,
        attention_dropout: float | None = None,
        ff_dropout: float | None = None,
        dropout: float | None = None,
        layer_drop: float | None = None,
        normalize_waveform: bool = True,
        pool_layer: int | str = "mean",
    ) -> None:
        super().__init__()
        if size not in PRESETS:
            raise ValueError(f"Unknown wav2vec2 size '{size}'; choose one of {sorted(PRESETS)}.")
        given = {k: v for k, v in locals().items() if k in PRESETS[size] and v is not None}
        cfg = {**PRESETS[size], **given}
        if cfg["embed_dim"] % cfg["num_heads"] or cfg["embed_dim"] % cfg["pos_conv_groups"]:
            raise ValueError(
                f"embed_dim {cfg['embed_dim']} must be divisible by num_heads ({cfg['num_heads']}) "
                f"and pos_conv_groups ({cfg['pos_conv_groups']})."
            )
        if conv_layers is None:
            conv_layers = [(cfg["conv_channels"], k, s) for k, s in CONV_KERNELS_STRIDES]
        conv_layers = [tuple(int(v) for v in layer) for layer in conv_layers]
        if any(len(layer) != 3 for layer in conv_layers):
            raise ValueError(f"conv_layers must be a list of [channels, kernel, stride], got {conv_layers}")
        if isinstance(pool_layer, str) and pool_layer != "mean":
            raise ValueError(f"pool_layer must be a layer index (e.g. -1) or 'mean', got '{pool_layer}'")
        import torchaudio

        self.model = torchaudio.models.wav2vec2_model(
            extractor_mode=cfg["extractor_mode"], extractor_conv_layer_config=conv_layers,
            extractor_conv_bias=cfg["conv_bias"], encoder_embed_dim=cfg["embed_dim"],
            encoder_projection_dropout=cfg["projection_dropout"], encoder_pos_conv_kernel=cfg["pos_conv_kernel"],
            encoder_pos_conv_groups=cfg["pos_conv_groups"], encoder_num_layers=cfg["num_layers"],
            encoder_num_heads=cfg["num_heads"], encoder_attention_dropout=cfg["attention_dropout"],
            encoder_ff_interm_features=cfg["ff_dim"], encoder_ff_interm_dropout=cfg["ff_dropout"],
            encoder_dropout=cfg["dropout"], encoder_layer_norm_first=cfg["layer_norm_first"],
            encoder_layer_drop=cfg["layer_drop"], aux_num_out=None,
        )
        _init_pretraining(self.model)
        self.config = {**cfg, "conv_layers": conv_layers}
        self.embed_dim = int(cfg["embed_dim"])
        self.feature_dim = int(conv_layers[-1][0])
        self.num_layers = int(cfg["num_layers"])
        self.conv_layers = conv_layers
        self.normalize_waveform = normalize_waveform
        self.pool_layer = pool_layer
        self.receptive_field, self.hop = _receptive_field(conv_layers)

    # ------------------------------------------------------------------ building blocks
    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Valid output frames for ``lengths`` input samples."""
        for _, k, s in self.conv_layers:
            lengths = torch.clamp(torch.div(lengths - k, s, rounding_mode="floor") + 1, min=0)
        return lengths

    def normalize(self, waveform: Tensor, lengths: Tensor | None) -> Tensor:
        """Zero-mean, unit-variance per utterance over its valid samples; padding stays zero."""
        if not self.normalize_waveform:
            return waveform
        if lengths is None:
            return F.layer_norm(waveform, waveform.shape[-1:])
        valid = (~padding_mask(lengths, waveform.shape[1])).to(waveform.dtype)
        n = lengths.clamp_min(1).to(waveform.dtype)[:, None]
        mean = (waveform * valid).sum(1, keepdim=True) / n
        var = (((waveform - mean) * valid) ** 2).sum(1, keepdim=True) / n
        return (waveform - mean) / torch.sqrt(var + 1e-5) * valid

    def extract(self, waveform: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """CNN feature encoder: ``[B, L]`` samples -> latent features ``z`` ``[B, T, C]`` and frame lengths."""
        if waveform.ndim != 2:
            raise ValueError(f"Expected waveforms of shape [batch, samples], got {list(waveform.shape)}")
        if waveform.shape[1] < self.receptive_field:
            raise ValueError(
                f"Audio of {waveform.shape[1]} samples is shorter than one frame ({self.receptive_field} "
                "samples = 25 ms at 16 kHz); drop or pad such clips."
            )
        if lengths is None:
            lengths = torch.full((waveform.shape[0],), waveform.shape[1], device=waveform.device, dtype=torch.long)
        x = self.normalize(waveform, lengths).unsqueeze(1)
        frames = lengths
        for layer in self.model.feature_extractor.conv_layers:
            x = layer.conv(x)
            frames = torch.clamp(torch.div(frames - layer.kernel_size, layer.stride, rounding_mode="floor") + 1, min=0)
            frames = frames.clamp(max=x.shape[-1])
            if isinstance(layer.layer_norm, nn.GroupNorm):
                x = masked_group_norm(x, frames, layer.layer_norm)
            elif layer.layer_norm is not None:
                x = layer.layer_norm(x)
            x = F.gelu(x)
        return x.transpose(1, 2), frames

    def project(self, feats: Tensor) -> tuple[Tensor, Tensor]:
        """Layer-norm the latents (the quantiser's input) and project them to ``embed_dim``.

        Returns ``(normed_latents [B, T, C], projected [B, T, D])``.
        """
        fp = self.model.encoder.feature_projection
        normed = fp.layer_norm(feats)
        return normed, fp.dropout(fp.projection(normed))

    @staticmethod
    def attention_mask(frames: Tensor, max_len: int, dtype: torch.dtype) -> Tensor | None:
        """Additive attention mask ``[B, 1, T, T]`` that hides padded frames (``None`` if none)."""
        pad = padding_mask(frames, max_len)
        # skipping an all-zero mask needs a read of the data: only where it is free (a CPU)
        if reads_are_free(pad.device) and not bool(pad.any()):
            return None
        mask = -10000.0 * pad[:, None, None, :].to(dtype)
        return mask.expand(frames.shape[0], 1, max_len, max_len)

    def contextualize(self, x: Tensor, frames: Tensor) -> Tensor:
        """Transformer over projected (possibly masked) frames ``[B, T, D]`` -> context ``c``."""
        pad = padding_mask(frames, x.shape[1])
        x = x.masked_fill(pad[..., None], 0.0)
        return self.model.encoder.transformer(x, attention_mask=self.attention_mask(frames, x.shape[1], x.dtype))

    def fsdp_units(self) -> list[nn.Module]:
        """FSDP shards the Transformer layers one by one. The convolutional feature extractor
        stays with the root, because :meth:`extract` calls each block's conv and norm directly."""
        return list(self.model.encoder.transformer.layers)

    def layer_outputs(self, waveform: Tensor, lengths: Tensor | None = None,
                      num_layers: int | None = None) -> tuple[list[Tensor], Tensor]:
        """Every Transformer layer's output ``[B, T, D]`` (first ``num_layers``) and frame lengths."""
        feats, frames = self.extract(waveform, lengths)
        _, x = self.project(feats)
        x = x.masked_fill(padding_mask(frames, x.shape[1])[..., None], 0.0)
        mask = self.attention_mask(frames, x.shape[1], x.dtype)
        outs = self.model.encoder.transformer.get_intermediate_outputs(x, attention_mask=mask, num_layers=num_layers)
        return outs, frames

    # ------------------------------------------------------------------ Encoder API
    def forward_features(self, waveform: Tensor, lengths: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """Last-layer frame features ``[B, T, D]`` (padded frames are not meaningful)."""
        feats, frames = self.extract(waveform, lengths)
        _, x = self.project(feats)
        return self.contextualize(x, frames)

    def forward(self, waveform: Tensor, lengths: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """Utterance embeddings ``[B, embed_dim]``: mean over valid frames of the pooled layer(s)."""
        if self.pool_layer == -1:
            feats, frames = self.extract(waveform, lengths)
            _, x = self.project(feats)
            return masked_mean(self.contextualize(x, frames), frames)
        outs, frames = self.layer_outputs(waveform, lengths)
        if self.pool_layer == "mean":
            return torch.stack([masked_mean(o, frames) for o in outs]).mean(0)
        return masked_mean(outs[int(self.pool_layer)], frames)

    def embed(self, batch: Batch) -> Tensor:
        """Pooled embeddings of a padded evaluation batch (uses ``batch["lengths"]``)."""
        return self(batch["waveform"], batch.get("lengths"))


def masked_group_norm(x: Tensor, frames: Tensor, norm: nn.GroupNorm) -> Tensor:
    """``norm`` applied to ``x`` ``[B, C, T]`` with statistics over each row's valid frames only.

    The BASE feature encoder normalises its first layer over time (GroupNorm with one group per
    channel); plain GroupNorm would let zero padding shift those statistics, so a padded clip
    would embed differently from the same clip alone.
    """
    b, c, t = x.shape
    g = norm.num_groups
    valid = (~padding_mask(frames, t)).to(x.dtype)[:, None, None, :]  # [B, 1, 1, T]
    xg = x.reshape(b, g, c // g, t)
    n = (frames.clamp_min(1).to(x.dtype) * (c // g))[:, None, None, None]
    mean = (xg * valid).sum((2, 3), keepdim=True) / n
    var = (((xg - mean) * valid) ** 2).sum((2, 3), keepdim=True) / n
    y = ((xg - mean) / torch.sqrt(var + norm.eps)).reshape(b, c, t)
    if norm.affine:
        y = y * norm.weight[None, :, None] + norm.bias[None, :, None]
    return y


def masked_mean(x: Tensor, frames: Tensor) -> Tensor:
    """Mean of ``x`` ``[B, T, D]`` over each row's first ``frames[b]`` steps."""
    valid = (~padding_mask(frames, x.shape[1])).to(x.dtype)[..., None]
    return (x * valid).sum(1) / frames.clamp_min(1).to(x.dtype)[:, None]


def _receptive_field(conv_layers: Sequence[Sequence[int]]) -> tuple[int, int]:
    rf, hop = 1, 1
    for _, k, s in conv_layers:
        rf += (k - 1) * hop
        hop *= s
    return rf, hop


def wav2vec2_small(**kwargs: Any) -> Wav2Vec2Encoder:
    """CPU-sized wav2vec 2.0 network: 64-channel CNN, 4 x 192-d Transformer layers (~1.9 M params)."""
    return Wav2Vec2Encoder(**{"size": "small", **kwargs})


def wav2vec2_base(**kwargs: Any) -> Wav2Vec2Encoder:
    """wav2vec 2.0 / HuBERT BASE (Baevski et al., 2020; Hsu et al., 2021): 512-ch CNN, 12 x 768-d (95 M)."""
    return Wav2Vec2Encoder(**{"size": "base", **kwargs})


def wav2vec2_large(**kwargs: Any) -> Wav2Vec2Encoder:
    """wav2vec 2.0 LARGE (LV-60k style): layer-norm CNN, 24 x 1024-d pre-LN Transformer (317 M)."""
    return Wav2Vec2Encoder(**{"size": "large", **kwargs})


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = ["Wav2Vec2Encoder", "wav2vec2_small", "wav2vec2_base", "wav2vec2_large", "masked_mean", "PRESETS",
           "count_parameters"]
