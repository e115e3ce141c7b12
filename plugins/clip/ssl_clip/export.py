"""Export a trained model in open_clip's own formats, and load it back with open_clip.

``export_open_clip(encoder, out_dir)`` writes into ``out_dir`` (``RUN_DIR/open_clip`` after
``ssl run``):

- ``open_clip_pytorch_model.bin``: the open_clip model's state dict (``torch.save``);
- ``open_clip_config.json``: ``{"model_cfg": ..., "preprocess_cfg": ...}``, the layout open_clip
  reads from ``local-dir:`` folders and hub repositories;
- ``<name>.json``: the bare model config under a unique name (``<model>-sslkit-<config hash>``), for
  ``open_clip.add_model_config``.

Two ways back, neither of which needs sslkit at inference time::

    model = open_clip.create_model("local-dir:RUN_DIR/open_clip")           # plain open_clip
    model, tokenizer = ssl_clip.load_exported("RUN_DIR")                   # the helper below

Images fed to the loaded model must be standardised with ``preprocess_cfg``'s mean/std (grey
images repeated to three channels), exactly as :meth:`OpenCLIPEncoder.preprocess` does.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from ssl_core.checkpoint import atomic_torch_save, atomic_write_text
from ssl_core.errors import DataError
from ssl_core.exporters import ExportContext, Exporter, write_model_card

WEIGHTS_FILE = "open_clip_pytorch_model.bin"
CONFIG_FILE = "open_clip_config.json"
EXPORT_DIR = "open_clip"


def export_open_clip(encoder: Any, out_dir: str | Path) -> Path:
    """Write ``encoder.model`` (an OpenCLIPEncoder's open_clip model) for open_clip to load; return the dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_cfg = encoder.export_config()
    blob = json.dumps(model_cfg, sort_keys=True).encode()
    name = f"{encoder.model_name}-sslkit-{hashlib.sha1(blob).hexdigest()[:10]}"
    preprocess = {
        "size": encoder.image_size,
        "mean": [float(v) for v in encoder.mean.flatten().tolist()],
        "std": [float(v) for v in encoder.std.flatten().tolist()],
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    }
    state = {k: v.detach().cpu() for k, v in encoder.model.state_dict().items()}
    atomic_torch_save(state, out / WEIGHTS_FILE)
    atomic_write_text(out / CONFIG_FILE, json.dumps(
        {"model_cfg": model_cfg, "preprocess_cfg": preprocess,
         "sslkit": {"config_name": name, "base_model": encoder.model_name,
                    "context_length": encoder.context_length}}, indent=2))
    atomic_write_text(out / f"{name}.json", json.dumps(model_cfg, indent=2))
    return out


def _export_dir(path: str | Path) -> Path:
    p = Path(path)
    for cand in (p, p / EXPORT_DIR):
        if (cand / CONFIG_FILE).is_file() and (cand / WEIGHTS_FILE).is_file():
            return cand
    raise DataError(f"No exported open_clip model at {p}: expected {CONFIG_FILE} and {WEIGHTS_FILE} there or in "
                    f"{p / EXPORT_DIR}. Export happens at the end of `ssl run --objective clip`.")


def load_exported(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Any]:
    """(open_clip model, tokenizer) from a run directory or export folder, via open_clip's loader.

    Registers the exported config with ``open_clip.add_model_config`` and calls
    ``open_clip.create_model(name, pretrained=<weights file>)``; no network access.
    """
    import open_clip

    from ssl_clip.encoder import _quiet_open_clip

    folder = _export_dir(path)
    meta = json.loads((folder / CONFIG_FILE).read_text())
    name = meta["sslkit"]["config_name"]
    if not (folder / f"{name}.json").is_file():
        raise DataError(f"{folder / (name + '.json')} is missing; re-export the model (the folder is incomplete).")
    open_clip.add_model_config(folder / f"{name}.json")
    with _quiet_open_clip():
        model = open_clip.create_model(name, pretrained=str(folder / WEIGHTS_FILE), device=device,
                                       pretrained_image=False, pretrained_text=False)
    model.eval()
    tokenizer = open_clip.get_tokenizer(name, context_length=meta["sslkit"].get("context_length"))
    return model, tokenizer


def exported_preprocess_cfg(path: str | Path) -> dict[str, Any]:
    """The image size, mean and std the exported model expects."""
    return json.loads((_export_dir(path) / CONFIG_FILE).read_text())["preprocess_cfg"]



class OpenCLIPExporter(Exporter):
    """``ssl export RUN --format open_clip``: the folder :func:`export_open_clip` writes, plus a model card."""

    name = "open_clip"
    library = "open_clip"

    def supports(self, encoder: Any) -> str | None:
        from ssl_clip.encoder import OpenCLIPEncoder

        return None if isinstance(encoder, OpenCLIPEncoder) else "open_clip export holds CLIP encoders only."

    def key_map(self, encoder: Any) -> dict[str, str]:
        return {k[len("model."):]: k for k in encoder.state_dict() if k.startswith("model.")}

    def constant_keys(self, encoder: Any) -> list[str]:
        return [k for k in encoder.state_dict() if not k.startswith("model.")]

    def export(self, encoder: Any, out_dir: Path, ctx: ExportContext) -> Path:
        export_open_clip(encoder, out_dir)
        write_model_card(out_dir, self, ctx)
        return out_dir

    def load_snippet(self, out_dir: Path) -> str:
        return (f'import open_clip\nmodel = open_clip.create_model("local-dir:{out_dir}").eval()\n'
                f'# images: standardise with preprocess_cfg mean/std from {CONFIG_FILE}')
