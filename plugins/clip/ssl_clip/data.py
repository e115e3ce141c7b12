"""Image-caption data: the built-in digit captions, CSV/TSV files and WebDataset tar shards.

Every source yields sample dicts ``{"image": uint8 [C, H, W], "caption": str, "label": int}``
(``label`` only when the data has one). The core's default collate stacks images and labels and
keeps captions as a list of strings; the encoder tokenises them with open_clip's tokenizer.

Splits: a fixed held-out fraction (stratified by label when there are labels) is kept for
evaluation (retrieval recall, zero-shot, kNN/linear probe); training sees only the rest.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import tarfile
import warnings
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ssl_core.data import stratified_split
from ssl_core.errors import ConfigError, DataError
from ssl_core.files import SHARD_SUFFIXES, TABLE_SUFFIXES, find_files, iter_files
from ssl_core.interfaces import DataModule

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "ppm", "pgm", "tif", "tiff", "gif")
CAPTION_EXTS = ("txt", "caption", "text")
LABEL_EXTS = ("cls", "label")
IMAGE_COLUMNS = ("image", "image_path", "filepath", "file_path", "file", "path", "img", "filename")
CAPTION_COLUMNS = ("caption", "text", "title", "description", "sentence")
LABEL_COLUMNS = ("label", "class", "category")

GENERIC_ZERO_SHOT_TEMPLATES = [
    "a photo of a {}.", "a picture of a {}.", "an image of a {}.", "a photo of the {}.",
    "a close-up photo of a {}.", "a cropped photo of a {}.",
]
"""Prompt templates for zero-shot classification when the data supplies none (CLIP-style)."""

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
DIGIT_CAPTION_TEMPLATES = [
    "a handwritten digit {word}",
    "a scan of the number {num}",
    "the digit {num} written by hand",
    "a low resolution scan of a handwritten {word}",
    "a {word} drawn with a pen",
    "the number {word} in someone's handwriting",
]
"""Templates of the built-in training/retrieval captions (``{word}`` = "seven", ``{num}`` = "7")."""
DIGIT_ZERO_SHOT_TEMPLATES = [
    "a photo of the number {}.", "a handwritten {}.", "the digit {}.", "a scan of a {}.",
]
"""Zero-shot prompts for the digit classes (filled with the class name, e.g. "seven")."""


# ---------------------------------------------------------------------- datasets
class TensorPairDataset(Dataset):
    """In-memory pairs: an image tensor ``[N, C, H, W]`` (uint8), N captions, optional labels."""

    def __init__(self, images: Tensor, captions: Sequence[str], labels: Tensor | None = None) -> None:
        if len(images) != len(captions) or (labels is not None and len(labels) != len(images)):
            raise ValueError(f"images ({len(images)}), captions ({len(captions)}) and labels "
                             f"({None if labels is None else len(labels)}) must have the same length")
        self.images, self.captions, self.labels = images, list(captions), labels

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample: dict[str, Any] = {"image": self.images[i], "caption": self.captions[i]}
        if self.labels is not None:
            sample["label"] = int(self.labels[i])
        return sample


@dataclass(frozen=True)
class ImageSource:
    """Where one image's bytes live: a file, or a byte range inside a tar shard."""

    path: Path
    where: str
    """Human-readable origin for messages, e.g. ``pairs.csv line 7`` or ``shard-0.tar member 42.jpg``."""
    offset: int | None = None
    size: int | None = None

    def read(self) -> bytes:
        with open(self.path, "rb") as fh:
            if self.offset is None:
                return fh.read()
            fh.seek(self.offset)
            return fh.read(self.size)


