"""Subword tokenizer: a byte-level BPE trained on the user's corpus with the ``tokenizers`` library.

Byte-level BPE (Sennrich et al., "Neural Machine Translation of Rare Words with Subword Units",
ACL 2016; byte-level variant from Radford et al., "Language Models are Unsupervised Multitask
Learners", 2019, and RoBERTa) has no unknown token and decodes back to exactly the input text,
so one tokenizer serves both objectives. Training is deterministic for a given corpus and
settings, which is what lets ``ssl eval RUN_DIR`` rebuild the very same vocabulary.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from ssl_core.errors import DataError

if TYPE_CHECKING:  # imported lazily at run time: `tokenizers` loads only when text is used
    from tokenizers import Tokenizer

PAD, EOS, CLS, SEP, MASK = "<pad>", "<eos>", "<cls>", "<sep>", "<mask>"
SPECIAL_TOKENS = (PAD, EOS, CLS, SEP, MASK)
"""Added to every tokenizer; a trained one gets ids 0..4 in this order."""


@dataclass(frozen=True)
class SpecialIds:
    """Ids of the special tokens in one tokenizer."""

    pad: int
    eos: int
    cls: int
    sep: int
    mask: int

    def all(self) -> list[int]:
        """Every special id, sorted."""
        return sorted({self.pad, self.eos, self.cls, self.sep, self.mask})


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2) -> "Tokenizer":
    """Train a byte-level BPE tokenizer on an iterator of texts (streamed, never all in memory)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise DataError(
            f"tokenizer vocab_size {vocab_size} is too small: a byte-level BPE needs at least "
            f"{256 + len(SPECIAL_TOKENS)} (256 bytes + {len(SPECIAL_TOKENS)} special tokens). "
            "Set --set dataset_kwargs.vocab_size=4096 or more."
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def load_tokenizer(path: str | Path) -> "Tokenizer":
    """Load a ``tokenizer.json`` (from ``tokenizers``/Hugging Face) and add missing special tokens."""
    from tokenizers import Tokenizer

    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"Tokenizer file {path} does not exist. Pass a tokenizer.json written by the "
            "`tokenizers` library (e.g. RUN_DIR/tokenizer.json), or drop dataset_kwargs.tokenizer "
            "to train one on your corpus."
        )
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises a plain Exception on bad JSON
        raise DataError(f"Could not read tokenizer {path}: {exc}. Is it a tokenizers JSON file?") from exc
    missing = [t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None]
    if missing:
        tok.add_special_tokens(missing)
    return tok


def special_ids(tok: "Tokenizer") -> SpecialIds:
    """The ids of ``<pad> <eos> <cls> <sep> <mask>`` in ``tok``."""
    ids = [tok.token_to_id(t) for t in SPECIAL_TOKENS]
    if any(i is None for i in ids):
        raise DataError(f"Tokenizer lacks special tokens {SPECIAL_TOKENS}; load it with load_tokenizer().")
    return SpecialIds(*ids)  # type: ignore[arg-type]


def tokenizer_fingerprint(tok: "Tokenizer") -> str:
    """A short hash of the tokenizer's full JSON (vocabulary, merges, settings)."""
    return hashlib.sha256(tok.to_str().encode("utf-8")).hexdigest()[:16]


def encode_batches(tok: "Tokenizer", texts: Iterable[str], batch: int = 256) -> Iterator[list[int]]:
    """Token ids of each text, encoded ``batch`` texts at a time (parallel in the Rust core)."""
    buf: list[str] = []
    for t in texts:
        buf.append(t)
        if len(buf) >= batch:
            for enc in tok.encode_batch(buf, add_special_tokens=False):
                yield enc.ids
            buf = []
    if buf:
        for enc in tok.encode_batch(buf, add_special_tokens=False):
            yield enc.ids
