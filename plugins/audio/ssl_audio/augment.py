"""On-device, per-sample random crops of padded waveform batches.

wav2vec 2.0 and HuBERT pre-train on random crops of each utterance (the papers crop to at most
250k samples, 15.6 s); the crop is the only input augmentation, masking happens in the latent
space inside the objectives. Offsets are drawn from the step's generator, so a resumed run sees
the same crops as an uninterrupted one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ssl_core.interfaces import Augmenter, Batch
from ssl_core.randomness import sample_rand
from ssl_audio.data import SAMPLE_RATE


def random_crop(waveform: Tensor, lengths: Tensor, crop: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Crop each row of ``waveform`` ``[B, L]`` to at most ``crop`` valid samples at a random offset.

    Rows shorter than ``crop`` are kept whole. Returns ``(cropped [B, min(L, crop)], new_lengths)``;
    samples past a row's new length are zero.
    """
    b, max_len = waveform.shape
    width = min(max_len, crop)
    room = (lengths - crop).clamp_min(0)
    u = sample_rand(generator, (b,), waveform.device)  # per utterance, any process count
    offset = torch.floor(u * (room + 1).to(u.dtype)).long().clamp(max=room)
    new_len = lengths.clamp(max=crop)
    pos = torch.arange(width, device=waveform.device)[None, :]
    idx = (offset[:, None] + pos).clamp(max=max_len - 1)
    out = waveform.gather(1, idx) * (pos < new_len[:, None]).to(waveform.dtype)
    return out, new_len


class RandomCrop(Augmenter):
    """Random ``crop_seconds`` crop of every utterance (batched, on the training device)."""

    def __init__(self, crop_seconds: float = 4.0, sample_rate: int = SAMPLE_RATE) -> None:
        if crop_seconds <= 0:
            raise ValueError(f"crop_seconds must be positive, got {crop_seconds}")
        self.crop = int(round(crop_seconds * sample_rate))

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        wave = batch["waveform"]
        lengths = batch.get("lengths")
        if lengths is None:
            lengths = torch.full((wave.shape[0],), wave.shape[1], dtype=torch.long, device=wave.device)
        cropped, new_len = random_crop(wave, lengths, self.crop, generator)
        return {**batch, "waveform": cropped, "lengths": new_len}
