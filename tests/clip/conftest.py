"""Shared fixtures for the image-text (CLIP) plugin tests: real digit images written to disk."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_core.registry import Registry


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread per test module (set before module fixtures that train): on the shared
    2-core machine two threads oversubscribe badly. Restored afterwards for other test folders."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def registry() -> Registry:
    """A registry from the installed entry points; fails loudly if the clip plugin did not load."""
    reg = Registry()
    reg.get("objective", "clip", modality="image-text")
    return reg


@pytest.fixture(scope="session")
def digit_data():
    """The built-in digit captions (the recipe's default data)."""
    from ssl_clip.data import digit_captions

    return digit_captions()


def _digit_rgb(n_per_class: int, classes: int = 3, size: int = 24) -> list[tuple[np.ndarray, int]]:
    """Real digit scans (scikit-learn) as RGB uint8 arrays ``[size, size, 3]``, with labels."""
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    out = []
    for c in range(classes):
        for i in np.flatnonzero(bunch.target == c)[:n_per_class]:
            grey = (bunch.images[i] / 16 * 255).astype(np.uint8)
            im = Image.fromarray(grey).resize((size, size), Image.BILINEAR).convert("RGB")
            out.append((np.asarray(im), c))
    return out


def _png_bytes(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


WORDS = ["zero", "one", "two"]


@pytest.fixture
def csv_pairs_dir(tmp_path: Path) -> Path:
    """``pairs.csv`` (image,caption,label) with 10 real digit PNGs per class under ``imgs/``."""
    (tmp_path / "imgs").mkdir()
    rows = ["image,caption,label"]
    for k, (arr, c) in enumerate(_digit_rgb(10)):
        (tmp_path / "imgs" / f"{k:03d}.png").write_bytes(_png_bytes(arr))
        rows.append(f"imgs/{k:03d}.png,\"a handwritten {WORDS[c]}, number {k}\",{WORDS[c]}")
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def _write_shard(path: Path, samples: list[tuple[str, bytes | None, str | None, str | None]]) -> Path:
    """A plain tar shard of KEY.png / KEY.txt / KEY.cls members (None leaves a member out)."""
    with tarfile.open(path, "w") as tar:
        for key, img, txt, cls in samples:
            for ext, payload in (("png", img), ("txt", txt.encode() if txt is not None else None),
                                 ("cls", cls.encode() if cls is not None else None)):
                if payload is None:
                    continue
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return path


@pytest.fixture(scope="session")
def digit_rgb():
    """``digit_rgb(n_per_class, classes=3, size=24)`` -> [(RGB uint8 array, label)]."""
    return _digit_rgb


@pytest.fixture(scope="session")
def png_bytes():
    """``png_bytes(array, fmt="PNG")`` -> encoded image bytes."""
    return _png_bytes


@pytest.fixture(scope="session")
def write_shard():
    """``write_shard(path, [(key, image_bytes, caption, cls), ...])`` -> a plain tar shard."""
    return _write_shard
