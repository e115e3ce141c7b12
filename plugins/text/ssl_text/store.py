"""A corpus tokenized once into memory-mapped token files, and the datasets that index them.

Layout of one store (a folder in the cache, named by a hash of corpus + settings)::

    tokenizer.json        the byte-level BPE (trained here, or the user's file)
    meta.json             dtype, token counts, label names, settings
    train.bin             uint16/uint32 token ids: doc, <eos>, doc, <eos>, ...
    heldout.bin           the same for held-out documents (perplexity, probe test split)
    {train,heldout}_docs.npy    int64 [n_docs + 1] start offsets of documents
    {train,heldout}_labels.npy  int32 [n_docs] label id per document (-1 = unlabelled)
    segments_{split}_{L}.npy    int64 [n, 2] (start, length) sentence segments for MLM

Building streams the corpus twice (tokenizer training, then tokenization) and writes the token
files chunk by chunk, so a corpus larger than memory works; datasets then read blocks from the
memory map by index, as the trainer's sampler needs (``len()`` and ``__getitem__``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ssl_core.errors import DataError
from ssl_text.corpus import MAX_PIECE_CHARS, Piece, PieceSource
from ssl_text.tokenizer import (
    SpecialIds, encode_batches, load_tokenizer, special_ids, tokenizer_fingerprint, train_tokenizer,
)

STORE_VERSION = 1
SPLITS = ("train", "heldout")


def default_cache_dir() -> Path:
    """``$SSL_TEXT_CACHE`` if set, else ``$XDG_CACHE_HOME/sslkit/text`` (``~/.cache/sslkit/text``)."""
    env = os.environ.get("SSL_TEXT_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sslkit" / "text"


def _mix(seed: int, i: int) -> float:
    """A deterministic uniform number in [0, 1) for document ``i`` (splitmix64)."""
    z = (seed * 0x9E3779B97F4A7C15 + (i + 1) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    z ^= z >> 31
    return z / 2.0**64


@dataclass
class TokenStore:
    """A built store: the tokenizer plus memory-mapped token streams of the two splits."""

    root: Path
    tokenizer: Any
    meta: dict[str, Any]

    @property
    def specials(self) -> SpecialIds:
        return special_ids(self.tokenizer)

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.meta["dtype"])

    @property
    def label_names(self) -> list[str]:
        return list(self.meta["label_names"])

    def tokens(self, split: str) -> np.ndarray:
        """The split's token stream as a read-only memory map (an empty array if it has none)."""
        path = self.root / f"{split}.bin"
        if path.stat().st_size == 0:
            return np.zeros(0, dtype=self.dtype)
        return np.memmap(path, dtype=self.dtype, mode="r")

    def docs(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(document start offsets [n + 1], labels [n]) of a split."""
        return np.load(self.root / f"{split}_docs.npy"), np.load(self.root / f"{split}_labels.npy")

    def segments(self, split: str, max_tokens: int) -> np.ndarray:
        """Sentence segments (start, length) of at most ``max_tokens``, cached on disk."""
        path = self.root / f"segments_{split}_{max_tokens}.npy"
        if path.exists():
            return np.load(path)
        seg = sentence_segments(self.tokens(split), self.boundary_table(), max_tokens)
        _atomic_save_npy(path, seg)
        return seg

    def boundary_table(self) -> np.ndarray:
        """bool [vocab]: tokens that end a sentence (``. ! ?``, a newline, or ``<eos>``)."""
        v = self.vocab_size
        table = np.zeros(v, dtype=bool)
        for i in range(v):
            s = self.tokenizer.decode([i], skip_special_tokens=False)
            if s.rstrip(" \"')]").endswith((".", "!", "?")) or "\n" in s:
                table[i] = True
        table[self.specials.eos] = True
        return table


def _atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        np.save(fh, arr)
    os.replace(tmp, path)


def sentence_segments(tokens: np.ndarray, is_boundary: np.ndarray, max_tokens: int,
                      chunk: int = 1 << 22) -> np.ndarray:
    """Cut a token stream into segments of whole sentences, each at most ``max_tokens`` long.

    Greedy, as BERT's and RoBERTa's "FULL-SENTENCES" input: a segment takes as many whole
    sentences as fit; a sentence longer than the limit (or a cut that would leave the segment
    under half full) is split at the limit. Works chunk by chunk over a memory map.
    """
    n = len(tokens)
    out = array("q")
    pos = 0
    half = max(1, max_tokens // 2)
    while pos < n:
        hi = min(n, pos + chunk)
        window = np.asarray(tokens[pos:hi])
        ends = pos + np.flatnonzero(is_boundary[window]) + 1  # a segment may end after a boundary
        while pos < n:
            limit = min(pos + max_tokens, n)
            if limit > hi and hi < n:
                break  # read the next chunk (it starts at pos)
            if limit == n:
                end = n
            else:
                j = int(np.searchsorted(ends, limit, side="right")) - 1
                end = int(ends[j]) if j >= 0 and ends[j] - pos >= half else limit
            out.append(pos)
            out.append(end - pos)
            pos = end
    return np.frombuffer(out, dtype=np.int64).reshape(-1, 2).copy() if out else np.zeros((0, 2), np.int64)


def build_store(
    pieces: PieceSource,
    fingerprint: str,
    *,
    vocab_size: int = 4096,
    min_frequency: int = 2,
    tokenizer: str | None = None,
    heldout_fraction: float = 0.1,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    tokenizer_train_chars: int = 200_000_000,
    description: str = "",
) -> TokenStore:
    """Tokenize a corpus into a cached :class:`TokenStore` (built once per corpus + settings).

    Documents go to the held-out split with probability ``heldout_fraction`` (a fixed hash of
    ``seed`` and the document's index, so the split never changes). If that leaves the held-out
    split nearly empty (a corpus of one or two long documents), the last ``heldout_fraction`` of
    the training stream becomes the held-out split instead.
    """
    if not 0.0 <= heldout_fraction < 1.0:
        raise DataError(f"dataset_kwargs.heldout_fraction must be in [0, 1), got {heldout_fraction}.")
    tok_key = None
    if tokenizer is not None:
        given = load_tokenizer(tokenizer)
        tok_key = tokenizer_fingerprint(given)
    settings = {
        "version": STORE_VERSION, "corpus": fingerprint, "vocab_size": vocab_size,
        "min_frequency": min_frequency, "tokenizer": tok_key, "heldout_fraction": heldout_fraction,
        "seed": seed, "tokenizer_train_chars": tokenizer_train_chars,
    }
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    root = cache / key
    if (root / "meta.json").exists():
        return _open_store(root)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{key}.tmp-", dir=cache))
    try:
        if tokenizer is not None:
            tok = given
        else:
            errors: list[BaseException] = []
            texts = _texts_for_tokenizer(pieces, tokenizer_train_chars, errors)
            tok = train_tokenizer(texts, vocab_size, min_frequency)
            if errors:  # a reader error inside the Rust trainer's iterator: re-raise it as it was
                raise errors[0]
        meta = _tokenize_into(tmp, tok, pieces, heldout_fraction, seed)
        meta.update(settings=settings, description=description)
        tok.save(str(tmp / "tokenizer.json"))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        try:
            os.rename(tmp, root)
        except OSError:  # another process built the same store meanwhile: use theirs
            if not (root / "meta.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return _open_store(root)


def _open_store(root: Path) -> TokenStore:
    from tokenizers import Tokenizer

    meta = json.loads((root / "meta.json").read_text())
    tok = Tokenizer.from_file(str(root / "tokenizer.json"))
    return TokenStore(root, tok, meta)


def _texts_for_tokenizer(pieces: PieceSource, limit_chars: int, errors: list[BaseException]) -> Iterator[str]:
    seen = 0
    try:
        for p in pieces():
            if p.text:
                yield p.text
                seen += len(p.text)
                if seen >= limit_chars:
                    return
    except Exception as exc:  # keep it: exceptions crossing the Rust boundary lose their type
        errors.append(exc)


def _tokenize_into(root: Path, tok: Any, pieces: PieceSource, heldout_fraction: float, seed: int) -> dict[str, Any]:
    """Stream pieces through the tokenizer into ``{train,heldout}.bin``; return the meta dict."""
    sp = special_ids(tok)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    dtype = np.uint16 if vocab <= np.iinfo(np.uint16).max else np.uint32
    files = {s: open(root / f"{s}.bin", "wb") for s in SPLITS}
    counts = {s: 0 for s in SPLITS}
    starts = {s: array("q") for s in SPLITS}
    labels = {s: array("i") for s in SPLITS}
    label_ids: dict[str, int] = {}
    n_docs = 0
    split = None  # split of the document in progress
    pending: list[Piece] = []

    def flush() -> None:
        nonlocal n_docs, split
        for piece, ids in zip(pending, encode_batches(tok, (p.text for p in pending))):
            if split is None:  # first piece of a new document
                split = piece.split or ("heldout" if _mix(seed, n_docs) < heldout_fraction else "train")
                if split not in files:
                    raise DataError(f"A text piece asked for split '{split}'; use one of {', '.join(SPLITS)}.")
                starts[split].append(counts[split])
                lab = -1 if piece.label is None else label_ids.setdefault(piece.label, len(label_ids))
                labels[split].append(lab)
                n_docs += 1
            if piece.end:
                ids = list(ids) + [sp.eos]
            if ids:
                files[split].write(np.asarray(ids, dtype=dtype).tobytes())
                counts[split] += len(ids)
            if piece.end:
                split = None
        pending.clear()

    try:
        pending_chars = 0
        for piece in pieces():
            pending.append(piece)
            pending_chars += len(piece.text)
            if len(pending) >= 512 or pending_chars >= 16 * MAX_PIECE_CHARS:  # bounded memory
                flush()
                pending_chars = 0
        flush()
    finally:
        for fh in files.values():
            fh.close()
    total = counts["train"] + counts["heldout"]
    if n_docs == 0 or total == 0:
        raise DataError("The corpus holds no text (every document was empty). Check --data.")
    # Remap label ids to sorted names so ids do not depend on reading order.
    names = sorted(label_ids)
    remap = np.full(len(label_ids) + 1, -1, dtype=np.int32)
    position = {name: i for i, name in enumerate(names)}
    for name, old in label_ids.items():
        remap[old] = position[name]
    docs = {}
    for s in SPLITS:
        lab = np.frombuffer(labels[s], dtype=np.int32) if len(labels[s]) else np.zeros(0, np.int32)
        st = np.frombuffer(starts[s], dtype=np.int64) if len(starts[s]) else np.zeros(0, np.int64)
        docs[s] = [np.append(st, counts[s]),
                   np.where(lab >= 0, remap[np.maximum(lab, 0)], -1).astype(np.int32)]
    carved = False
    if heldout_fraction > 0 and counts["heldout"] < 0.25 * heldout_fraction * total:
        carved = True
        cut = int(counts["train"] * (1 - heldout_fraction))
        _carve_tail(root, docs, counts, cut, dtype)
    for s in SPLITS:
        np.save(root / f"{s}_docs.npy", docs[s][0])
        np.save(root / f"{s}_labels.npy", docs[s][1])
    return {
        "dtype": np.dtype(dtype).name, "vocab_size": vocab, "tokens": counts,
        "documents": {s: int(len(docs[s][1])) for s in SPLITS}, "label_names": names,
        "heldout_from_tail": carved,
    }


def _carve_tail(root: Path, docs: dict[str, list[np.ndarray]], counts: dict[str, int], cut: int, dtype: Any) -> None:
    """Move train tokens ``[cut:]`` to the end of the held-out stream as one unlabelled document."""
    itemsize = np.dtype(dtype).itemsize
    with open(root / "train.bin", "rb") as src, open(root / "heldout.bin", "ab") as dst:
        src.seek(cut * itemsize)
        shutil.copyfileobj(src, dst, 1 << 20)
    os.truncate(root / "train.bin", cut * itemsize)
    moved = counts["train"] - cut
    h_starts, h_labels = docs["heldout"]
    docs["heldout"] = [np.append(h_starts[:-1], [counts["heldout"], counts["heldout"] + moved]),
                       np.append(h_labels, -1).astype(np.int32)]
    t_starts, t_labels = docs["train"]
    keep = int(np.searchsorted(t_starts[:-1], cut, side="left"))
    docs["train"] = [np.append(t_starts[:keep], cut), t_labels[:keep]]
    counts["heldout"] += moved
    counts["train"] = cut


# ---------------------------------------------------------------------- datasets
class _MemmapDataset(Dataset):
    """Opens the token memory map lazily (per DataLoader worker)."""

    def __init__(self, store: TokenStore, split: str) -> None:
        self.store, self.split = store, split
        self._tokens: np.ndarray | None = None

    @property
    def tokens(self) -> np.ndarray:
        if self._tokens is None:
            self._tokens = self.store.tokens(self.split)
        return self._tokens

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_tokens"] = None
        return state


class PackedBlocks(_MemmapDataset):
    """Causal-LM blocks: the split's stream (documents joined by ``<eos>``) cut every
    ``block_size`` tokens, as in GPT-2. The last block is padded; ``attention_mask`` marks real
    tokens. The model keeps attention inside each document using the ``<eos>`` separators."""

    def __init__(self, store: TokenStore, split: str, block_size: int) -> None:
        super().__init__(store, split)
        self.block_size = block_size
        self.n = int(store.meta["tokens"][split])
        self.pad = store.specials.pad

    def __len__(self) -> int:
        return (self.n + self.block_size - 1) // self.block_size

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        start = i * self.block_size
        ids = np.asarray(self.tokens[start:start + self.block_size], dtype=np.int64)
        return _pad(ids, self.block_size, self.pad)


class SentenceSegments(_MemmapDataset):
    """Masked-LM inputs: ``<cls> segment <sep>`` with whole sentences packed up to the block
    size (RoBERTa's FULL-SENTENCES; ``<eos>`` inside a segment separates documents)."""

    def __init__(self, store: TokenStore, split: str, block_size: int) -> None:
        super().__init__(store, split)
        if block_size < 8:
            raise DataError(f"block_size {block_size} is too small for masked-LM segments; use 16 or more.")
        self.block_size = block_size
        self.segments = store.segments(split, block_size - 2)
        sp = store.specials
        self.cls, self.sep, self.pad = sp.cls, sp.sep, sp.pad

    def __len__(self) -> int:
        return len(self.segments)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        start, length = (int(v) for v in self.segments[i])
        ids = np.asarray(self.tokens[start:start + length], dtype=np.int64)
        ids = np.concatenate([[self.cls], ids, [self.sep]])
        return _pad(ids, self.block_size, self.pad)


class DocumentHeads(_MemmapDataset):
    """Labelled probe samples: the opening of each labelled document of a split.

    ``mode="mlm"``: ``<cls> first block_size-2 tokens <sep>``; ``mode="clm"``: ``<eos>`` (the
    document-start token the causal model was trained with) then the first block_size-1 tokens.
    """

    def __init__(self, store: TokenStore, split: str, block_size: int, mode: str,
                 max_docs: int | None = None, seed: int = 0) -> None:
        super().__init__(store, split)
        starts, labels = store.docs(split)
        idx = np.flatnonzero(labels >= 0)
        if max_docs is not None and len(idx) > max_docs:
            idx = np.sort(np.random.default_rng(seed).choice(idx, max_docs, replace=False))
        # shortest documents first: batches of similar length waste little compute on padding
        order = np.argsort(np.minimum(starts[idx + 1] - starts[idx], block_size), kind="stable")
        idx = idx[order]
        self.starts, self.ends, self.labels = starts[idx], starts[idx + 1], labels[idx]
        self.block_size, self.mode = block_size, mode
        sp = store.specials
        self.sp = sp

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Tensor | int]:
        s, e = int(self.starts[i]), int(self.ends[i])
        body = np.asarray(self.tokens[s:e], dtype=np.int64)
        body = body[body != self.sp.eos]
        if self.mode == "mlm":
            ids = np.concatenate([[self.sp.cls], body[: self.block_size - 2], [self.sp.sep]])
        else:
            ids = np.concatenate([[self.sp.eos], body[: self.block_size - 1]])
        out: dict[str, Tensor | int] = dict(_pad(ids, self.block_size, self.sp.pad))
        out["label"] = int(self.labels[i])
        return out


def trim_collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples, then drop trailing columns that are padding in every row of the batch."""
    from ssl_core.data import default_collate

    batch = default_collate(samples)
    mask = batch.get("attention_mask")
    if isinstance(mask, Tensor) and mask.ndim == 2 and mask.shape[1] > 0:
        used = int(mask.any(0).nonzero().max()) + 1 if bool(mask.any()) else 1
        if used < mask.shape[1]:
            batch["input_ids"] = batch["input_ids"][:, :used]
            batch["attention_mask"] = mask[:, :used]
    return batch


def _pad(ids: np.ndarray, length: int, pad: int) -> dict[str, Tensor]:
    n = len(ids)
    input_ids = torch.full((length,), pad, dtype=torch.long)
    input_ids[:n] = torch.from_numpy(ids)
    mask = torch.zeros(length, dtype=torch.long)
    mask[:n] = 1
    return {"input_ids": input_ids, "attention_mask": mask}
