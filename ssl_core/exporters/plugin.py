"""The core's own exporter plugin: the ``safetensors`` format every encoder supports.

The modality plugins register the formats of each modality's home library (``torchvision``,
``timm``, ``torchaudio``, ``open_clip``, ``transformers``).
"""

from __future__ import annotations

from ssl_core.hookspecs import hookimpl


@hookimpl
def register_exporters(register):  # type: ignore[no-untyped-def]
    """Register the generic safetensors export."""
    register("safetensors", "ssl_core.exporters.native:SafetensorsExporter", modality="any",
             summary="Any encoder: model.safetensors + config.json (+ tokenizer.json), loaded back by sslkit")
