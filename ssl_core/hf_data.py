"""Hugging Face ``datasets`` on disk, for every modality's reader.

Reads a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``, or Arrow
(``.arrow``) or Parquet (``.parquet``) files (one file, or a folder of them). Nothing is
downloaded: only local paths are accepted. Needs the ``hf`` extra (``pip install 'sslkit[hf]'``).

The modality plugins build their datasets on top (``hf_images``, ``hf_text``, ``hf_audio``,
``hf_captions``): each names the columns to read (``image_column``, ``text_column``,
``audio_column``, ``caption_column``, ``label_column``). Image and audio columns are read as raw
bytes (``decode=False``) and decoded by the plugin's own decoder (PIL, libsndfile), so no extra
decoding backend is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ssl_core.errors import DataError
from ssl_core.extras import require
from ssl_core.files import HF_SUFFIXES, iter_files

TEST_SPLITS = ("test", "validation", "valid", "dev")


@dataclass
class HFSplits:
    """The split used for training (and the probes' train side) and an optional held-out one."""

    train: Any
    test: Any | None
    source: str
    """How the data was found, for descriptions and messages."""


def open_hf(path: str | Path | None, split: str = "train", test_split: str | None = None) -> HFSplits:
    """Open a saved dataset / DatasetDict folder, or Arrow/Parquet file(s), from ``path``."""
    if not path:
        raise DataError("A Hugging Face dataset reader needs --data PATH (a save_to_disk folder, or .arrow/.parquet files).")
    ds_mod = require("datasets", "hf", "reading Hugging Face datasets (--dataset hf_*)")
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"{root} does not exist. Point --data at a folder written by save_to_disk, or at "
                        ".arrow/.parquet files.")
    if root.is_dir() and (root / "dataset_dict.json").is_file():
        dd = ds_mod.load_from_disk(str(root))
        if split not in dd:
            raise DataError(f"{root} has splits {sorted(dd)}; dataset_kwargs.split='{split}' is not one of them.")
        test_name = test_split or next((s for s in TEST_SPLITS if s in dd and s != split), None)
        if test_split and test_split not in dd:
            raise DataError(f"{root} has splits {sorted(dd)}; dataset_kwargs.test_split='{test_split}' is not one of them.")
        return HFSplits(dd[split], dd[test_name] if test_name else None,
                        f"{root} (save_to_disk, split '{split}'" + (f", held-out '{test_name}')" if test_name else ")"))
    if root.is_dir() and (root / "state.json").is_file():
        return HFSplits(ds_mod.load_from_disk(str(root)), None, f"{root} (save_to_disk)")
    files = [root] if root.is_file() else sorted(iter_files(root, HF_SUFFIXES))  # the readers' shared walk
    arrow = [str(p) for p in files if p.suffix.lower() == ".arrow"]
    parquet = [str(p) for p in files if p.suffix.lower() == ".parquet"]
    if arrow and not parquet:
        table = ds_mod.concatenate_datasets([ds_mod.Dataset.from_file(f) for f in arrow])
        return HFSplits(table, None, f"{len(arrow)} Arrow file(s) under {root}")
    if parquet and not arrow:
        return HFSplits(ds_mod.Dataset.from_parquet(parquet), None, f"{len(parquet)} Parquet file(s) under {root}")
    raise DataError(f"{root} is not a Hugging Face dataset: expected a save_to_disk folder (dataset_dict.json or "
                    "state.json), .arrow files or .parquet files (not both).")


def check_columns(table: Any, where: str, **columns: str | None) -> None:
    """Raise a DataError naming the missing column, the dataset_kwargs field and the columns that exist."""
    for field_name, column in columns.items():
        if column is not None and column not in table.column_names:
            raise DataError(f"{where}: no column '{column}' (dataset_kwargs.{field_name}). "
                            f"Columns: {', '.join(table.column_names)}.")


def raw_column(table: Any, column: str) -> Any:
    """``table`` with an Image/Audio ``column`` left undecoded (``{"bytes", "path"}`` per row)."""
    ds_mod = require("datasets", "hf", "reading Hugging Face datasets")
    feature = table.features[column]
    if isinstance(feature, ds_mod.Image):
        return table.cast_column(column, ds_mod.Image(decode=False))
    if isinstance(feature, ds_mod.Audio):
        return table.cast_column(column, ds_mod.Audio(decode=False))
    return table


def cell_bytes(value: Any, base: Path | None = None) -> bytes:
    """The bytes of one undecoded image/audio cell: inline bytes, a file path, or raw ``bytes``."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("path"):
            p = Path(value["path"])
            if not p.is_absolute() and base is not None:
                p = base / p
            return p.read_bytes()
    if isinstance(value, str):
        p = Path(value)
        return (p if p.is_absolute() or base is None else base / p).read_bytes()
    raise DataError(f"Cannot read image/audio bytes from a cell of type {type(value).__name__}; the column should "
                    "be an Image/Audio feature, bytes, or file paths.")


def class_labels(table: Any, column: str | None) -> tuple[list[int] | None, list[str] | None]:
    """Integer labels and class names of ``column`` (a ClassLabel keeps its names), or ``(None, None)``."""
    if column is None or column not in table.column_names:
        return None, None
    ds_mod = require("datasets", "hf", "reading Hugging Face datasets")
    feature = table.features[column]
    raw = table[column]
    if isinstance(feature, ds_mod.ClassLabel):
        return [int(v) for v in raw], list(feature.names)
    names = sorted({str(v) for v in raw}, key=lambda s: (0, int(s), s) if s.lstrip("-").isdigit() else (1, 0, s))
    index = {n: i for i, n in enumerate(names)}
    return [index[str(v)] for v in raw], names


def labels_like(table: Any, column: str, names: list[str], where: str) -> list[int]:
    """Labels of a held-out split, numbered like the training split's ``names``."""
    ds_mod = require("datasets", "hf", "reading Hugging Face datasets")
    feature = table.features[column]
    values = [feature.int2str(int(v)) for v in table[column]] if isinstance(feature, ds_mod.ClassLabel) else \
        [str(v) for v in table[column]]
    index = {n: i for i, n in enumerate(names)}
    unseen = sorted(set(values) - set(index))
    if unseen:
        raise DataError(f"{where}: the held-out split has labels {unseen[:5]} that the training split lacks.")
    return [index[v] for v in values]


def holdout(n: int, labels: Sequence[int] | None, test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, test) row indices when the dataset has no held-out split: stratified by label."""
    import numpy as np

    from ssl_core.data import stratified_split

    if labels is None:
        return list(range(n)), []
    tr, te = stratified_split(np.asarray(labels), test_fraction, seed, both_sides=True)
    return tr.tolist(), te.tolist()


class CellSource:
    """One row's image bytes, read on access (an ``ImageSource``-like object for the CLIP reader)."""

    def __init__(self, table: Any, column: str, row: int, origin: str) -> None:
        self.table, self.column, self.row = table, column, row
        self.path, self.offset, self.size = Path(origin), None, None
        self.where = f"{origin} row {row} column '{column}'"

    def read(self) -> bytes:
        return cell_bytes(self.table[self.row][self.column])
