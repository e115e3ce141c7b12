"""Shared fixtures for the vision plugin tests: small real data written to temporary folders."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_core.registry import Registry


@pytest.fixture(scope="session")
def registry() -> Registry:
    """A registry built from the installed entry points (the vision plugin among them)."""
    reg = Registry()
    reg.get("objective", "simclr", modality="vision")  # fails loudly if the plugin did not load
    return reg


@pytest.fixture(scope="session")
def digits_data():
    """The built-in digits at 16x16 (the recipes' default)."""
    from ssl_vision.data import digits

    return digits(image_size=16)


def _digit_images(n_per_class: int, classes: int = 3, size: int = 24) -> list[tuple[np.ndarray, int]]:
    """Real digit scans (from scikit-learn) upsampled to RGB uint8 arrays, with their labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    out = []
    for c in range(classes):
        idx = np.flatnonzero(bunch.target == c)[:n_per_class]
        for i in idx:
            x = torch.tensor(bunch.images[i], dtype=torch.float32)[None, None] / 16.0
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)[0, 0]
            grey = (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            rgb = np.stack([grey, 255 - grey, grey // 2], axis=-1)
            out.append((rgb, c))
    return out


def encode_image(arr: np.ndarray, fmt: str) -> bytes:
    """PNG/JPEG bytes of an RGB uint8 array."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture()
def image_dir(tmp_path: Path) -> Path:
    """root/<class>/*.png|jpg with 3 classes x 6 images and one corrupt file in class '1'."""
    root = tmp_path / "images"
    for k, (arr, c) in enumerate(_digit_images(6)):
        d = root / f"class_{c}"
        d.mkdir(parents=True, exist_ok=True)
        fmt, ext = ("PNG", "png") if k % 2 else ("JPEG", "jpg")
        (d / f"img_{k:03d}.{ext}").write_bytes(encode_image(arr, fmt))
    (root / "class_1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    return root


def add_member(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    """Append one file member to an open tar."""
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


@pytest.fixture()
def tar_member():  # type: ignore[no-untyped-def]
    """The :func:`add_member` helper, for tests that build their own shards."""
    return add_member


@pytest.fixture()
def shard_dir(tmp_path: Path) -> Path:
    """Two WebDataset shards: 3 classes x 6 images (png/jpg + cls + txt), one corrupt jpg member."""
    root = tmp_path / "shards"
    root.mkdir()
    samples = _digit_images(6)
    halves = [samples[0::2], samples[1::2]]
    for s, part in enumerate(halves):
        with tarfile.open(root / f"train-{s:03d}.tar", "w") as tar:
            for k, (arr, c) in enumerate(part):
                key = f"s{s}_{k:04d}"
                fmt, ext = ("PNG", "png") if k % 2 else ("JPEG", "jpg")
                add_member(tar, f"{key}.{ext}", encode_image(arr, fmt))
                add_member(tar, f"{key}.cls", str(c).encode())
                add_member(tar, f"{key}.txt", f"digit {c}".encode())
            if s == 1:
                add_member(tar, "bad_0001.jpg", b"\xff\xd8\xff\xe0 truncated jpeg")
                add_member(tar, "bad_0001.cls", b"1")
                add_member(tar, "bad_0001.txt", b"digit 1")
    return root
