"""The ``safetensors`` export: any sslkit encoder's weights as safetensors, rebuilt by sslkit.

The folder holds ``model.safetensors`` (the encoder's state dict, no pickle), ``config.json``
(the registered encoder name and its keyword arguments), the run's ``tokenizer.json`` when it
has one (text), and the model card. :func:`load_exported_encoder` rebuilds the encoder through
the registry and loads the weights strictly; it works for every modality and is the text
plugin's export (``ssl_text.load_exported`` adds the tokenizer).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ssl_core.errors import DataError
from ssl_core.exporters import (
    CONFIG_FILE, WEIGHTS_FILE, ExportContext, Exporter, load_safetensors, save_safetensors, write_config,
    write_model_card,
)
from ssl_core.interfaces import Encoder

SIDECAR_FILES = ("tokenizer.json",)
"""Files of the run directory that an encoder needs to be used, copied into the export."""


class SafetensorsExporter(Exporter):
    """Encoder weights as ``model.safetensors`` + ``config.json``; loads back into sslkit."""

    name = "safetensors"
    library = "sslkit"

    def supports(self, encoder: Encoder) -> str | None:
        return None

    def key_map(self, encoder: Encoder) -> dict[str, str]:
        return {k: k for k in encoder.state_dict()}

    def constant_keys(self, encoder: Encoder) -> list[str]:
        return []

    def export(self, encoder: Encoder, out_dir: Path, ctx: ExportContext) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_safetensors(self.export_state(encoder), out_dir / WEIGHTS_FILE, {"format": "pt", "sslkit_encoder": str(ctx.config.get("encoder"))})
        write_config(out_dir, self, ctx, {"weights": WEIGHTS_FILE})
        if ctx.run_dir is not None:
            for name in SIDECAR_FILES:
                if (ctx.run_dir / name).is_file():
                    shutil.copyfile(ctx.run_dir / name, out_dir / name)
        write_model_card(out_dir, self, ctx)
        return out_dir

    def load_snippet(self, out_dir: Path) -> str:
        return (f'from ssl_core.exporters.native import load_exported_encoder\n'
                f'encoder = load_exported_encoder("{out_dir}").eval()  # rebuilt via the installed sslkit plugin')


def load_exported_encoder(path: str | Path, registry: object = None) -> Encoder:
    """Rebuild the encoder of a ``safetensors`` export folder and load its weights strictly."""
    from ssl_core.registry import get_registry

    folder = Path(path)
    cfg_path = folder / CONFIG_FILE
    if not cfg_path.is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise DataError(f"{folder} is not a safetensors export: expected {CONFIG_FILE} and {WEIGHTS_FILE}. "
                        "Write one with `ssl export RUN --format safetensors`.")
    meta = json.loads(cfg_path.read_text())["sslkit"]
    reg = registry or get_registry()
    spec = reg.get("encoder", meta["encoder"], modality=meta.get("modality"))  # type: ignore[attr-defined]
    encoder = spec.build(**meta.get("encoder_kwargs", {}))
    encoder.load_state_dict(load_safetensors(folder / WEIGHTS_FILE), strict=True)
    return encoder
