"""sslkit-clip: CLIP-style image-text contrastive learning (Radford et al., 2021) for sslkit.

Entry point ``clip`` (:mod:`ssl_clip.plugin`). Main public names: :class:`OpenCLIPEncoder`,
:class:`CLIP`, the data readers in :mod:`ssl_clip.data`, the evaluators in
:mod:`ssl_clip.evaluators`, and :func:`load_exported` to get a trained model back in open_clip.
"""

from ssl_clip.encoder import OpenCLIPEncoder, open_clip_encoder
from ssl_clip.export import export_open_clip, load_exported
from ssl_clip.objective import CLIP, clip_contrastive_loss

__all__ = ["CLIP", "OpenCLIPEncoder", "clip_contrastive_loss", "export_open_clip", "load_exported", "open_clip_encoder"]
