"""The wav2vec2 network: frame rate, padding masks, presets, layer outputs."""

from __future__ import annotations

import copy

import pytest
import torch

from ssl_audio.encoders import PRESETS, Wav2Vec2Encoder, count_parameters, masked_group_norm

TINY = {"size": "tiny"}


def test_frame_lengths_follow_the_20ms_hop_and_match_the_network():
    enc = Wav2Vec2Encoder(**TINY).eval()
    assert (enc.receptive_field, enc.hop) == (400, 320)
    for n in (400, 719, 720, 16000, 23456):
        feats, frames = enc.extract(torch.randn(1, n))
        assert frames.item() == feats.shape[1] == (n - 400) // 320 + 1


@pytest.mark.parametrize("mode", ["group_norm", "layer_norm"])
def test_padded_batch_embeds_each_clip_as_if_alone(mode):
    torch.manual_seed(0)
    enc = Wav2Vec2Encoder(**TINY, extractor_mode=mode).eval()
    lengths = torch.tensor([16000, 11000, 5000, 900])
    wave = torch.randn(4, 16000) * (torch.arange(16000)[None, :] < lengths[:, None])
    with torch.no_grad():
        together = enc.embed({"waveform": wave, "lengths": lengths})
        for i, n in enumerate(lengths.tolist()):
            alone = enc(wave[i : i + 1, :n])
            assert torch.allclose(alone[0], together[i], atol=1e-4), (i, (alone[0] - together[i]).abs().max())
        # without lengths the padding is treated as signal and the embedding changes
        ignored = enc(wave)
    assert not torch.allclose(ignored[2], together[2], atol=1e-3)


def test_masked_group_norm_equals_group_norm_without_padding():
    norm = torch.nn.GroupNorm(8, 8)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(3, 8, 50)
    assert torch.allclose(masked_group_norm(x, torch.tensor([50, 50, 50]), norm), norm(x), atol=1e-5)


def test_layer_outputs_and_pooling_options():
    enc = Wav2Vec2Encoder(**{**TINY, "num_layers": 2}).eval()
    wave = torch.randn(2, 8000)
    outs, frames = enc.layer_outputs(wave)
    assert len(outs) == 2 and outs[0].shape == (2, 24, enc.embed_dim) and frames.tolist() == [24, 24]
    enc.pool_layer = 0
    assert torch.allclose(enc(wave), outs[0].mean(1), atol=1e-5)
    enc.pool_layer = "mean"
    assert torch.allclose(enc(wave), torch.stack([o.mean(1) for o in outs]).mean(0), atol=1e-5)


def test_presets_have_the_papers_sizes():
    assert PRESETS["base"]["embed_dim"] == 768 and PRESETS["base"]["num_layers"] == 12
    assert PRESETS["large"]["embed_dim"] == 1024 and PRESETS["large"]["num_layers"] == 24
    small = Wav2Vec2Encoder(size="small")
    assert 1.5e6 < count_parameters(small) < 2.5e6
    assert small.modality == "audio" and small.embed_dim == 192
    copy.deepcopy(small)  # the runner copies the encoder for the random baseline


def test_bad_configuration_is_reported():
    with pytest.raises(ValueError, match="Unknown wav2vec2 size"):
        Wav2Vec2Encoder(size="huge")
    with pytest.raises(ValueError, match="divisible"):
        Wav2Vec2Encoder(embed_dim=100, num_heads=3)
    with pytest.raises(ValueError, match="shorter than one frame"):
        Wav2Vec2Encoder(**TINY).extract(torch.randn(1, 200))
