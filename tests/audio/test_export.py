"""The audio export is torchaudio's own wav2vec2_model: strict load, same features on real speech.

Tolerance: atol 1e-4 on frame features and embeddings (measured ~3e-6: the encoder's masked
group norm computes the same statistics as torch's GroupNorm in a different order)."""

from __future__ import annotations

import json

import pytest
import torch
import torchaudio
from safetensors.torch import load_file

from ssl_audio.encoders import Wav2Vec2Encoder
from ssl_audio.export import TorchaudioExporter, build_torchaudio_model, normalize_waveform
from ssl_core.exporters import ExportContext
from ssl_core.init_weights import init_encoder

ATOL = 1e-4


@pytest.mark.parametrize("variant", [
    {},  # group-norm feature encoder, post-LN Transformer (BASE / HuBERT BASE layout)
    {"extractor_mode": "layer_norm", "conv_bias": True, "layer_norm_first": True},  # LARGE (LV-60k) layout
])
def test_torchaudio_model_reproduces_features_and_embeddings(tmp_path, tiny_words, variant) -> None:
    torch.manual_seed(0)
    enc = Wav2Vec2Encoder(size="tiny", num_layers=2, **variant).eval()
    ctx = ExportContext(config={"encoder": "wav2vec2_small", "objective": "hubert", "modality": "audio"},
                        data=tiny_words, results={"trained": {"knn_top1": 0.7}})
    out = TorchaudioExporter().export(enc, tmp_path / "ta", ctx)
    cfg = json.loads((out / "config.json").read_text())
    model = torchaudio.models.wav2vec2_model(**cfg["builder_kwargs"])  # plain torchaudio, from the saved config
    model.load_state_dict(load_file(out / "model.safetensors"), strict=True)
    model.eval()
    clips = [tiny_words.eval_test[i]["waveform"] for i in range(3)]  # real speech, cut to the shortest
    wave = torch.stack([c[:min(len(c) for c in clips)] for c in clips])
    with torch.no_grad():
        feats, _ = model(normalize_waveform(wave))
        torch.testing.assert_close(feats, enc.forward_features(wave), atol=ATOL, rtol=0)
        layers, _ = model.extract_features(normalize_waveform(wave))
        pooled = torch.stack([h.mean(1) for h in layers]).mean(0)  # the encoder's pool_layer="mean"
        torch.testing.assert_close(pooled, enc(wave), atol=ATOL, rtol=0)
    assert build_torchaudio_model(out).encoder.transformer.layers[0] is not None
    assert "library_name: torchaudio" in (out / "README.md").read_text()


def test_init_from_torchaudio_state_dict(tmp_path, registry) -> None:
    enc = Wav2Vec2Encoder(size="tiny")
    from ssl_audio.export import builder_kwargs

    theirs = torchaudio.models.wav2vec2_model(**builder_kwargs(enc))
    torch.save(theirs.state_dict(), tmp_path / "w2v.pt")
    report = init_encoder(enc, tmp_path / "w2v.pt", registry)
    assert report.complete and report.mapping == "torchaudio"
    for k, v in theirs.state_dict().items():
        assert torch.equal(enc.model.state_dict()[k], v), k
