"""Fixtures for the audio plugin's tests: a tiny real spoken-word set and folders made from it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

TINY_WORDS = dict(words=["yes", "no", "seven"], accents=["en-us", "en-gb-x-rp"], variants=["m1", "f3"],
                  rates=[150], pitches=[40, 70])


@pytest.fixture(scope="session")
def words_cache(tmp_path_factory) -> str:
    """The spoken-word cache of this session (a temporary one; benchmarks/mutation.py runs these
    tests once per mutant and names one cache for all runs)."""
    return os.environ.get("SSLKIT_TEST_WORDS_CACHE") or str(tmp_path_factory.mktemp("sslkit-cache"))


@pytest.fixture(scope="session")
def tiny_words(words_cache):
    """24 clips: 3 words x 4 voices x 2 pitches, synthesised by eSpeak NG into a temporary cache."""
    from ssl_audio.data import spoken_words

    return spoken_words(cache_dir=words_cache, **TINY_WORDS)


@pytest.fixture(scope="session")
def speech_folder(tiny_words, tmp_path_factory) -> Path:
    """Class sub-folders of real speech in mixed formats: wav and flac, mono and stereo, at
    8, 22.05, 44.1 and 48 kHz, plus one corrupt file."""
    import soundfile as sf

    from ssl_audio.data import resample

    root = tmp_path_factory.mktemp("speech")
    names = ["yes", "no", "seven"]
    rates = [8000, 22050, 44100, 48000]
    ds = tiny_words.train
    for i in range(len(ds)):
        s = ds[i]
        word = names[s["label"]]
        (root / word).mkdir(exist_ok=True)
        sr = rates[i % len(rates)]
        wav = resample(s["waveform"], 16000, sr).numpy()
        if i % 3 == 0:  # stereo: the second channel quieter
            wav = np.stack([wav, 0.5 * wav], axis=1)
        fmt = "flac" if i % 2 else "wav"
        sf.write(root / word / f"clip{i:03d}.{fmt}", wav, sr, subtype="PCM_16")
    (root / "no" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(200)))
    return root