def decode_image(data: bytes, image_size: int) -> Tensor:
    """Decode image bytes to RGB, resize the short side to ``image_size``, centre-crop: uint8 [3, S, S]."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = image_size / min(w, h)
        im = im.resize((max(image_size, round(w * scale)), max(image_size, round(h * scale))), Image.BICUBIC)
        w, h = im.size
        left, top = (w - image_size) // 2, (h - image_size) // 2
        im = im.crop((left, top, left + image_size, top + image_size))
        arr = np.asarray(im, dtype=np.uint8).copy()
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


class FilePairDataset(Dataset):
    """Pairs whose images are decoded from files or tar members on access (and then cached).

    An image that cannot be decoded is reported once, with its origin, and the whole pair is
    replaced by the next readable one, so image and caption never get out of step and a long run
    does not die on one corrupt file.
    """

    def __init__(self, sources: Sequence[ImageSource], captions: Sequence[str], labels: Sequence[int] | None,
                 image_size: int, cache: bool = True) -> None:
        self.sources, self.captions = list(sources), list(captions)
        self.labels = None if labels is None else list(labels)
        self.image_size, self.cache = image_size, cache
        self._cache: dict[int, Tensor] = {}
        self.bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.sources)

    def _image(self, j: int) -> Tensor:
        if j in self._cache:
            return self._cache[j]
        img = decode_image(self.sources[j].read(), self.image_size)
        if self.cache:
            self._cache[j] = img
        return img

    def __getitem__(self, i: int) -> dict[str, Any]:
        for offset in range(len(self.sources)):
            j = (i + offset) % len(self.sources)
            if j in self.bad:
                continue
            try:
                image = self._image(j)
            except Exception as exc:  # PIL raises many types for corrupt or truncated files
                self.bad.add(j)
                src = self.sources[j]
                warnings.warn(
                    f"Skipping unreadable image {src.path if src.offset is None else src.where} "
                    f"({src.where}): {type(exc).__name__}: {exc}. Replace or remove it; the pair is "
                    "replaced by the next readable one.", stacklevel=2)
                continue
            sample: dict[str, Any] = {"image": image, "caption": self.captions[j]}
            if self.labels is not None:
                sample["label"] = self.labels[j]
            return sample
        raise DataError(f"None of the {len(self.sources)} images could be read (first: {self.sources[0].where}); "
                        "check that the files are jpg/png images.")

    def subset(self, idx: Sequence[int]) -> "FilePairDataset":
        """A dataset over rows ``idx`` (the split helpers use it)."""
        return FilePairDataset([self.sources[i] for i in idx], [self.captions[i] for i in idx],
                               None if self.labels is None else [self.labels[i] for i in idx],
                               self.image_size, self.cache)


# ---------------------------------------------------------------------- splits
def split_indices(n: int, labels: Sequence[int] | None, test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, test) indices: stratified by label when given, else a seeded random split."""
    if not 0 <= test_fraction < 1:
        raise ConfigError(f"dataset_kwargs.test_fraction must be in [0, 1), got {test_fraction}.")
    if labels is None:
        perm = np.random.default_rng(seed).permutation(n)
        k = int(round(n * test_fraction))
        return sorted(perm[k:].tolist()), sorted(perm[:k].tolist())
    train, test = stratified_split(labels, test_fraction, seed)
    return train.tolist(), test.tolist()


def _class_index(raw: Sequence[str]) -> tuple[list[int], list[str]]:
    names = sorted(set(raw), key=lambda s: (0, int(s), s) if s.lstrip("-").isdigit() else (1, 0, s))
    lookup = {name: i for i, name in enumerate(names)}
    return [lookup[r] for r in raw], names


