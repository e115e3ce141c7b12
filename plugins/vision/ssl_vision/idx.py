"""The idx file format of the MNIST family (MNIST, Fashion-MNIST, KMNIST, EMNIST), raw or gzipped.

An idx file is a 4-byte magic number, one big-endian 32-bit size per dimension, then the data
in row-major order, big-endian. The magic number is two zero bytes, a type code and the number
of dimensions (LeCun et al., "The MNIST database", the format description on its web page)::

    0x00 0x00 <type> <ndim>   <size_0> ... <size_{ndim-1}>   <data>

    type: 0x08 unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64

:func:`read_idx` checks every part of that header against the file's length and fails with a
:class:`~ssl_core.errors.DataError` naming the file and what is wrong (empty, not gzip, cut
short, wrong magic, unknown type, sizes that disagree with the bytes present).
:func:`find_idx_split` locates the standard four files in a folder, and :func:`read_idx_split`
loads one split's images and labels and checks that they belong together.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ssl_core.errors import DataError

IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
"""idx type code -> numpy dtype of the stored values (big-endian where it matters)."""

SPLITS = {"train": "train", "test": "t10k"}
"""Split -> the file-name stem the MNIST family uses (``train-...``, ``t10k-...``)."""


def _read_bytes(path: Path) -> bytes:
    """The file's decoded bytes: gunzipped when it is gzip (by its magic bytes, not its name)."""
    if not path.is_file():
        raise DataError(f"idx file {path} does not exist (or is not a file).")
    raw = path.read_bytes()
    if not raw:
        raise DataError(f"idx file {path} is empty (0 bytes); the download or copy did not finish. "
                        "Fetch the file again.")
    if raw[:2] != b"\x1f\x8b":
        if path.suffix == ".gz":
            raise DataError(f"idx file {path} is named .gz but is not gzip-compressed (it starts with "
                            f"{raw[:4].hex(' ')}). Rename it without .gz if it is a raw idx file, or fetch it again.")
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError as exc:
        raise DataError(f"idx file {path} is a truncated gzip file ({exc}); the download or copy was cut "
                        "short. Fetch the file again.") from exc
    except (OSError, zlib.error) as exc:
        raise DataError(f"idx file {path} is a corrupt gzip file ({exc}). Fetch the file again.") from exc


def read_idx(path: str | Path) -> np.ndarray:
    """Read one idx(.gz) file into a numpy array of its stored shape and type (native byte order).

    Raises :class:`DataError` naming ``path`` when the file is empty, not valid gzip, has the
    wrong magic number or an unknown type code, or holds more or fewer bytes than its header
    declares.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"idx file {path} is {len(data)} bytes long: too short for the 4-byte magic number. "
                        "The file is truncated; fetch it again.")
    zero, code, ndim = data[:2], data[2], data[3]
    if zero != b"\x00\x00":
        raise DataError(f"{path} is not an idx file: its magic number {data[:4].hex(' ')} should start with "
                        "two zero bytes (e.g. 00 00 08 03 for MNIST images). Check that --data points at the "
                        "idx files (train-images-idx3-ubyte.gz, ...).")
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"idx file {path} has unknown type code 0x{code:02X} in its magic number (known: {known}).")
    if ndim == 0:
        raise DataError(f"idx file {path} declares 0 dimensions in its magic number; an idx file has at least one.")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"idx file {path} is truncated inside its header: {ndim} dimension sizes need "
                        f"{header} bytes, the file has {len(data)}. Fetch it again.")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    present = len(data) - header
    if present != expected:
        what = "truncated" if present < expected else "longer than its header says"
        raise DataError(f"idx file {path} is {what}: its header declares shape {shape} of {dtype.name} "
                        f"({expected:,} data bytes) but {present:,} data bytes follow. "
                        + ("Fetch the file again." if present < expected else "The file is corrupt or not an idx file."))
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=False) if dtype.byteorder == ">" else arr


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an idx file (gzipped when ``compress`` or when the name ends in .gz).

    The inverse of :func:`read_idx`: used by the tests and to export data for other tools.
    """
    path = Path(path)
    array = np.asarray(array)
    codes = {v.newbyteorder("=").str.lstrip("<>|="): k for k, v in IDX_DTYPES.items()}
    key = array.dtype.newbyteorder("=").str.lstrip("<>|=")
    if key not in codes or array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"Cannot store an array of dtype {array.dtype} and {array.ndim} dims as idx "
                         "(types: uint8, int8, int16, int32, float32, float64; 1-255 dims).")
    code = codes[key]
    payload = (bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
               + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes())
    if compress if compress is not None else path.suffix == ".gz":
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    path.write_bytes(payload)
    return path


def find_idx_split(root: str | Path, split: str, prefix: str = "") -> tuple[Path, Path] | None:
    """``(images, labels)`` files of ``split`` (``train`` or ``test``) in folder ``root``, or None.

    Accepts the MNIST family's names, raw or gzipped: ``train-images-idx3-ubyte(.gz)`` and
    ``train-labels-idx1-ubyte(.gz)`` (test: ``t10k-...``), also with a dot before ``idx``
    (``train-images.idx3-ubyte``) and a ``prefix`` such as ``emnist-balanced-``. Several candidate
    files for one role is an error that lists them.
    """
    root = Path(root)
    stem = SPLITS[split]
    found: list[Path] = []
    for kind, dims in (("images", 3), ("labels", 1)):
        hits = sorted(p for p in root.iterdir() if p.is_file() and _matches(p.name, prefix, stem, kind, dims))
        raw = {p.name.removesuffix(".gz") for p in hits}
        if len(raw) > 1:
            raise DataError(f"{root} holds several {split} {kind} files: {', '.join(p.name for p in hits)}. "
                            "Keep one, or choose by name with --set dataset_kwargs.prefix=PREFIX "
                            "(e.g. emnist-balanced-).")
        if not hits:
            return None
        # the same file raw and gzipped: prefer the raw one (no decompression)
        found.append(min(hits, key=lambda p: p.suffix == ".gz"))
    return found[0], found[1]


def _matches(name: str, prefix: str, stem: str, kind: str, dims: int) -> bool:
    base = name.removesuffix(".gz")
    return base.startswith(prefix) and base.endswith((f"{stem}-{kind}-idx{dims}-ubyte", f"{stem}-{kind}.idx{dims}-ubyte"))


def read_idx_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One split's images ``uint8 [N, H, W]`` and labels ``int64 [N]``, checked to belong together."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(f"{images_path} should hold images [N, height, width] (idx3) but holds shape "
                        f"{images.shape}. Is it a labels file?")
    if images.dtype != np.uint8:
        raise DataError(f"{images_path} stores {images.dtype} pixels; the reader expects unsigned bytes (0-255).")
    if labels.ndim != 1:
        raise DataError(f"{labels_path} should hold labels [N] (idx1) but holds shape {labels.shape}. "
                        "Is it an images file?")
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images):,} images but {labels_path} holds {len(labels):,} "
                        "labels: they are not the same split. Check the file names.")
    if len(labels) and labels.min() < 0:
        raise DataError(f"{labels_path} holds negative labels (min {labels.min()}); class labels must be >= 0.")
    return images, labels.astype(np.int64)
