"""Vision exports: ResNets for torchvision and timm, ViTs for timm.

**ResNets.** ``resnet18/34/50`` are torchvision's own architectures, so their trunk is saved
under torchvision's key names (``conv1``, ``bn1``, ``layer1.0.conv1``, ...), which timm's ResNet
uses as well. ``resnet_small`` has no torchvision counterpart. timm's ``ResNet`` takes any four stage widths
(``channels=``) but fixes its plain stem at 64 channels, so a ``resnet_small`` exports to timm
when its first width is 64 (``widths: [64, 128, 256, 512]``, any ``blocks``); the default narrow
one (32-256) exports as ``safetensors`` only.
Two differences from the libraries' ImageNet models are stated in ``config.json`` and undone by
:func:`build_torchvision_model` / :func:`build_timm_model`:

- *small-input stem* (``small_input=True``, the default for 16-32 px images, SimCLR's CIFAR stem):
  ``conv1`` is a 3x3/stride-1 convolution and there is no max-pool. The library model is built
  as usual, then ``conv1`` is replaced by ``Conv2d(in_channels, width, 3, 1, 1, bias=False)`` and
  ``maxpool`` by ``Identity`` before ``load_state_dict(strict=True)``. (A 7x7 ImageNet stem cannot
  hold 3x3 weights; both stems are standard, only the first layer differs.) Grey images also
  change ``conv1``'s input channels (timm: ``in_chans=1``).
- *no classifier*: the encoder ends at global average pooling, so ``fc`` is ``Identity`` (timm:
  ``num_classes=0``) and the model's output is the encoder's embedding.

Inputs are float images in [0, 1] standardised with ``preprocess.mean/std`` (the encoder does
this inside; the library models expect it done by the caller, as with ImageNet weights).

**ViTs** become timm's ``VisionTransformer`` with ``no_embed_class=True`` (positions added to
patches only, the class token has none, as in the encoder) and ``pos_embed`` set to the encoder's
fixed 2-D sine-cosine table for the run's image size; ``global_pool`` is ``token`` (``pool=cls``)
or ``avg`` with the final norm kept (``pool=mean``, ``fc_norm=False``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssl_core.errors import ConfigError, DataError
from ssl_core.exporters import (
    CONFIG_FILE, WEIGHTS_FILE, ExportContext, Exporter, load_safetensors, save_safetensors, write_config,
    write_model_card,
)
from ssl_core.interfaces import Encoder
from ssl_vision.encoders import ResNetEncoder
from ssl_vision.vit import ViTEncoder, sincos_pos_embed_2d

TORCHVISION_ARCHS = ("resnet18", "resnet34", "resnet50")
_BLOCKS = {"resnet18": ("BasicBlock", [2, 2, 2, 2]), "resnet34": ("BasicBlock", [3, 4, 6, 3]),
           "resnet50": ("Bottleneck", [3, 4, 6, 3])}


# ---------------------------------------------------------------------- ResNet key names and stem
def _resnet_key_map(enc: ResNetEncoder) -> dict[str, str]:
    """torchvision/timm key -> encoder key for the trunk (no normalisation, no classifier)."""
    if enc.arch == "resnet_small":
        stem = {"0.0.": "conv1.", "0.1.": "bn1."}
        layers = {f"{i}.": f"layer{i}." for i in range(1, 5)}
    else:
        stem = {"0.": "conv1.", "1.": "bn1."}
        layers = {f"{i + 3}.": f"layer{i}." for i in range(1, 5)}
    out = {}
    for key in enc.state_dict():
        if not key.startswith("trunk."):
            continue
        rest = key[len("trunk."):]
        for src, dst in {**stem, **layers}.items():
            if rest.startswith(src):
                out[dst + rest[len(src):]] = key
                break
    return out


def _stem_config(enc: ResNetEncoder) -> dict[str, Any]:
    conv = enc.trunk[0][0] if enc.arch == "resnet_small" else enc.trunk[0]
    return {"small_input": tuple(conv.kernel_size) == (3, 3),
            "conv1": {"in_channels": conv.in_channels, "out_channels": conv.out_channels,
                      "kernel_size": conv.kernel_size[0], "stride": conv.stride[0], "padding": conv.padding[0]},
            "maxpool": "identity" if tuple(conv.kernel_size) == (3, 3) else "default"}


def _apply_stem(model: nn.Module, stem: dict[str, Any]) -> nn.Module:
    """Give a torchvision/timm ResNet the exported stem: conv1's shape, and no max-pool for small inputs."""
    c = stem["conv1"]
    if tuple(model.conv1.weight.shape[1:]) != (c["in_channels"], c["kernel_size"], c["kernel_size"]):
        model.conv1 = nn.Conv2d(c["in_channels"], c["out_channels"], c["kernel_size"], c["stride"], c["padding"], bias=False)
    if stem["maxpool"] == "identity":
        model.maxpool = nn.Identity()
    return model


