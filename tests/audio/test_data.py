"""Audio I/O: resampling, mix-down, folder reading (wav/flac, rates, corrupt files), padding."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from ssl_audio.augment import RandomCrop, random_crop
from ssl_audio.data import audio_folder, load_audio, pad_collate, padding_mask, resample
from ssl_core.errors import DataError


def _sine(freq: float, sr: int, seconds: float) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x: torch.Tensor, sr: int) -> float:
    spec = torch.fft.rfft(x * torch.hann_window(x.shape[0]))
    return float(spec.abs().argmax()) * sr / x.shape[0]


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
def test_resampling_keeps_pitch_and_duration(tmp_path, sr):
    path = tmp_path / f"tone_{sr}.wav"
    sf.write(path, _sine(440.0, sr, 0.5), sr)
    x = load_audio(path)
    assert x.ndim == 1 and x.dtype == torch.float32
    assert abs(x.shape[0] - 8000) <= 1  # 0.5 s at 16 kHz
    assert _peak_hz(x, 16000) == pytest.approx(440.0, abs=4.0)
    assert x.abs().max() == pytest.approx(0.5, abs=0.03)  # amplitude preserved


def test_resampling_removes_content_above_the_new_nyquist():
    sr = 48000
    tone = torch.from_numpy(_sine(12000.0, sr, 0.5))  # above 8 kHz: must not alias into the band
    y = resample(tone, sr, 16000)
    assert y[100:-100].abs().max() < 0.02  # (the first and last few samples see the edge)


def test_stereo_is_mixed_down_to_the_channel_mean(tmp_path):
    sr = 16000
    left, right = _sine(300, sr, 0.25), _sine(700, sr, 0.25)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, right], 1), sr, subtype="PCM_24")
    x = load_audio(path)
    assert torch.allclose(x, torch.from_numpy((left + right) / 2), atol=1e-4)


def test_folder_reader_handles_formats_rates_channels_and_skips_corrupt_file(speech_folder):
    with pytest.warns(UserWarning, match="broken.wav"):
        dm = audio_folder(str(speech_folder), test_fraction=0.25)
    assert dm.class_names == ["no", "seven", "yes"] and dm.num_classes == 3
    n_files = len(list(speech_folder.rglob("clip*")))
    assert len(dm.eval_train) + len(dm.eval_test) == n_files  # every readable file, none of the broken one
    assert {p.suffix for p in speech_folder.rglob("clip*")} == {".wav", ".flac"}
    for ds in (dm.train, dm.eval_test):
        for i in range(len(ds)):
            s = ds[i]
            assert s["waveform"].ndim == 1 and 0.15 * 16000 < s["waveform"].shape[0] < 16000
            assert s["label"] in (0, 1, 2)
    batch = dm.collate([dm.train[i] for i in range(4)])
    assert batch["waveform"].shape[0] == 4 and batch["lengths"].max() == batch["waveform"].shape[1]


def test_folder_reader_matches_the_source_clip_after_resampling(speech_folder, tiny_words):
    # clip000 was written at 8 kHz in stereo (right = 0.5 * left): reading it back at 16 kHz
    # gives 0.75 * the band-limited original
    src = tiny_words.train[0]["waveform"]
    word = tiny_words.class_names[tiny_words.train[0]["label"]]
    back = load_audio(speech_folder / word / "clip000.wav")
    assert abs(back.shape[0] - src.shape[0]) <= 2
    ref = 0.75 * resample(resample(src, 16000, 8000), 8000, 16000)
    n = min(back.shape[0], ref.shape[0])
    assert torch.corrcoef(torch.stack([back[:n], ref[:n]]))[0, 1] > 0.99


def test_decode_failure_at_read_time_is_reported_and_skipped(tmp_path):
    from ssl_audio.data import AudioFolderDataset, AudioItem

    good = tmp_path / "good.wav"
    sf.write(good, _sine(200, 16000, 0.3), 16000)
    bad = tmp_path / "gone.flac"
    ds = AudioFolderDataset([AudioItem(bad, 0, -1, 0), AudioItem(good, 0, -1, 1)])
    with pytest.warns(UserWarning, match="gone.flac"):
        s = ds[0]
    assert s["label"] == 1  # the next readable item stands in
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds[0]  # reported once only


def test_unlabelled_folder_and_long_files_are_segmented(tmp_path):
    sf.write(tmp_path / "long.wav", _sine(220, 22050, 25.0), 22050)
    sf.write(tmp_path / "short.flac", _sine(220, 16000, 1.0), 16000)
    dm = audio_folder(str(tmp_path), segment_seconds=10.0)
    assert dm.eval_train is None and dm.num_classes is None
    lengths = sorted(dm.train[i]["waveform"].shape[0] for i in range(len(dm.train)))
    assert len(lengths) == 4  # 10 + 10 + 5 s segments of the long file, plus the short file
    assert lengths[-1] == 160000 and lengths[0] == 16000


def test_missing_or_empty_folder_errors_say_what_to_do(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        audio_folder(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="No audio files found under .*following symbolic links"):
        audio_folder(str(tmp_path))


def test_pad_collate_pads_with_zeros_and_returns_lengths():
    samples = [{"waveform": torch.ones(5), "label": 0}, {"waveform": torch.ones(3), "label": 2}]
    b = pad_collate(samples)
    assert b["waveform"].shape == (2, 5)
    assert b["lengths"].tolist() == [5, 3] and b["label"].tolist() == [0, 2]
    assert b["waveform"][1, 3:].abs().sum() == 0 and b["waveform"][1, :3].sum() == 3
    assert padding_mask(b["lengths"], 5).tolist() == [[False] * 5, [False] * 3 + [True] * 2]


def test_random_crop_takes_contiguous_slices_and_is_seeded():
    wave = torch.arange(100, dtype=torch.float32).repeat(3, 1)
    lengths = torch.tensor([100, 40, 10])
    out, new_len = random_crop(wave, lengths, 30, torch.Generator().manual_seed(0))
    assert out.shape == (3, 30) and new_len.tolist() == [30, 30, 10]
    for row, n, full in zip(out, new_len.tolist(), lengths.tolist()):
        seg = row[:n]
        assert torch.equal(seg, torch.arange(seg[0], seg[0] + n, dtype=torch.float32))  # contiguous
        assert seg[-1] < full  # never reads padding
        assert row[n:].abs().sum() == 0
    again, _ = random_crop(wave, lengths, 30, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    starts = {int(random_crop(wave, lengths, 30, torch.Generator().manual_seed(s))[0][0, 0]) for s in range(20)}
    assert len(starts) > 5  # offsets vary with the seed
    batch = RandomCrop(crop_seconds=30 / 16000)({"waveform": wave, "lengths": lengths}, torch.Generator())
    assert batch["waveform"].shape == (3, 30)