def _file_datamodule(
    full: FilePairDataset, raw_labels: list[str] | None, test_fraction: float, seed: int, description: str,
) -> DataModule:
    labels, names = (None, None) if raw_labels is None else _class_index(raw_labels)
    full.labels = labels
    tr, te = split_indices(len(full), labels, test_fraction, seed)
    if not tr:
        raise DataError(f"{description}: no pairs left for training after holding out "
                        f"test_fraction={test_fraction}. Add data or lower dataset_kwargs.test_fraction.")
    train, test = full.subset(tr), full.subset(te)
    extras: dict[str, Any] = {
        "encoder_kwargs": {"image_size": full.image_size},
        "zero_shot_templates": list(GENERIC_ZERO_SHOT_TEMPLATES),
    }
    if not te:
        warnings.warn(f"{description}: the held-out split is empty (test_fraction={test_fraction}); "
                      "retrieval and probes will not run.", stacklevel=3)
    if labels is None or not te:
        # No labels: the core's kNN/linear probes cannot run, so the runner only runs `health`.
        # The held-out pairs stay available to the retrieval evaluator through extras.
        if te:
            extras["retrieval_split"] = test
        return DataModule(train=train, description=f"{description}: {len(tr)} train / {len(te)} held-out pairs, no labels",
                          extras=extras)
    return DataModule(
        train=train, eval_train=train, eval_test=test, num_classes=len(names or []), class_names=names,
        description=f"{description}: {len(tr)} train / {len(te)} held-out pairs, {len(names or [])} classes",
        extras=extras,
    )


# ---------------------------------------------------------------------- built-in digit captions
def _digit_attributes(images8: np.ndarray) -> tuple[list[str], list[str]]:
    """Stroke weight and slant of each 8x8 digit, measured from its pixels (tertiles over the set)."""
    n = images8.shape[0]
    ink = images8.reshape(n, -1).mean(1)
    ys, xs = np.mgrid[0:8, 0:8]
    y_up = (7 - ys).astype(np.float64)
    w = images8 / np.maximum(images8.sum(axis=(1, 2), keepdims=True), 1e-9)
    mx, my = (w * xs).sum((1, 2)), (w * y_up).sum((1, 2))
    cov = (w * (xs - mx[:, None, None]) * (y_up - my[:, None, None])).sum((1, 2))
    var_y = (w * (y_up - my[:, None, None]) ** 2).sum((1, 2))
    slope = cov / np.maximum(var_y, 1e-9)  # > 0: the top of the digit sits further right
    lo_i, hi_i = np.quantile(ink, [1 / 3, 2 / 3])
    lo_s, hi_s = np.quantile(slope, [1 / 3, 2 / 3])
    stroke = ["with thin strokes" if v < lo_i else "with thick strokes" if v > hi_i else "" for v in ink]
    slant = ["leaning left" if v < lo_s else "leaning right" if v > hi_s else "" for v in slope]
    return stroke, slant


def digit_caption_texts(images8: np.ndarray, labels: np.ndarray, seed: int = 0) -> list[str]:
    """One caption per digit image: a class template plus its measured stroke weight and slant."""
    stroke, slant = _digit_attributes(images8)
    rng = np.random.default_rng(seed)
    choice = rng.integers(0, len(DIGIT_CAPTION_TEMPLATES), size=len(labels))
    captions = []
    for i, (c, t) in enumerate(zip(labels.tolist(), choice.tolist())):
        text = DIGIT_CAPTION_TEMPLATES[t].format(word=DIGIT_WORDS[c], num=str(c))
        parts = [p for p in (stroke[i], slant[i]) if p]
        captions.append(text + (", " + " and ".join(parts) if parts else ""))
    return captions


