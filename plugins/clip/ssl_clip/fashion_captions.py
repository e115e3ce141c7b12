"""The built-in image-caption pairs: Fashion-MNIST images with captions measured from each image.

No image-caption set ships in a registry package, so the captions are built honestly from what
is known about each image: its class name (the dataset's label) and four properties measured
from its pixels. Nothing in a caption is invented; each word is a fact about that image:

- **size**: the fraction of the 28x28 frame the article covers (pixels above 10% intensity);
- **shape**: the aspect ratio (width / height) of the article's bounding box;
- **tone**: the mean intensity of the article's pixels (Fashion-MNIST stores articles light on
  black, so "bright" and "dim" describe the image as stored, not the product's colour);
- **detail**: the standard deviation of the article's pixel intensities ("plain" vs "detailed").

Each property is split into thirds *within the class* (a "small coat" is small for a coat), and
the middle third is left unsaid, so a caption names between zero and four properties. The
words and templates vary across images with a seeded draw; the zero-shot prompts use the class
name alone. Images, splits and subsets are those of the vision plugin's ``fashion_mnist``.
"""

from __future__ import annotations

import numpy as np
import torch

from ssl_core.errors import ConfigError
from ssl_core.interfaces import DataModule

FASHION_CAPTION_TEMPLATES = [
    "a photo of {a} {desc}",
    "a product photo of {a} {desc}",
    "a grey picture of {a} {desc}",
    "{a} {desc} on a black background",
    "a small catalogue image of {a} {desc}",
    "{a} {desc}",
]
"""Caption templates; ``{desc}`` is the measured adjectives and the class name (e.g. "small, bright
sandal") and ``{a}`` its article ("a" or "an")."""
FASHION_ZERO_SHOT_TEMPLATES = [
    "a photo of the {}.", "a product photo of the {}.", "a grey picture of the {}.", "the {} on a black background.",
]
"""Zero-shot prompts (filled with the class name, e.g. "ankle boot")."""

_WORDS = {
    "size": ("small", "large"),
    "shape": ("narrow", "wide"),
    "tone": ("dim", "bright"),
    "detail": ("plain", "detailed"),
}


def measure(images: np.ndarray, threshold: float = 0.1) -> dict[str, np.ndarray]:
    """Per-image size, shape, tone and detail of uint8 images ``[N, H, W]`` (see the module docs)."""
    x = images.astype(np.float32) / 255.0
    n, h, w = x.shape
    fg = x > threshold
    count = fg.reshape(n, -1).sum(1)
    safe = np.maximum(count, 1)
    rows, cols = fg.any(2), fg.any(1)
    height = np.where(rows.any(1), h - rows[:, ::-1].argmax(1) - rows.argmax(1), 1)
    width = np.where(cols.any(1), w - cols[:, ::-1].argmax(1) - cols.argmax(1), 1)
    tone = (x * fg).reshape(n, -1).sum(1) / safe
    detail = np.sqrt(np.maximum(((x - tone[:, None, None]) ** 2 * fg).reshape(n, -1).sum(1) / safe, 0.0))
    return {"size": count / float(h * w), "shape": width / np.maximum(height, 1), "tone": tone, "detail": detail}


def describe(images: np.ndarray, labels: np.ndarray) -> list[list[str]]:
    """The measured words of each image: properties in the lowest/highest third of its class."""
    props = measure(images)
    words: list[list[str]] = [[] for _ in range(len(labels))]
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        for key in ("size", "shape", "tone", "detail"):
            lo, hi = np.quantile(props[key][idx], [1 / 3, 2 / 3])
            for i in idx:
                v = props[key][i]
                if v < lo:
                    words[i].append(_WORDS[key][0])
                elif v > hi:
                    words[i].append(_WORDS[key][1])
    return words


def fashion_caption_texts(images: np.ndarray, labels: np.ndarray, class_names: list[str], seed: int = 0) -> list[str]:
    """One caption per image: a template around its measured words and class name."""
    words = describe(images, labels)
    rng = np.random.default_rng(seed)
    choice = rng.integers(0, len(FASHION_CAPTION_TEMPLATES), size=len(labels))
    out = []
    for ws, c, t in zip(words, labels.tolist(), choice.tolist()):
        desc = (", ".join(ws) + " " if ws else "") + class_names[c]  # "small, bright sandal"
        out.append(FASHION_CAPTION_TEMPLATES[t].format(a="an" if desc[0] in "aeiou" else "a", desc=desc))
    return out


def fashion_captions(
    path: str | None = None, root: str | None = None, train_size: int | None = None, test_size: int | None = None,
    image_size: int = 28, seed: int = 0, fallback: bool = True,
) -> DataModule:
    """Fashion-MNIST images with captions of their class name and measured size/shape/tone/detail.

    The images, folder lookup (``root``, ``$SSLKIT_FASHION_MNIST``, Debian's package), official
    split and balanced subsets are the vision plugin's ``fashion_mnist``; the probes' test split
    is the held-out pairs for retrieval and zero-shot. Without Fashion-MNIST the run falls back to
    ``digit_captions`` and says so loudly (``fallback=False``: an error).
    """
    from ssl_vision import fashion_mnist as fm  # the image side; sslkit-clip depends on sslkit-vision

    from ssl_clip.data import TensorPairDataset, digit_captions

    if path:
        raise ConfigError("The built-in 'fashion_captions' set takes no --data; name the Fashion-MNIST folder with "
                          f"--set dataset_kwargs.root=DIR (or ${fm.ENV_VAR}). For your own pairs use --dataset captions.")
    train_size = fm.TRAIN_SIZE if train_size is None else train_size
    test_size = fm.TEST_SIZE if test_size is None else test_size
    folder, looked = fm.locate(root)
    if folder is None:
        message = f"Fashion-MNIST was not found (looked in {', '.join(looked)}). " + fm.INSTALL_HINT
        if not fallback:
            from ssl_core.errors import DataError

            raise DataError(message)
        fm.warn_fallback(message, "the tiny built-in digit captions (UCI digits, 1,797 images)")
        data = digit_captions(seed=seed)
        data.description = "FALLBACK (Fashion-MNIST not installed): " + data.description
        data.extras["dataset"], data.extras["dataset_kwargs"] = "digit_captions", {"seed": seed}
        return data
    splits = {}
    for split, size in (("train", train_size), ("test", test_size)):
        images, labels = fm.load_split_subset(folder, split, size, seed)
        captions = fashion_caption_texts(images, labels, fm.CLASS_NAMES, seed + (split == "test"))
        splits[split] = TensorPairDataset(fm.images_to_tensor(images, image_size), captions, torch.as_tensor(labels))
    xf = splits["train"].images.float() / 255
    return DataModule(
        train=splits["train"], eval_train=splits["train"], eval_test=splits["test"], num_classes=len(fm.CLASS_NAMES),
        class_names=list(fm.CLASS_NAMES),
        description=(f"Fashion-MNIST from {folder} with measured captions: {len(splits['train']):,} official-train "
                     f"pairs (training + probe train) / {len(splits['test']):,} official-test pairs (held out), "
                     f"balanced, seed {seed}, {image_size}x{image_size} grey"),
        extras={
            "encoder_kwargs": {"image_size": image_size, "context_length": 24, "mean": [float(xf.mean())],
                               "std": [float(xf.std())]},
            "zero_shot_templates": list(FASHION_ZERO_SHOT_TEMPLATES),
            "dataset": "fashion_captions",
        },
    )
