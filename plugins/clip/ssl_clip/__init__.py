"""sslkit-clip: CLIP-style image-text contrastive learning (Radford et al., 2021) for sslkit.

Entry point ``clip`` (:mod:`ssl_clip.plugin`). Main public names: :class:`OpenCLIPEncoder`,
:class:`CLIP`, the data readers in :mod:`ssl_clip.data`, the evaluators in
:mod:`ssl_clip.evaluators`, and :func:`load_exported` to get a trained model back in open_clip.
Names are imported on first access, so loading the plugin (``ssl list``) imports neither torch
nor open_clip.
"""

import importlib as _importlib
from typing import Any

_EXPORTS = {
    "OpenCLIPEncoder": "encoder", "open_clip_encoder": "encoder", "export_open_clip": "export",
    "load_exported": "export", "CLIP": "objective", "clip_contrastive_loss": "objective",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ssl_clip' has no attribute '{name}'")
    return getattr(_importlib.import_module(f"ssl_clip.{_EXPORTS[name]}"), name)