def digit_captions(path: str | None = None, image_size: int = 16, test_fraction: float = 0.25, seed: int = 0) -> DataModule:
    """Real handwritten digits (UCI, via scikit-learn) paired with captions made from their labels.

    The images are the 1,797 8x8 scans of Alpaydin & Kaynak (1998) shipped inside scikit-learn,
    upsampled to ``image_size``. No image-caption set ships in a package, so each caption is
    built honestly from what is known about the image: its class, through one of several
    templates ("a scan of the number 7", "a handwritten digit seven", ...), plus two properties
    measured from its pixels: stroke weight (mean ink, thin/thick = lowest/highest third) and
    slant (the regression slope of x on y of the ink, left/right = lowest/highest third).
    A fixed stratified 25% is held out for retrieval, zero-shot and probe evaluation.
    """
    if path:
        raise ConfigError("The built-in 'digit_captions' set takes no --data; for your own pairs use "
                          "--dataset captions (CSV/TSV or WebDataset tar).")
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - scikit-learn is a dependency
        raise DataError("The built-in 'digit_captions' set needs scikit-learn: pip install scikit-learn") from exc
    bunch = load_digits()
    images8 = bunch.images.astype(np.float64)
    labels = bunch.target.astype(np.int64)
    captions = digit_caption_texts(images8, labels, seed)
    x = torch.tensor(images8, dtype=torch.float32).unsqueeze(1) / 16.0
    x = torch.nn.functional.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    y = torch.tensor(labels)
    tr, te = split_indices(len(labels), labels.tolist(), test_fraction, seed)
    pick = lambda idx: TensorPairDataset(x[idx], [captions[i] for i in idx], y[idx])  # noqa: E731
    train, test = pick(tr), pick(te)
    xf = x[tr].float() / 255
    mean, std = float(xf.mean()), float(xf.std())
    return DataModule(
        train=train, eval_train=train, eval_test=test, num_classes=10, class_names=list(DIGIT_WORDS),
        description=(f"UCI digits (scikit-learn) with label-derived captions: {len(tr)} train / "
                     f"{len(te)} held-out pairs, {image_size}x{image_size} grey"),
        extras={
            "encoder_kwargs": {"image_size": image_size, "context_length": 24, "mean": [mean], "std": [std]},
            "zero_shot_templates": list(DIGIT_ZERO_SHOT_TEMPLATES),
        },
    )


# ---------------------------------------------------------------------- CSV / TSV
def _pick_column(header: list[str], wanted: str | None, candidates: Sequence[str], field: str, path: Path,
                 required: bool = True) -> str | None:
    lower = {h.strip().lower(): h for h in header}
    if wanted is not None:
        if wanted in header:
            return wanted
        if wanted.strip().lower() in lower:
            return lower[wanted.strip().lower()]
        raise DataError(f"{path}: column '{wanted}' (dataset_kwargs.{field}_column) is not in the header; "
                        f"found columns {header}. Fix the name with --set dataset_kwargs.{field}_column=NAME.")
    for c in candidates:
        if c in lower:
            return lower[c]
    if required:
        raise DataError(
            f"{path}: no {field} column. Looked for {list(candidates)}, found columns {header}. "
            f"Rename the column or pass --set dataset_kwargs.{field}_column=NAME."
        )
    return None


def _sniff_delimiter(path: Path, head: str) -> str:
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".tab"):
        return "\t"
    if suffix == ".csv":
        return ","
    try:
        return csv.Sniffer().sniff(head, delimiters=",\t;|").delimiter
    except csv.Error:
        return "\t" if "\t" in head else ","