def _preprocess(enc: Encoder, ctx: ExportContext) -> dict[str, Any]:
    batch = ctx.sample_batch(1)
    size = list(batch["image"].shape[-2:]) if batch is not None else None
    return {"input": "float NCHW images in [0, 1] (uint8 / 255), then (x - mean) / std per channel",
            "mean": enc.normalize.mean.flatten().tolist(), "std": enc.normalize.std.flatten().tolist(),  # type: ignore[union-attr]
            "image_size": size}


_RESNET_NOTE = """## Differences from the library's ImageNet model

- Small-input stem (`stem.small_input` in config.json): conv1 is 3x3/stride 1 and there is no
  max-pool (SimCLR's CIFAR stem). Replace `conv1` and `maxpool` as `stem` says before loading.
- No classifier: `fc` is `Identity` (timm: `num_classes=0`); the output is the embedding.
- Inputs: float images in [0, 1], standardised with `preprocess.mean` / `preprocess.std`.
"""
_VIT_NOTE = """## Differences from timm's pretrained ViTs

- `no_embed_class=True`: positions are added to the patch tokens only; the class token has none.
- `pos_embed` holds the encoder's fixed 2-D sine-cosine table for `img_size`; other sizes need a new
  table (timm's `dynamic_img_size` would interpolate it instead).
- Inputs: float images in [0, 1], standardised with `preprocess.mean` / `preprocess.std`.
"""


