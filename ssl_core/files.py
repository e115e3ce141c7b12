"""Finding a file reader's files: what a reader accepts, and the one routine that walks ``--data``.

Every file reader (images, audio, text, caption tables, shards...) declares what it accepts with
:class:`Accepts` when it registers (``register(..., accepts=Accepts(...))``), so the core can
choose a reader for ``--data PATH`` without importing any plugin. Readers then list their files
with :func:`find_files`, so every modality treats the same folder the same way:

- folders are searched recursively, **following symbolic links** (class folders that link to
  shared storage work), visiting each real directory once (no loops);
- hidden files and folders (names starting with ``.``) are skipped;
- a suffix matches case-insensitively, and compound suffixes work (``.txt.gz``);
- with two or more first-level sub-folders holding matching files, each sub-folder is a class
  (``root/<class>/...``) and its name is the label;
- when nothing matches, the error names the folder, the suffixes looked for and how to fix it.

This module imports nothing heavy (no torch), so ``ssl list`` and reader selection stay fast.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from ssl_core.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
"""Image files the Pillow-based readers decode."""
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
"""Audio files libsndfile can decode (which of them a given build reads is checked at read time)."""
TEXT_SUFFIXES = (".txt", ".text", ".md", ".rst", ".jsonl", ".ndjson")
"""Plain-text and JSON-lines corpora (each optionally ``.gz``-compressed)."""
TABLE_SUFFIXES = (".csv", ".tsv")
"""Delimited tables (e.g. image path + caption rows)."""
SHARD_SUFFIXES = (".tar",)
"""WebDataset shards (uncompressed tar files)."""
HF_SUFFIXES = (".arrow", ".parquet")
"""Hugging Face ``datasets`` files (Arrow, Parquet)."""



@dataclass(frozen=True)
class Accepts:
    """What a file reader takes as ``--data``, declared when it registers.

    ``suffixes``: the file suffixes it reads (lower-case, with the dot). ``folders``: a folder
    holding such files (searched recursively unless ``recursive=False``). ``files``: one such
    file. ``markers``: file names that identify a folder it takes (``state.json`` of a saved
    Hugging Face dataset). ``schemes``: URL-like specs it streams (``http``, ``https``, ``pipe``
    for ``pipe:CMD``). ``patterns``: glob or brace patterns (``shards-{000..009}.tar``).
    ``layout``: one line for users, shown by ``ssl info`` and in reader-choice errors (e.g. "one
    sub-folder per class gives labels").
    """

    suffixes: tuple[str, ...] = ()
    folders: bool = True
    files: bool = True
    schemes: tuple[str, ...] = ()
    patterns: bool = False
    layout: str = ""
    markers: tuple[str, ...] = ()
    recursive: bool = True

    def __post_init__(self) -> None:
        bad = [s for s in self.suffixes if not s.startswith(".") or s != s.lower()]
        if bad:
            raise ValueError(f"Accepts.suffixes must be lower-case and start with '.', got {bad}")
        object.__setattr__(self, "suffixes", tuple(self.suffixes))
        object.__setattr__(self, "schemes", tuple(self.schemes))
        object.__setattr__(self, "markers", tuple(self.markers))

    @classmethod
    def coerce(cls, value: "Accepts | Mapping[str, Any] | None") -> "Accepts | None":
        """An :class:`Accepts` from itself, a dict of its fields, or ``None``."""
        if value is None or isinstance(value, Accepts):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {f.name for f in fields(cls)}
            if unknown:
                raise ValueError(f"unknown accepts keys {sorted(unknown)}")
            return cls(**{k: tuple(v) if k in ("suffixes", "schemes", "markers") else v for k, v in value.items()})
        raise TypeError(f"accepts must be an ssl_core.files.Accepts or a dict, got {type(value).__name__}")

    def describe(self) -> str:
        """One line for users: what this reader takes."""
        parts = []
        kinds = [w for w, on in (("a folder", self.folders), ("a file", self.files), ("a pattern", self.patterns)) if on]
        if self.suffixes:
            said = ", ".join(kinds[:-1]) + " or " + kinds[-1] if len(kinds) > 1 else "".join(kinds) or "nothing"
            parts.append(f"{said} of {'/'.join(self.suffixes)}")
        if self.schemes:
            parts.append("streams " + ", ".join(f"{s}:" if s == "pipe" else f"{s}://" for s in self.schemes))
        if self.layout:
            parts.append(self.layout)
        return "; ".join(parts) or "anything (undeclared)"

    def marked(self, spec: str) -> bool:
        """Whether ``spec`` is a folder holding one of this reader's ``markers`` (a strong sign)."""
        if not self.markers or remote_scheme(spec) is not None:
            return False
        path = Path(spec).expanduser()
        return path.is_dir() and any((path / m).is_file() for m in self.markers)

    def matches(self, spec: str) -> bool:
        """Whether this reader could take ``spec`` (a path, pattern or URL); decodes nothing.

        Folders are searched (following symbolic links) only until the first matching file.
        """
        scheme = remote_scheme(spec)
        if scheme is not None:
            return scheme in self.schemes
        path = Path(spec).expanduser()
        if path.is_dir():
            if self.marked(spec):
                return True
            return self.folders and next(iter_files(path, self.suffixes, recursive=self.recursive), None) is not None
        if path.is_file():
            return self.files and has_suffix(path, self.suffixes)
        if self.patterns and any(ch in spec for ch in "*?[{"):
            return spec.lower().endswith(self.suffixes)
        return False


def remote_scheme(spec: str) -> str | None:
    """``"http"``/``"https"``/``"pipe"`` for a URL-like spec, ``None`` for a local path."""
    head, sep, _ = spec.partition(":")
    if head == "pipe" and sep:
        return "pipe"
    if sep and spec[len(head):].startswith("://") and len(head) > 1:
        return head.lower()
    return None


def has_suffix(path: Path, suffixes: Iterable[str]) -> bool:
    """Whether ``path``'s name ends with one of ``suffixes`` (case-insensitive; compound suffixes
    such as ``.txt.gz`` work)."""
    name = path.name.lower()
    return any(name.endswith(s) for s in suffixes)


def iter_files(root: Path, suffixes: Iterable[str], compressed: bool = False, recursive: bool = True) -> Iterator[Path]:
    """Files under ``root`` whose name ends with one of ``suffixes`` (or ``suffix + '.gz'`` with
    ``compressed``), recursively unless ``recursive=False``, following symbolic links, skipping
    hidden entries, each real directory visited once. Sorted within each directory."""
    ends = tuple(suffixes) + (tuple(s + ".gz" for s in suffixes) if compressed else ())
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link back up the tree, or two links to one folder
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for name in sorted(filenames):
            if not name.startswith(".") and name.lower().endswith(ends):
                p = Path(dirpath) / name
                if p.is_file():  # a dangling link is not a file
                    yield p


@dataclass
class FileListing:
    """The files a reader found under ``root``, with class labels when the folder has them.

    ``labels[i]`` is the index into ``classes`` of ``files[i]``'s class sub-folder, or ``None``
    for a file directly under ``root`` (outside every class folder). ``labels`` is ``None`` when
    the folder has fewer than two class sub-folders (unlabelled data).
    """

    root: Path
    files: list[Path]
    classes: list[str] = field(default_factory=list)
    labels: list[int | None] | None = None

    @property
    def labelled(self) -> bool:
        """True when the files carry class labels (two or more class sub-folders)."""
        return self.labels is not None

    def class_files(self, what: str = "files") -> "FileListing":
        """Only the files inside class folders (a labelled reader's view); the loose files directly
        under ``root`` are reported once (``UserWarning``) and left out."""
        if self.labels is None:
            return self
        keep = [i for i, lab in enumerate(self.labels) if lab is not None]
        dropped = len(self.files) - len(keep)
        if dropped:
            warnings.warn(f"Skipping {dropped} {what} directly under {self.root}: with class sub-folders, every "
                          "file must be inside one (its folder name is its label).", stacklevel=2)
        return FileListing(self.root, [self.files[i] for i in keep], self.classes, [self.labels[i] for i in keep])


def find_files(path: str | Path, suffixes: Iterable[str], *, what: str = "files", folders: bool = True,
               files: bool = True, class_folders: bool = True, compressed: bool = False,
               recursive: bool = True, hint: str = "") -> FileListing:
    """List the files a reader will read from ``path`` (a folder or a single file).

    ``what`` names them in messages ("images", "audio files"); ``hint`` ends the "nothing found"
    error (e.g. "Put .wav files in the folder, or one sub-folder per class."). ``folders`` and
    ``files`` say whether a folder / a single file is acceptable; ``compressed`` also matches
    ``.gz`` versions of the suffixes; ``recursive=False`` looks only at the folder itself. Raises :class:`DataError` naming the path and the fix.
    """
    suffixes = tuple(suffixes)
    root = Path(path).expanduser()
    looked = ", ".join(suffixes) + (" (optionally .gz)" if compressed else "")
    if not root.exists():
        raise DataError(f"Data path {root} does not exist. Check --data (a folder{' or a file' if files else ''} "
                        f"of {looked}).")
    if root.is_file():
        if not files:
            raise DataError(f"{root} is a file, but this reader takes a folder of {what}. Pass the folder with --data.")
        if not has_suffix(root, suffixes + (tuple(s + ".gz" for s in suffixes) if compressed else ())):
            raise DataError(f"{root} is not one of the {what} this reader takes ({looked}). {hint}".strip())
        return FileListing(root, [root])
    if not folders:
        raise DataError(f"{root} is a folder, but this reader takes a single file ({looked}). Pass the file with --data.")
    found = sorted(iter_files(root, suffixes, compressed, recursive))  # by path parts: class folder, then name
    if not found:
        where = "in sub-folders too, following symbolic links" if recursive else "not in sub-folders"
        raise DataError(f"No {what} found under {root} (looked for {looked}, {where}). {hint}".strip())
    rel = [p.relative_to(root).parts for p in found]
    classes = sorted({r[0] for r in rel if len(r) > 1}) if class_folders else []
    if len(classes) < 2:
        return FileListing(root, found)
    index = {c: i for i, c in enumerate(classes)}
    return FileListing(root, found, classes, [index[r[0]] if len(r) > 1 else None for r in rel])


HF_DATASET = Accepts(HF_SUFFIXES, recursive=False, markers=("dataset_dict.json", "state.json"),
                     layout="a Hugging Face save_to_disk folder, or .arrow/.parquet files (pip install 'sslkit[hf]')")
"""What the ``hf_*`` readers take. Their marker files make a saved dataset folder (which may also
hold a README.md) go to them before a modality's other readers."""