def csv_pairs(
    path: str | None = None,
    image_size: int = 32,
    test_fraction: float = 0.2,
    seed: int = 0,
    image_column: str | None = None,
    caption_column: str | None = None,
    label_column: str | None = None,
    delimiter: str | None = None,
    skip_missing: bool = False,
    cache: bool = True,
) -> DataModule:
    """Pairs from a CSV/TSV file with a header: an image path column and a caption column.

    Image paths are read relative to the file's folder (absolute paths work too). Columns are
    found by name (``image``/``filepath``/``path``..., ``caption``/``text``/``title``...) or set
    with ``image_column``/``caption_column``; an optional ``label``/``class`` column enables
    zero-shot classification and the kNN/linear probes. Rows with an empty image or caption
    field are skipped with a warning; a missing image file is an error naming the line (or,
    with ``skip_missing=True``, a warning).
    """
    if not path:
        raise DataError("The 'captions_csv' dataset needs --data PATH (a .csv or .tsv of image path, caption rows).")
    file = Path(path)
    if not file.is_file():
        raise DataError(f"Caption file {file} does not exist. Pass --data with a .csv/.tsv of (image path, caption) "
                        "rows, or a WebDataset .tar shard or folder of shards.")
    text = file.read_text(encoding="utf-8-sig", errors="replace")
    if not text.strip():
        raise DataError(f"Caption file {file} is empty. It needs a header line (e.g. 'image,caption') and one row per pair.")
    delim = delimiter or _sniff_delimiter(file, text[:4096])
    reader = csv.reader(io.StringIO(text), delimiter=delim)
    header = [h.strip() for h in next(reader)]
    img_col = _pick_column(header, image_column, IMAGE_COLUMNS, "image", file)
    cap_col = _pick_column(header, caption_column, CAPTION_COLUMNS, "caption", file)
    lab_col = _pick_column(header, label_column, LABEL_COLUMNS, "label", file, required=False)
    cols = {name: header.index(name) for name in (img_col, cap_col, lab_col) if name is not None}
    root = file.parent
    sources: list[ImageSource] = []
    captions: list[str] = []
    raw_labels: list[str] = []
    empty: list[str] = []
    missing: list[str] = []
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        values = {name: (row[i].strip() if i < len(row) else "") for name, i in cols.items()}
        blank = [name for name in (img_col, cap_col) if not values[name]]  # type: ignore[index]
        if blank:
            empty.append(f"line {line} ({', '.join(repr(b) for b in blank)})")
            continue
        if lab_col is not None and not values[lab_col]:
            raise DataError(f"{file} line {line}: empty value in label column '{lab_col}'. Fill it in, remove the "
                            "row, or drop the column to train without labels.")
        img_path = Path(values[img_col])  # type: ignore[index]
        full = img_path if img_path.is_absolute() else root / img_path
        if not full.is_file():
            missing.append(f"line {line}: '{values[img_col]}' -> {full}")  # type: ignore[index]
            continue
        sources.append(ImageSource(full, f"{file.name} line {line}, column '{img_col}'"))
        captions.append(values[cap_col])  # type: ignore[index]
        if lab_col is not None:
            raw_labels.append(values[lab_col])
    if empty:
        warnings.warn(f"{file}: skipped {len(empty)} row(s) with an empty image or caption field: "
                      f"{'; '.join(empty[:5])}{' ...' if len(empty) > 5 else ''}", stacklevel=2)
    if missing:
        msg = (f"{file}: {len(missing)} image file(s) not found (paths are relative to {root}): "
               f"{'; '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}.")
        if not skip_missing:
            raise DataError(msg + " Fix the paths, remove those rows, or pass "
                            "--set dataset_kwargs.skip_missing=true to skip them.")
        warnings.warn(msg + " Skipping those rows (skip_missing=true).", stacklevel=2)
    if not sources:
        raise DataError(f"{file} has no usable (image, caption) rows. Check the columns '{img_col}' and '{cap_col}'.")
    ds = FilePairDataset(sources, captions, None, image_size, cache)
    return _file_datamodule(ds, raw_labels if lab_col is not None else None, test_fraction, seed, str(file))


# ---------------------------------------------------------------------- WebDataset shards
def expand_braces(pattern: str) -> list[str]:
    """Expand WebDataset-style brace patterns: ``shard-{000..002}.tar``, ``{a,b}.tar``."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    body, head, tail = m.group(1), pattern[:m.start()], pattern[m.end():]
    rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if rng:
        a, b = rng.group(1), rng.group(2)
        width = len(a) if a.startswith("0") or len(a) == len(b) else 0
        items = [str(i).zfill(width) for i in range(int(a), int(b) + 1)]
    else:
        items = body.split(",")
    return list(itertools.chain.from_iterable(expand_braces(head + it + tail) for it in items))


def find_shards(path: str) -> list[Path]:
    """Tar shards named by a file, a folder (its ``*.tar``), or a brace/glob pattern."""
    p = Path(path)
    if p.is_dir():
        return find_files(p, SHARD_SUFFIXES, what=".tar shards", class_folders=False,
                          hint="WebDataset shards are plain tar files of KEY.jpg + KEY.txt members; or pass a "
                               ".csv/.tsv file instead.").files
    if p.is_file():
        return [p]
    shards: list[Path] = []
    for pat in expand_braces(path):
        hits = sorted(glob(pat)) if any(ch in pat for ch in "*?[") else ([pat] if Path(pat).is_file() else [])
        if not hits:
            raise DataError(f"WebDataset shard {pat} does not exist (from --data {path}). Check the path or pattern.")
        shards += [Path(h) for h in hits]
    return shards


def _split_key(name: str) -> tuple[str, str]:
    """WebDataset's convention: the key is the path up to the first dot of the file name."""
    directory, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{directory}/{stem}" if directory else stem), ext.lower() if dot else ""


