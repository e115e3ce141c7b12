"""Text data sources: the built-in Python documentation corpus and the user's files.

Both tokenize the corpus once into a cached, memory-mapped :class:`~ssl_text.store.TokenStore`
(keyed by a fingerprint of the corpus and the tokenizer settings, so ``ssl eval RUN_DIR`` finds
the same tokenizer again) and return a :class:`~ssl_core.interfaces.DataModule` whose

- ``train`` holds causal-LM blocks (``mode="clm"``) or masked-LM sentence segments
  (``mode="mlm"``) of the training documents, as ``{"input_ids", "attention_mask"}``;
- ``eval_train``/``eval_test`` hold the opening of each labelled document (train / held-out
  documents) with its ``label``, for the kNN / linear / few-shot probes;
- ``extras["lm_heldout"]`` holds held-out blocks/segments for perplexity or masked accuracy,
  ``extras["tokenizer"]`` the tokenizer, and ``extras["*_kwargs"]`` the vocabulary size and
  special-token ids the encoder, masking augmenter and objective need.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ssl_core.errors import DataError
from ssl_core.interfaces import DataModule
from ssl_text.corpus import (
    DEFAULT_FAMILIES, Piece, file_pieces, files_fingerprint, list_corpus_files, python_doc_pieces,
    python_docs_fingerprint,
)
from ssl_text.store import DocumentHeads, PackedBlocks, SentenceSegments, TokenStore, build_store, trim_collate

MODES = ("mlm", "clm")


def _check_mode(mode: str, block_size: int) -> None:
    if mode not in MODES:
        raise DataError(f"dataset_kwargs.mode is '{mode}'; choose 'mlm' (masked LM) or 'clm' (causal LM).")
    if block_size < 16:
        raise DataError(f"dataset_kwargs.block_size must be at least 16 tokens, got {block_size}.")


def _datamodule(store: TokenStore, mode: str, block_size: int, max_probe_docs: int, seed: int,
                description: str, probe_tokens: int, prompts: Sequence[str] = ("The",)) -> DataModule:
    make = PackedBlocks if mode == "clm" else SentenceSegments
    train = make(store, "train", block_size)
    heldout = make(store, "heldout", block_size)
    if len(train) == 0:
        raise DataError(f"The training split of {description} is empty; add text or lower heldout_fraction.")
    sp = store.specials
    probe_len = min(block_size, probe_tokens)
    probe_train = DocumentHeads(store, "train", probe_len, mode, max_probe_docs, seed)
    probe_test = DocumentHeads(store, "heldout", probe_len, mode, max_probe_docs // 2, seed)
    names = store.label_names
    both = set(probe_train.labels.tolist()) & set(probe_test.labels.tolist())
    labelled = len(both) >= 2
    extras: dict[str, Any] = {
        "encoder_kwargs": {"vocab_size": store.vocab_size, "max_len": block_size, "pad_id": sp.pad,
                           "eos_id": sp.eos, "special_ids": sp.all()},
        "augmenter_kwargs": {"vocab_size": store.vocab_size, "mask_id": sp.mask, "special_ids": sp.all()},
        "objective_kwargs": {"data_mode": mode},
        "tokenizer": store.tokenizer,
        "special_ids": sp,
        "lm_heldout": heldout,
        "store_dir": str(store.root),
        "text_mode": mode,
        "sample_prompts": list(prompts),
    }
    tokens = store.meta["tokens"]
    desc = (f"{description}: {tokens['train']:,} train / {tokens['heldout']:,} held-out tokens, "
            f"vocab {store.vocab_size}, {len(train):,} {mode} samples of {block_size} tokens")
    if not labelled:
        return DataModule(train=train, collate=trim_collate, description=desc + " (no labels: probes skipped)",
                          extras=extras)
    return DataModule(
        train=train, eval_train=probe_train, eval_test=probe_test, collate=trim_collate, num_classes=len(names),
        class_names=names, description=desc + f", {len(names)} labelled classes", extras=extras,
    )


def python_docs(
    path: str | None = None,
    mode: str = "mlm",
    block_size: int = 128,
    vocab_size: int = 4096,
    min_frequency: int = 2,
    tokenizer: str | None = None,
    families: Sequence[str] = DEFAULT_FAMILIES,
    min_chars: int = 80,
    heldout_fraction: float = 0.2,
    max_probe_docs: int = 2000,
    probe_tokens: int = 64,
    seed: int = 0,
    cache_dir: str | None = None,
) -> DataModule:
    """Built-in corpus: the documentation prose that ships inside every CPython install.

    About 4,500 standard-library docstrings (modules, classes, functions; >= ``min_chars``
    characters; read from the sources with :mod:`ast`, nothing imported) plus the 79
    language-reference topics of ``pydoc_data.topics`` (what ``help('if')`` shows): ~2 MB of
    real technical English written by the CPython developers, available offline everywhere.

    Labels: a docstring from one of the ``families`` (top-level stdlib package: asyncio, email,
    importlib, logging, tkinter, unittest, xml, http, decimal) is labelled with it (~1,500
    documents), so probes ask "which part of the library does this text document?". Other
    docstrings and the topics are unlabelled training text. A fifth of the documents (fixed
    hash) are held out for perplexity / masked accuracy and the probe test split.

    Why this corpus: no PyPI package we checked ships a sizeable labelled prose corpus inside
    its wheel, and Debian's ``fortunes`` needs apt; Python's own documentation is guaranteed to
    be present wherever this plugin runs. The text includes some code examples (doctests).
    """
    if path:
        raise DataError("The built-in 'pydocs' corpus takes no --data; use the 'textfiles' dataset for your files.")
    _check_mode(mode, block_size)
    families = tuple(families)
    cached: list[list[Piece]] = []

    def pieces():  # type: ignore[no-untyped-def]
        if not cached:
            cached.append(python_doc_pieces(families, min_chars))
        return iter(cached[0])

    store = build_store(
        pieces, "pydocs-" + python_docs_fingerprint(families, min_chars), vocab_size=vocab_size,
        min_frequency=min_frequency, tokenizer=tokenizer, heldout_fraction=heldout_fraction, seed=seed,
        cache_dir=cache_dir, description="Python documentation (stdlib docstrings + pydoc topics)",
    )
    return _datamodule(store, mode, block_size, max_probe_docs, seed, "Python documentation corpus", probe_tokens,
                       prompts=("Return the", "This module provides", "An exception is raised when"))


def text_files(
    path: str | None = None,
    mode: str = "mlm",
    block_size: int = 128,
    vocab_size: int = 4096,
    min_frequency: int = 2,
    tokenizer: str | None = None,
    text_field: str = "text",
    label_field: str | None = "label",
    doc_split: str = "blank_line",
    encoding: str = "utf-8",
    heldout_fraction: float = 0.1,
    max_probe_docs: int = 4000,
    probe_tokens: int = 64,
    seed: int = 0,
    cache_dir: str | None = None,
    tokenizer_train_chars: int = 200_000_000,
) -> DataModule:
    """Your corpus: a ``.txt``/``.md``/``.rst`` or ``.jsonl`` file (``.gz`` too), or a folder of them.

    - Plain text: documents are separated by blank lines (``doc_split="blank_line"``), or are
      single lines (``"line"``) or whole files (``"file"``).
    - JSONL: one JSON object per line; ``text_field`` holds the document and ``label_field``
      (optional) its label.
    - Folders are searched recursively; with two or more sub-folders, each file's first-level
      sub-folder is its label (``corpus/<label>/*.txt``).

    The corpus is streamed (never held in memory) into memory-mapped token files; the byte-level
    BPE tokenizer is trained on its first ``tokenizer_train_chars`` characters (or loaded from
    ``tokenizer``, a tokenizer.json path). Probes read the first ``probe_tokens`` tokens of each
    labelled document.
    Labelled documents feed the probes; without labels only perplexity / masked accuracy apply.
    """
    if not path:
        raise DataError("The 'textfiles' dataset needs --data PATH (a .txt/.jsonl file or a folder of them).")
    _check_mode(mode, block_size)
    files, labels = list_corpus_files(path)
    settings = {"text_field": text_field, "label_field": label_field, "doc_split": doc_split, "encoding": encoding}
    source = file_pieces(files, labels, text_field, label_field, doc_split, encoding)
    store = build_store(
        source, "files-" + files_fingerprint(files, labels, settings), vocab_size=vocab_size,
        min_frequency=min_frequency, tokenizer=tokenizer, heldout_fraction=heldout_fraction, seed=seed,
        cache_dir=cache_dir, description=f"text files under {path}", tokenizer_train_chars=tokenizer_train_chars,
    )
    return _datamodule(store, mode, block_size, max_probe_docs, seed, f"{len(files)} text file(s) from {Path(path)}",
                       probe_tokens)


def hf_text(
    path: str | None = None,
    text_column: str = "text",
    label_column: str | None = "label",
    split: str = "train",
    mode: str = "mlm",
    block_size: int = 128,
    vocab_size: int = 4096,
    min_frequency: int = 2,
    tokenizer: str | None = None,
    heldout_fraction: float = 0.1,
    max_probe_docs: int = 4000,
    probe_tokens: int = 64,
    seed: int = 0,
    cache_dir: str | None = None,
    tokenizer_train_chars: int = 200_000_000,
) -> DataModule:
    """A Hugging Face text dataset on disk (save_to_disk folder, .arrow or .parquet files).

    Each row of ``split`` is one document, read from ``text_column``; ``label_column`` (a
    ClassLabel or any values; optional) labels it for the probes. Tokenizer training, held-out
    documents and packing work as for ``textfiles``.
    """
    import hashlib
    import json

    from ssl_core.hf_data import check_columns, class_labels, open_hf

    _check_mode(mode, block_size)
    hf = open_hf(path, split)
    check_columns(hf.train, hf.source, text_column=text_column)
    labels, names = class_labels(hf.train, label_column)
    table = hf.train

    def pieces():  # type: ignore[no-untyped-def]
        for i, text in enumerate(table[text_column]):
            if text:
                yield Piece(str(text), None if labels is None else names[labels[i]])  # type: ignore[index]

    settings = {"split": split, "text": text_column, "label": label_column, "fingerprint": table._fingerprint}
    fingerprint = "hf-" + hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]
    store = build_store(
        pieces, fingerprint, vocab_size=vocab_size, min_frequency=min_frequency, tokenizer=tokenizer,
        heldout_fraction=heldout_fraction, seed=seed, cache_dir=cache_dir, description=f"Hugging Face text {hf.source}",
        tokenizer_train_chars=tokenizer_train_chars,
    )
    return _datamodule(store, mode, block_size, max_probe_docs, seed, f"{len(table)} documents from {hf.source}",
                       probe_tokens)
