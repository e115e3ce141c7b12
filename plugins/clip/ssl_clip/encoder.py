"""Image-text encoder: an sslkit :class:`~ssl_core.interfaces.Encoder` around an open_clip model.

The towers are open_clip's (Ilharco et al., OpenCLIP, 2021; architecture of Radford et al.,
"Learning Transferable Visual Models From Natural Language Supervision", ICML 2021): a ViT (or
ModifiedResNet) image tower and a causal transformer text tower, each followed by a linear
projection into a shared embedding space, plus the learned logit scale.

Models are always built from a config with random weights: nothing is downloaded. Any config
open_clip knows works (``open_clip.list_models()``), plus the plugin's own
``sslkit-clip-tiny`` (~8 M parameters, most of them the 49,408-token embedding table) sized for
CPU runs. Configs whose text tower or tokenizer lives on the Hugging Face hub are rejected,
because their tokenizer (and, by default, their text weights) would have to be downloaded; the
CLIP BPE tokenizer (``open_clip.SimpleTokenizer``) ships inside the open_clip wheel and works
offline.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_core.errors import ConfigError
from ssl_core.interfaces import Batch, Encoder

CONFIG_DIR = Path(__file__).parent / "model_configs"
TINY_MODEL = "sslkit-clip-tiny"
INIT_LOGIT_SCALE = math.log(1 / 0.07)
"""CLIP's initial temperature 0.07 (Radford et al., 2021, Sec. 2.5, after Wu et al., 2018)."""
# open_clip's defaults, the statistics of OpenAI's training images
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

_registered = False
_TOKENIZERS: dict[tuple[str, int], Any] = {}


def register_builtin_configs() -> None:
    """Register the plugin's JSON model configs with open_clip (idempotent)."""
    global _registered
    if not _registered:
        import open_clip

        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


@contextlib.contextmanager
def _quiet_open_clip() -> Iterator[None]:
    """Silence open_clip's "initialized randomly" warning: random init is what we ask for."""

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "No pretrained weights loaded" not in record.getMessage()

    root = logging.getLogger()
    flt = _Drop()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def resolve_model_config(model: str, image_size: int | None = None, context_length: int | None = None) -> dict[str, Any]:
    """The open_clip config of ``model`` with the size overrides applied.

    Raises a :class:`ConfigError` naming the known models when ``model`` is unknown, and one that
    explains the offline rule when the config needs a Hugging Face download.
    """
    import open_clip

    register_builtin_configs()
    cfg = open_clip.get_model_config(model)
    if cfg is None:
        known = ", ".join(m for m in open_clip.list_models() if not m.startswith(("EVA", "convnext_xx")))
        raise ConfigError(
            f"open_clip has no model config named '{model}'. Set encoder_kwargs.model to one of: "
            f"{TINY_MODEL} (CPU default), {known}; or register your own JSON with open_clip.add_model_config."
        )
    text_cfg, vision_cfg = cfg.get("text_cfg", {}), cfg.get("vision_cfg", {})
    if text_cfg.get("hf_model_name") or text_cfg.get("hf_tokenizer_name"):
        raise ConfigError(
            f"open_clip model '{model}' uses a Hugging Face text tower/tokenizer "
            f"('{text_cfg.get('hf_tokenizer_name') or text_cfg.get('hf_model_name')}'), which must be downloaded; "
            "sslkit builds models offline. Pick a config with the built-in CLIP BPE tokenizer "
            f"(e.g. {TINY_MODEL}, ViT-B-32, ViT-B-16, RN50)."
        )
    if vision_cfg.get("timm_model_name"):
        vision_cfg["timm_model_pretrained"] = False
    if image_size is not None:
        vision_cfg["image_size"] = int(image_size)
    if context_length is not None:
        text_cfg["context_length"] = int(context_length)
    return cfg


def get_tokenizer(model: str, context_length: int) -> Any:
    """open_clip's tokenizer for ``model`` (cached per process; the BPE vocab ships with open_clip)."""
    import open_clip

    key = (model, int(context_length))
    if key not in _TOKENIZERS:
        register_builtin_configs()
        _TOKENIZERS[key] = open_clip.get_tokenizer(model, context_length=int(context_length))
    return _TOKENIZERS[key]