def webdataset_pairs(
    path: str | None = None,
    image_size: int = 32,
    test_fraction: float = 0.2,
    seed: int = 0,
    cache: bool = True,
) -> DataModule:
    """Pairs from WebDataset tar shards: members ``KEY.jpg``/``KEY.png`` + ``KEY.txt`` (+ ``KEY.cls``).

    Shards are indexed once with Python's ``tarfile`` (uncompressed tar, as WebDataset writes
    them) and images are read by byte offset on access, so the shards are never unpacked and the
    dataset supports the random access the resumable sampler needs. ``KEY.cls`` (an integer or a
    class name), when present for every sample, gives labels for zero-shot and probes.
    """
    if not path:
        raise DataError("The 'captions_wds' dataset needs --data PATH (a .tar shard, a folder of shards or a "
                        "pattern like 'shards/data-{000..009}.tar').")
    shards = find_shards(path)
    sources: list[ImageSource] = []
    captions: list[str] = []
    labels: list[str | None] = []
    incomplete: list[str] = []
    for shard in shards:
        try:
            tar = tarfile.open(shard, mode="r:")
        except tarfile.ReadError as exc:
            raise DataError(
                f"WebDataset shard {shard} is not a readable uncompressed tar file ({exc}). Shards must be "
                "plain .tar (decompress .tar.gz with gunzip), written e.g. with "
                "`tar cf shard.tar 0001.jpg 0001.txt ...`."
            ) from exc
        groups: dict[str, dict[str, tarfile.TarInfo]] = {}
        order: list[str] = []
        with tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = _split_key(member.name)
                if key not in groups:
                    groups[key] = {}
                    order.append(key)
                groups[key][ext] = member
            for key in order:
                g = groups[key]
                img = next((g[e] for e in IMAGE_EXTS if e in g), None)
                cap = next((g[e] for e in CAPTION_EXTS if e in g), None)
                if img is None or cap is None:
                    incomplete.append(f"{shard.name}:{key} (has {sorted(g)})")
                    continue
                text = tar.extractfile(cap).read().decode("utf-8", errors="replace").strip()  # type: ignore[union-attr]
                if not text:
                    incomplete.append(f"{shard.name}:{key} (empty caption)")
                    continue
                lab = next((g[e] for e in LABEL_EXTS if e in g), None)
                labels.append(None if lab is None else tar.extractfile(lab).read().decode("utf-8").strip())  # type: ignore[union-attr]
                sources.append(ImageSource(shard, f"{shard.name} member {img.name}", img.offset_data, img.size))
                captions.append(text)
    if incomplete:
        warnings.warn(f"{path}: skipped {len(incomplete)} sample(s) without both an image "
                      f"({'/'.join(IMAGE_EXTS[:3])}...) and a caption (.txt): {'; '.join(incomplete[:5])}"
                      f"{' ...' if len(incomplete) > 5 else ''}", stacklevel=2)
    if not sources:
        raise DataError(f"No (image, caption) samples found in {len(shards)} shard(s) at {path}. Each sample needs "
                        "KEY.jpg (or .png) and KEY.txt members in the same shard.")
    have = [lab is not None for lab in labels]
    if any(have) and not all(have):
        first = sources[have.index(False)].where
        raise DataError(f"{path}: some samples have a .cls label and others do not (first without: {first}). "
                        "Add KEY.cls to every sample, or remove them all to train without labels.")
    ds = FilePairDataset(sources, captions, None, image_size, cache)
    raw = [str(lab) for lab in labels] if all(have) else None
    return _file_datamodule(ds, raw, test_fraction, seed, f"WebDataset {path}")