class _VisionExporter(Exporter):
    def export(self, encoder: Encoder, out_dir: Path, ctx: ExportContext) -> Path:
        reason = self.supports(encoder)
        if reason:
            raise ConfigError(reason)
        out_dir.mkdir(parents=True, exist_ok=True)
        target = {**self.target(encoder, ctx), "preprocess": _preprocess(encoder, ctx), "weights": WEIGHTS_FILE}
        save_safetensors(self.export_state_for(encoder, target), out_dir / WEIGHTS_FILE, {"format": "pt"})
        write_config(out_dir, self, ctx, target)
        write_model_card(out_dir, self, ctx, notes=_RESNET_NOTE if isinstance(encoder, ResNetEncoder) else _VIT_NOTE)
        return out_dir

    def target(self, encoder: Encoder, ctx: ExportContext) -> dict[str, Any]:
        raise NotImplementedError

    def export_state_for(self, encoder: Encoder, target: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.export_state(encoder)

    def ignored_keys(self, key: str) -> bool:
        return key.startswith(("fc.", "head.", "head_drop.")) or key == "pos_embed"


class TorchvisionExporter(_VisionExporter):
    """ResNet-18/34/50 trunk as a state dict for ``torchvision.models.resnetXX``."""

    name = "torchvision"
    library = "torchvision"

    def supports(self, encoder: Encoder) -> str | None:
        if isinstance(encoder, ResNetEncoder) and encoder.arch in TORCHVISION_ARCHS:
            return None
        if isinstance(encoder, ResNetEncoder):
            return (f"'{encoder.arch}' (narrow widths) is not a torchvision architecture; use --format timm "
                    "(timm's ResNet takes channels=) or --format safetensors.")
        return f"torchvision export holds ResNet-18/34/50 encoders, not {type(encoder).__name__}; try --format timm."

    def key_map(self, encoder: Encoder) -> dict[str, str]:
        return _resnet_key_map(encoder)  # type: ignore[arg-type]

    def target(self, encoder: Encoder, ctx: ExportContext) -> dict[str, Any]:
        return {"architecture": encoder.arch, "builder": f"torchvision.models.{encoder.arch}",  # type: ignore[attr-defined]
                "builder_kwargs": {"weights": None}, "head": "fc replaced by torch.nn.Identity()",
                "stem": _stem_config(encoder)}  # type: ignore[arg-type]

    def load_snippet(self, out_dir: Path) -> str:
        return (f'import json, torch, torchvision\nfrom safetensors.torch import load_file\n'
                f'cfg = json.load(open("{out_dir}/{CONFIG_FILE}"))\n'
                f'model = getattr(torchvision.models, cfg["architecture"])(weights=None)\n'
                f'model.fc = torch.nn.Identity()\n'
                f'# small-input stem (cfg["stem"]): 3x3/stride-1 conv1, no max-pool\n'
                f'c = cfg["stem"]["conv1"]; model.conv1 = torch.nn.Conv2d(c["in_channels"], c["out_channels"], '
                f'c["kernel_size"], c["stride"], c["padding"], bias=False)\n'
                f'if cfg["stem"]["maxpool"] == "identity": model.maxpool = torch.nn.Identity()\n'
                f'model.load_state_dict(load_file("{out_dir}/{WEIGHTS_FILE}"), strict=True)\n'
                f'# or: from ssl_vision.export import build_torchvision_model; model = build_torchvision_model("{out_dir}")')


class TimmExporter(_VisionExporter):
    """ResNets as timm ``ResNet`` (any widths) and ViTs as timm ``VisionTransformer``."""

    name = "timm"
    library = "timm"

    def supports(self, encoder: Encoder) -> str | None:
        if isinstance(encoder, ResNetEncoder):
            if encoder.arch == "resnet_small":
                widths = [s[0].conv1.out_channels for s in list(encoder.trunk)[1:]]
                if len(widths) != 4 or widths[0] != 64:
                    return (f"resnet_small with widths {widths} has no timm/torchvision counterpart: timm's ResNet takes "
                            "any four stage widths but fixes its plain stem at 64 channels. Train with encoder_kwargs."
                            "widths=[64,128,256,512] or --encoder resnet18 for a portable ResNet, or export "
                            "--format safetensors.")
            return None
        if isinstance(encoder, ViTEncoder):
            return None
        return f"timm export holds ResNet and ViT encoders, not {type(encoder).__name__}."

    def key_map(self, encoder: Encoder) -> dict[str, str]:
        if isinstance(encoder, ResNetEncoder):
            return _resnet_key_map(encoder)
        return {k[len("vit."):]: k for k in encoder.state_dict() if k.startswith("vit.")}

    def target(self, encoder: Encoder, ctx: ExportContext) -> dict[str, Any]:
        if isinstance(encoder, ResNetEncoder):
            stem = _stem_config(encoder)
            if encoder.arch == "resnet_small":
                stages = list(encoder.trunk)[1:]
                kwargs = {"block": "BasicBlock", "layers": [len(s) for s in stages],
                          "channels": [s[0].conv1.out_channels for s in stages]}
            else:
                block, layers = _BLOCKS[encoder.arch]
                kwargs = {"block": block, "layers": layers}
            kwargs.update({"in_chans": stem["conv1"]["in_channels"], "num_classes": 0})
            return {"architecture": encoder.arch, "builder": "timm.models.resnet.ResNet", "builder_kwargs": kwargs,
                    "timm_name": None if encoder.arch == "resnet_small" else encoder.arch, "stem": stem}
        assert isinstance(encoder, ViTEncoder)
        batch = ctx.sample_batch(1)
        if batch is None:
            raise DataError("A ViT export needs the run's image size; the run's data could not be read.")
        h, w = batch["image"].shape[-2:]
        blk = encoder.vit.blocks[0]
        kwargs = {"img_size": [int(h), int(w)], "patch_size": encoder.patch_size, "in_chans": encoder.in_channels,
                  "num_classes": 0, "embed_dim": encoder.embed_dim, "depth": len(encoder.vit.blocks),
                  "num_heads": blk.attn.num_heads, "mlp_ratio": blk.mlp.fc1.out_features / encoder.embed_dim,
                  "class_token": True, "no_embed_class": True,
                  "global_pool": "token" if encoder.pool == "cls" else "avg", "fc_norm": False}
        return {"architecture": "vit", "builder": "timm.models.vision_transformer.VisionTransformer",
                "builder_kwargs": kwargs,
                "pos_embed": "fixed 2-D sine-cosine table for img_size (sslkit ViTs have no learned positions)"}

    def export_state_for(self, encoder: Encoder, target: dict[str, Any]) -> dict[str, torch.Tensor]:
        state = self.export_state(encoder)
        if isinstance(encoder, ViTEncoder):
            h, w = target["builder_kwargs"]["img_size"]
            gh, gw = h // encoder.patch_size, w // encoder.patch_size
            state["pos_embed"] = sincos_pos_embed_2d(gh, gw, encoder.embed_dim).unsqueeze(0).contiguous()
        return state

    def load_snippet(self, out_dir: Path) -> str:
        return (f'from ssl_vision.export import build_timm_model\nmodel = build_timm_model("{out_dir}").eval()\n'
                f'# by hand: build cfg["builder"](**cfg["builder_kwargs"]) from {CONFIG_FILE} (ResNets: block class by name, '
                f'then the stem of cfg["stem"]) and load_state_dict(load_file("{WEIGHTS_FILE}"), strict=True)')


# ---------------------------------------------------------------------- loaders (library-only code)
def _read(folder: str | Path, fmt: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise DataError(f"{folder} is not an export folder: expected {CONFIG_FILE} and {WEIGHTS_FILE}.")
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    if cfg.get("format") != fmt:
        raise DataError(f"{folder} holds a '{cfg.get('format')}' export, not '{fmt}'.")
    return cfg, load_safetensors(folder / WEIGHTS_FILE)


def build_torchvision_model(folder: str | Path) -> nn.Module:
    """torchvision's ResNet of the export's architecture, stem adapted as config.json says, loaded strictly."""
    import torchvision

    cfg, state = _read(folder, "torchvision")
    model = getattr(torchvision.models, cfg["architecture"])(weights=None)
    model.fc = nn.Identity()
    _apply_stem(model, cfg["stem"])
    model.load_state_dict(state, strict=True)
    return model


def build_timm_model(folder: str | Path) -> nn.Module:
    """timm's ResNet or VisionTransformer of a ``timm`` export, loaded strictly."""
    from timm.models import resnet as timm_resnet
    from timm.models.vision_transformer import VisionTransformer

    cfg, state = _read(folder, "timm")
    kwargs = dict(cfg["builder_kwargs"])
    if cfg["architecture"] == "vit":
        kwargs["img_size"] = tuple(kwargs["img_size"])
        model: nn.Module = VisionTransformer(**kwargs)
    else:
        kwargs["block"] = getattr(timm_resnet, kwargs["block"])
        kwargs["layers"] = tuple(kwargs["layers"])
        if "channels" in kwargs:
            kwargs["channels"] = tuple(kwargs["channels"])
        model = _apply_stem(timm_resnet.ResNet(**kwargs), cfg["stem"])
    model.load_state_dict(state, strict=True)
    return model