class OpenCLIPEncoder(Encoder):
    """Both towers of an open_clip CLIP model behind the sslkit Encoder contract.

    ``forward(images)`` / :meth:`embed` give image features (what kNN, linear probe and health
    evaluate); :meth:`encode_text` gives text features in the same space, for retrieval and
    zero-shot evaluators. Images arrive as uint8 ``[B, C, H, W]`` (or float in [0, 1]); grey
    images are repeated to three channels, resized to the tower's input size if needed and
    standardised with ``mean``/``std`` inside the encoder.
    """

    modality = "image-text"
    input_key = "image"

    def __init__(
        self,
        model: str = TINY_MODEL,
        image_size: int | None = None,
        context_length: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        init_logit_scale: float = INIT_LOGIT_SCALE,
    ) -> None:
        super().__init__()
        import open_clip

        self.model_name = model
        self.model_cfg = resolve_model_config(model, image_size, context_length)
        register_builtin_configs()
        with _quiet_open_clip():
            self.model = open_clip.create_model(
                model, pretrained=None, pretrained_image=False, pretrained_text=False,
                force_image_size=image_size, force_context_length=context_length,
                init_logit_scale=init_logit_scale,
            )
        size = self.model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.context_length = int(self.model_cfg["text_cfg"].get("context_length", 77))
        self.embed_dim = int(self.model_cfg["embed_dim"])
        mean = list(mean) if mean is not None else list(OPENAI_MEAN)
        std = list(std) if std is not None else list(OPENAI_STD)
        if len(mean) == 1:
            mean, std = mean * 3, std * 3
        if len(mean) != 3 or len(std) != 3:
            raise ConfigError(f"encoder_kwargs.mean/std need 1 or 3 values, got mean={mean}, std={std}.")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    # ------------------------------------------------------------------ helpers
    @property
    def tokenizer(self) -> Any:
        """The model's open_clip tokenizer (shared, not copied with the module)."""
        return get_tokenizer(self.model_name, self.context_length)

    @property
    def logit_scale(self) -> torch.nn.Parameter:
        """The learned log inverse temperature (open_clip's ``model.logit_scale``)."""
        return self.model.logit_scale

    def preprocess(self, images: Tensor) -> Tensor:
        """uint8/float ``[B, C, H, W]`` -> standardised float ``[B, 3, S, S]`` for the image tower."""
        if images.ndim != 4:
            raise ValueError(f"Expected an image batch [B, C, H, W], got shape {tuple(images.shape)}.")
        x = images.float().div(255.0) if images.dtype == torch.uint8 else images.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise ValueError(f"Images must have 1 or 3 channels, got {x.shape[1]}.")
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    def tokenize(self, captions: Sequence[str] | Tensor) -> Tensor:
        """Token ids ``[B, context_length]`` on the model's device (tensors pass through)."""
        if isinstance(captions, Tensor):
            return captions.to(self.mean.device)
        if isinstance(captions, str):
            captions = [captions]
        return self.tokenizer(list(captions)).to(self.mean.device)

    # ------------------------------------------------------------------ towers
    def encode_image(self, images: Tensor, normalize: bool = False) -> Tensor:
        """Projected image features ``[B, embed_dim]`` (L2-normalised if ``normalize``)."""
        return self.model.encode_image(self.preprocess(images), normalize=normalize)

    def encode_text(self, text: Sequence[str] | Tensor, normalize: bool = False) -> Tensor:
        """Projected text features ``[B, embed_dim]`` from captions or token ids."""
        return self.model.encode_text(self.tokenize(text), normalize=normalize)

    def forward(self, x: Tensor) -> Tensor:
        """Image features (un-normalised), the representation evaluated by the core's probes."""
        return self.encode_image(x)

    def embed(self, batch: Batch) -> Tensor:
        """Image features of an evaluation batch (``batch["image"]``)."""
        return self.encode_image(batch[self.input_key])

    def export_config(self) -> dict[str, Any]:
        """A deep copy of the open_clip model config this encoder was built from."""
        return copy.deepcopy(self.model_cfg)


def open_clip_encoder(
    model: str = TINY_MODEL,
    image_size: int | None = None,
    context_length: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    init_logit_scale: float = INIT_LOGIT_SCALE,
) -> OpenCLIPEncoder:
    """open_clip image and text towers (random init, offline); default the CPU-sized tiny config."""
    return OpenCLIPEncoder(model, image_size, context_length, mean, std, init_logit_scale)