# ---------------------------------------------------------------------- one entry for --data
def caption_pairs(
    path: str | None = None,
    image_size: int = 32,
    test_fraction: float = 0.2,
    seed: int = 0,
    image_column: str | None = None,
    caption_column: str | None = None,
    label_column: str | None = None,
    delimiter: str | None = None,
    skip_missing: bool = False,
    cache: bool = True,
) -> DataModule:
    """Your image-caption pairs: a .csv/.tsv file, or WebDataset .tar shards (file, folder, pattern)."""
    if not path:
        raise DataError("The 'captions' dataset needs --data PATH: a .csv/.tsv of (image path, caption) rows, "
                        "a WebDataset .tar shard, a folder of shards, or a pattern like 'data-{000..009}.tar'.")
    p = Path(path)
    is_tar = p.suffix.lower() == ".tar" or "{" in path or (p.is_dir() and any(iter_files(p, SHARD_SUFFIXES)))
    if p.is_dir() and not is_tar:
        tables = find_files(p, TABLE_SUFFIXES, what="caption tables or .tar shards", recursive=False,
                            class_folders=False, hint="Pass the caption file itself with --data.").files
        if len(tables) != 1:
            raise DataError(f"Folder {p} has {len(tables)} .csv/.tsv files and no .tar shards; pass the caption "
                            "file itself with --data (or a folder holding exactly one).")
        p, path = tables[0], str(tables[0])
    if is_tar:
        csv_only = {"image_column": image_column, "caption_column": caption_column,
                    "label_column": label_column, "delimiter": delimiter}
        set_ = [k for k, v in csv_only.items() if v is not None]
        if set_ or skip_missing:
            raise ConfigError(f"dataset_kwargs {set_ + (['skip_missing'] if skip_missing else [])} apply to CSV/TSV "
                              f"files, but --data {path} is WebDataset tar data. Remove them.")
        return webdataset_pairs(path, image_size, test_fraction, seed, cache)
    return csv_pairs(path, image_size, test_fraction, seed, image_column, caption_column, label_column,
                     delimiter, skip_missing, cache)


def hf_captions(
    path: str | None = None, image_column: str = "image", caption_column: str = "caption",
    label_column: str | None = None, split: str = "train", image_size: int = 32, test_fraction: float = 0.2,
    seed: int = 0, cache: bool = True,
) -> DataModule:
    """Image-caption pairs from a Hugging Face dataset on disk (save_to_disk folder, .arrow or .parquet).

    ``image_column`` holds images (an Image feature, bytes or file paths) and ``caption_column``
    their captions; ``label_column`` (optional) gives classes for zero-shot and probes. A seeded
    (stratified, with labels) ``test_fraction`` of ``split`` is held out for retrieval.
    """
    from ssl_core.hf_data import CellSource, check_columns, open_hf, raw_column

    hf = open_hf(path, split)
    check_columns(hf.train, hf.source, image_column=image_column, caption_column=caption_column,
                  label_column=label_column)
    table = raw_column(hf.train, image_column)
    sources = [CellSource(table, image_column, i, hf.source) for i in range(len(table))]
    captions = [str(c) for c in table[caption_column]]
    raw_labels = None
    if label_column is not None:
        feature = table.features[label_column]
        names = getattr(feature, "names", None)
        raw_labels = [names[int(v)] if names else str(v) for v in table[label_column]]
    full = FilePairDataset(sources, captions, None, image_size, cache)
    return _file_datamodule(full, raw_labels, test_fraction, seed, hf.source)
