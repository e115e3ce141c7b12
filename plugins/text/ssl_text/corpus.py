"""Streaming readers for text corpora: plain-text files, folders of them, JSONL; the built-in set.

Every reader yields :class:`Piece` objects one at a time and never holds the corpus in memory:
a long document arrives as several pieces (``end=False`` on all but the last), so a file larger
than memory streams through tokenizer training and tokenization.

Errors name the file (and line), what is wrong and how to fix it.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import json
import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterator

from ssl_core.errors import DataError
from ssl_core.files import find_files

TEXT_SUFFIXES = (".txt", ".text", ".md", ".rst")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
ALL_SUFFIXES = TEXT_SUFFIXES + JSONL_SUFFIXES
DOC_SPLITS = ("blank_line", "line", "file")
MAX_PIECE_CHARS = 1 << 20
"""Documents longer than this (1 MiB of text) are streamed in pieces of about this size."""


@dataclass
class Piece:
    """A stretch of one document's text. ``end`` is False while the document continues.

    ``split`` (``"train"``/``"heldout"``, on a document's first piece) fixes the document's split;
    ``None`` leaves it to the store's seeded hash.
    """

    text: str
    label: str | None = None
    end: bool = True
    split: str | None = None


PieceSource = Callable[[], Iterator[Piece]]
"""A zero-argument callable returning a fresh iterator of pieces (corpora are read twice)."""


def _suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return os.path.splitext(name)[1]


def _open_binary(path: Path) -> IO[bytes]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """(line number, line), decoded line by line so an error names the exact line."""
    wide = encoding.lower().replace("_", "-").startswith(("utf-16", "utf-32", "utf16", "utf32"))
    lineno = 0
    try:
        with _open_binary(path) as raw:
            stream = io.TextIOWrapper(raw, encoding=encoding, newline="") if wide else raw
            for lineno, line in enumerate(stream, 1):
                yield lineno, line if wide else line.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}, line {lineno}: the bytes are not valid {encoding} ({exc.reason}). "
            f"Convert the file to UTF-8, or name its encoding with --set dataset_kwargs.encoding=latin-1."
        ) from exc
    except LookupError as exc:
        raise DataError(
            f"Unknown text encoding '{encoding}' (dataset_kwargs.encoding); use e.g. utf-8 or latin-1."
        ) from exc
    except (OSError, EOFError) as exc:
        raise DataError(f"Could not read {path}: {exc}.") from exc


def read_text_file(path: Path, doc_split: str = "blank_line", label: str | None = None,
                   encoding: str = "utf-8") -> Iterator[Piece]:
    """Documents of a plain-text file.

    ``doc_split``: ``blank_line`` (documents/paragraphs separated by blank lines), ``line`` (one
    document per non-empty line) or ``file`` (the whole file is one document).
    """
    if doc_split not in DOC_SPLITS:
        raise DataError(f"dataset_kwargs.doc_split is '{doc_split}'; choose one of {', '.join(DOC_SPLITS)}.")
    buf: list[str] = []
    size = 0
    open_doc = False  # a piece of the current document was already yielded
    for _, line in _lines(path, encoding):
        if doc_split == "line":
            if line.strip():
                yield Piece(line.rstrip("\r\n"), label)
            continue
        if doc_split == "blank_line" and not line.strip():
            if buf or open_doc:
                yield Piece("".join(buf).rstrip("\r\n"), label)
                buf, size, open_doc = [], 0, False
            continue
        buf.append(line)
        size += len(line)
        if size >= MAX_PIECE_CHARS:  # a huge document streams in pieces that break at line ends
            yield Piece("".join(buf), label, end=False)
            buf, size, open_doc = [], 0, True
    text = "".join(buf).rstrip("\r\n")
    if text.strip() or open_doc:
        yield Piece(text, label)


def read_jsonl(path: Path, text_field: str = "text", label_field: str | None = "label",
               encoding: str = "utf-8", label: str | None = None) -> Iterator[Piece]:
    """One document per JSON line: ``{"text": "...", "label": "..."}`` (label optional)."""
    for lineno, line in _lines(path, encoding):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}, line {lineno}: not valid JSON ({exc.msg} at column {exc.colno}). "
                "Each line of a .jsonl file must be one JSON object, e.g. {\"text\": \"...\"}."
            ) from exc
        if not isinstance(obj, dict):
            raise DataError(
                f"{path}, line {lineno}: expected a JSON object like {{\"{text_field}\": \"...\"}}, "
                f"got {type(obj).__name__}."
            )
        if text_field not in obj:
            keys = ", ".join(sorted(map(str, obj))) or "none"
            raise DataError(
                f"{path}, line {lineno}: no '{text_field}' field (fields on this line: {keys}). "
                f"Add a '{text_field}' field to every line, or name the field that holds the text "
                f"with --set dataset_kwargs.text_field=NAME."
            )
        text = obj[text_field]
        if not isinstance(text, str):
            raise DataError(
                f"{path}, line {lineno}: field '{text_field}' must be a string, got "
                f"{type(text).__name__}. Store the document's text as a JSON string."
            )
        if not text.strip():
            continue
        doc_label = label
        if label_field and obj.get(label_field) is not None:
            doc_label = str(obj[label_field])
        yield Piece(text, doc_label)


def list_corpus_files(path: str | Path) -> tuple[list[Path], list[str | None]]:
    """The files a ``--data`` path names and the label of each (sub-folder name, or None).

    A folder is searched recursively (following symbolic links, by :func:`ssl_core.files.find_files`)
    for ``.txt .text .md .rst .jsonl .ndjson`` (optionally ``.gz``). When it has two or more
    sub-folders holding such files, the first-level sub-folder name is each file's label
    (``root/<label>/*.txt``), as for image folders; files directly under the folder are unlabelled.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(
            f"Text data path {root} does not exist. Pass --data with a .txt or .jsonl file or a "
            "folder of them."
        )
    if root.is_file():
        if os.path.getsize(root) == 0:
            raise DataError(f"Text file {root} is empty. Point --data at a file with text in it.")
        return [root], [None]
    listing = find_files(root, ALL_SUFFIXES, what="text files", compressed=True,
                         hint="Put .txt or .jsonl files in the folder, or one sub-folder of them per class.")
    files = listing.files
    if listing.labels is None:
        return files, [None] * len(files)
    labels = [None if lab is None else listing.classes[lab] for lab in listing.labels]
    return files, labels


def file_pieces(files: list[Path], labels: list[str | None], text_field: str = "text",
                label_field: str | None = "label", doc_split: str = "blank_line",
                encoding: str = "utf-8") -> PieceSource:
    """A piece source over ``files`` (JSONL by suffix, plain text otherwise)."""

    def source() -> Iterator[Piece]:
        for f, lab in zip(files, labels):
            if _suffix(f) in JSONL_SUFFIXES:
                yield from read_jsonl(f, text_field, label_field, encoding, label=lab)
            else:
                yield from read_text_file(f, doc_split, lab, encoding)

    return source


def files_fingerprint(files: list[Path], labels: list[str | None], settings: dict) -> str:
    """Hash of (path, size, mtime, label) of every file plus reader settings: changes when data does."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for f, lab in zip(files, labels):
        st = f.stat()
        h.update(f"{f.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{lab}\n".encode())
    return h.hexdigest()[:20]


# ---------------------------------------------------------------------- built-in corpus
DEFAULT_FAMILIES = ("asyncio", "email", "importlib", "logging", "tkinter", "unittest", "xml", "http", "decimal")
"""Standard-library package families used as probe labels (``decimal`` = ``_pydecimal``)."""
_FAMILY_ALIASES = {"_pydecimal": "decimal"}


def python_doc_pieces(families: tuple[str, ...] | list[str] = DEFAULT_FAMILIES, min_chars: int = 80) -> list[Piece]:
    """Real English documentation prose shipped with every CPython install, with labels.

    1. Every docstring (module, class, function) of at least ``min_chars`` characters in the
       standard library's pure-Python sources, read with :mod:`ast` (nothing is imported).
       A docstring whose module is in one of ``families`` (top-level package, e.g. ``email``
       for ``email.mime.text``) is labelled with that family; the others are unlabelled.
    2. The language-reference topics that ``help()`` shows (``pydoc_data.topics``), unlabelled.

    On CPython 3.11 this is about 4,500 docstrings and 79 topics, ~2 MB of text; the nine default
    families give ~1,500 labelled documents. The exact set depends on the Python version.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    if not stdlib.is_dir():
        raise DataError(
            f"The built-in text corpus reads Python's standard library sources, but {stdlib} is "
            "missing (a stripped Python install?). Pass your own corpus with --data PATH."
        )
    skip_top = {"site-packages", "dist-packages", "test", "lib2to3", "turtledemo", "__phello__"}
    pieces: list[Piece] = []
    for p in sorted(stdlib.rglob("*.py")):
        rel = p.relative_to(stdlib)
        if rel.parts[0] in skip_top or any(part in ("test", "tests", "idle_test") for part in rel.parts):
            continue
        try:
            tree = ast.parse(p.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue  # a few stdlib files are templates or bad-syntax fixtures
        top = rel.parts[0].removesuffix(".py")
        family = _FAMILY_ALIASES.get(top, top)
        label = family if family in families else None
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=True)
                if doc and len(doc) >= min_chars:
                    pieces.append(Piece(doc, label))
    try:
        from pydoc_data.topics import topics
    except ImportError:  # pragma: no cover - part of CPython, but distributions may drop it
        topics = {}
    for name in sorted(topics):
        text = topics[name].strip()
        if text:
            pieces.append(Piece(text, None))
    if not pieces:
        raise DataError(f"Found no docstrings under {stdlib}. Pass your own corpus with --data PATH.")
    return pieces


def python_docs_fingerprint(families: tuple[str, ...] | list[str], min_chars: int) -> str:
    """Changes with the Python build and the corpus settings."""
    key = json.dumps([sys.version, sysconfig.get_paths()["stdlib"], list(families), min_chars])
    return hashlib.sha256(key.encode()).hexdigest()[:20]
