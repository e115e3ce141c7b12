"""Audio export: the encoder's network as a plain ``torchaudio.models.Wav2Vec2Model``.

The encoder *is* ``torchaudio.models.wav2vec2_model(...)`` (wav2vec 2.0 and HuBERT share it;
torchaudio's ``hubert_base`` returns the same class), so the export is that model's own state
dict plus the builder's keyword arguments in ``config.json``::

    model = torchaudio.models.wav2vec2_model(**cfg["builder_kwargs"])
    model.load_state_dict(load_file("model.safetensors"), strict=True)

What the encoder does around it, stated in ``preprocess``: each waveform (16 kHz mono) is
standardised to zero mean and unit variance over its samples (``(x - mean) / sqrt(var + 1e-5)``)
before the CNN; with padding, the encoder normalises over valid samples and frames only, so the
torchaudio model reproduces it exactly on unpadded batches. ``model(x)[0]`` is the last layer's
frame features; ``model.extract_features(x)[0]`` every layer's.
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
from ssl_audio.encoders import Wav2Vec2Encoder


def builder_kwargs(encoder: Wav2Vec2Encoder) -> dict[str, Any]:
    """``torchaudio.models.wav2vec2_model`` keyword arguments that rebuild ``encoder.model``."""
    c = encoder.config
    return dict(
        extractor_mode=c["extractor_mode"], extractor_conv_layer_config=[list(x) for x in c["conv_layers"]],
        extractor_conv_bias=c["conv_bias"], encoder_embed_dim=c["embed_dim"],
        encoder_projection_dropout=c["projection_dropout"], encoder_pos_conv_kernel=c["pos_conv_kernel"],
        encoder_pos_conv_groups=c["pos_conv_groups"], encoder_num_layers=c["num_layers"],
        encoder_num_heads=c["num_heads"], encoder_attention_dropout=c["attention_dropout"],
        encoder_ff_interm_features=c["ff_dim"], encoder_ff_interm_dropout=c["ff_dropout"],
        encoder_dropout=c["dropout"], encoder_layer_norm_first=c["layer_norm_first"],
        encoder_layer_drop=c["layer_drop"], aux_num_out=None,
    )


class TorchaudioExporter(Exporter):
    """wav2vec 2.0 / HuBERT encoder as ``torchaudio.models.wav2vec2_model`` weights + config."""

    name = "torchaudio"
    library = "torchaudio"

    def supports(self, encoder: Encoder) -> str | None:
        if isinstance(encoder, Wav2Vec2Encoder):
            return None
        return f"torchaudio export holds wav2vec 2.0 / HuBERT encoders, not {type(encoder).__name__}."

    def key_map(self, encoder: Encoder) -> dict[str, str]:
        return {k[len("model."):]: k for k in encoder.state_dict() if k.startswith("model.")}

    def constant_keys(self, encoder: Encoder) -> list[str]:
        return []

    def ignored_keys(self, key: str) -> bool:
        return key.startswith("aux.")  # a fine-tuned model's CTC head

    def export(self, encoder: Encoder, out_dir: Path, ctx: ExportContext) -> Path:
        reason = self.supports(encoder)
        if reason:
            raise ConfigError(reason)
        assert isinstance(encoder, Wav2Vec2Encoder)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_safetensors(self.export_state(encoder), out_dir / WEIGHTS_FILE, {"format": "pt"})
        target = {"builder": "torchaudio.models.wav2vec2_model", "builder_kwargs": builder_kwargs(encoder),
                  "weights": WEIGHTS_FILE,
                  "preprocess": {"sample_rate": 16000, "normalize_waveform": encoder.normalize_waveform,
                                 "normalize": "(x - mean) / sqrt(var + 1e-5) per utterance over its samples"},
                  "pooling": {"pool_layer": encoder.pool_layer,
                              "embedding": "mean over frames of every layer's output, averaged over layers"
                              if encoder.pool_layer == "mean" else "mean over frames of one layer's output"}}
        write_config(out_dir, self, ctx, target)
        write_model_card(out_dir, self, ctx)
        return out_dir

    def load_snippet(self, out_dir: Path) -> str:
        return (f'import json, torchaudio\nfrom safetensors.torch import load_file\n'
                f'cfg = json.load(open("{out_dir}/{CONFIG_FILE}"))\n'
                f'model = torchaudio.models.wav2vec2_model(**cfg["builder_kwargs"]).eval()\n'
                f'model.load_state_dict(load_file("{out_dir}/{WEIGHTS_FILE}"), strict=True)\n'
                f'x = (wave - wave.mean(-1, keepdim=True)) / (wave.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt()\n'
                f'features, _ = model(x)  # [batch, frames, dim]')


def build_torchaudio_model(folder: str | Path) -> nn.Module:
    """The export's ``torchaudio.models.wav2vec2_model``, weights loaded strictly (eval mode)."""
    import torchaudio

    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise DataError(f"{folder} is not a torchaudio export: expected {CONFIG_FILE} and {WEIGHTS_FILE}.")
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    model = torchaudio.models.wav2vec2_model(**cfg["builder_kwargs"])
    model.load_state_dict(load_safetensors(folder / WEIGHTS_FILE), strict=True)
    return model.eval()


def normalize_waveform(wave: torch.Tensor) -> torch.Tensor:
    """The encoder's input standardisation for unpadded ``[B, L]`` waveforms."""
    mean = wave.mean(-1, keepdim=True)
    var = wave.var(-1, unbiased=False, keepdim=True)
    return (wave - mean) / torch.sqrt(var + 1e-5)
