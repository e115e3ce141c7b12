"""Reader for the WordNet 3.0 database files (``data.noun``, ``data.verb``, ``data.adj``, ``data.adv``).

WordNet (Miller, "WordNet: A Lexical Database for English", CACM 38(11), 1995; Fellbaum (ed.),
"WordNet: An Electronic Lexical Database", MIT Press 1998) ships as plain-text data files. Each
synset is one line, in the format of ``wndb(5WN)``::

    synset_offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] p_cnt [ptr ...] [frames ...] | gloss

- ``lex_filenum`` (2 decimal digits) is the lexicographer file the synset comes from, numbered
  in the order of ``lexnames(5WN)`` (:data:`LEXNAMES`): ``noun.animal``, ``verb.motion``, ...
- ``w_cnt`` is two hexadecimal digits, ``p_cnt`` three decimal digits, each pointer four fields;
  ``data.verb`` adds verb frames (``f_cnt`` then ``+ f_num w_num`` triples).
- the gloss after ``|`` holds the definition and, separated by ``;``, quoted example sentences.

Lines starting with two spaces are the licence header. Debian/Ubuntu install the files with
``apt-get install --no-install-recommends wordnet-base`` into ``/usr/share/wordnet``; on another
system point :func:`find_wordnet` at any WordNet 3.0 ``dict`` folder (the Princeton release's
``WordNet-3.0/dict``, or NLTK's ``nltk_data/corpora/wordnet``) with a path or the standard
``WNSEARCHDIR`` / ``WNHOME`` environment variables.

Every error names the file (and line), what is wrong and how to fix it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ssl_core.errors import DataError

LEXNAMES: tuple[str, ...] = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling",
    "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption", "verb.contact", "verb.creation",
    "verb.emotion", "verb.motion", "verb.perception", "verb.possession", "verb.social", "verb.stative",
    "verb.weather", "adj.ppl",
)
"""The 45 lexicographer files of WordNet 3.0; a synset's ``lex_filenum`` indexes this tuple."""

PARTS: tuple[str, ...] = ("noun", "verb", "adj", "adv")
"""The parts of speech, each in its own ``data.<part>`` file."""

_SS_TYPES = {"noun": "n", "verb": "v", "adj": "as", "adv": "r"}  # 's' = adjective satellite
_POINTER_FIELDS = 4
_ADJ_MARKER = re.compile(r"\((?:a|p|ip)\)$")  # syntactic position markers on adjectives, e.g. galore(ip)

DEFAULT_DIRS: tuple[str, ...] = ("/usr/share/wordnet",)
"""Where Debian/Ubuntu's ``wordnet-base`` puts the files (checked after the environment)."""

INSTALL_HINT = (
    "On Debian/Ubuntu install it with `apt-get install --no-install-recommends wordnet-base` "
    "(bash scripts/install.sh does this when it runs as root). Elsewhere, point sslkit at a "
    "WordNet 3.0 'dict' folder holding data.noun, data.verb, data.adj and data.adv (the Princeton "
    "release's WordNet-3.0/dict, or NLTK's nltk_data/corpora/wordnet): set WNSEARCHDIR=/path/to/dict, "
    "or pass --dataset wordnet --data /path/to/dict."
)


@dataclass(frozen=True)
class Synset:
    """One WordNet synset: its lexicographer class, its words and its gloss."""

    offset: int
    part: str
    lexname: str
    words: tuple[str, ...]
    gloss: str

    @property
    def text(self) -> str:
        """The synset as a dictionary entry: ``word, other word: definition; "example"``."""
        return f"{', '.join(self.words)}: {self.gloss}"


def find_wordnet(path: str | Path | None = None) -> Path:
    """The folder holding WordNet's ``data.*`` files.

    Looks at ``path`` if given, else ``$WNSEARCHDIR``, ``$WNHOME/dict`` (WordNet's own
    environment variables), then ``/usr/share/wordnet`` (Debian's ``wordnet-base``).
    """
    if path:
        candidates = [(Path(path).expanduser(), "--data")]
    else:
        candidates = []
        if os.environ.get("WNSEARCHDIR"):
            candidates.append((Path(os.environ["WNSEARCHDIR"]).expanduser(), "$WNSEARCHDIR"))
        if os.environ.get("WNHOME"):
            candidates.append((Path(os.environ["WNHOME"]).expanduser() / "dict", "$WNHOME/dict"))
        candidates += [(Path(d), "default") for d in DEFAULT_DIRS]
    for folder, source in candidates:
        if (folder / "data.noun").is_file():
            return folder
        if source != "default":  # an explicit choice that does not hold WordNet is an error, not a fallback
            raise DataError(f"{folder} (from {source}) holds no WordNet data file data.noun. {INSTALL_HINT}")
    looked = ", ".join(str(f) for f, _ in candidates)
    raise DataError(f"WordNet is not installed: no data.noun in {looked}. {INSTALL_HINT}")


def _corrupt(path: Path, lineno: int, what: str) -> DataError:
    return DataError(
        f"{path}, line {lineno}: {what}. This is not a WordNet 3.0 data file in the wndb(5WN) format, "
        f"or it is damaged or truncated; reinstall it (`apt-get install --reinstall wordnet-base` on "
        f"Debian/Ubuntu) or point WNSEARCHDIR at an intact copy."
    )


def parse_line(line: str, part: str, path: Path, lineno: int) -> Synset:
    """Parse one synset line of ``data.<part>``; raise :class:`DataError` naming the file and line."""
    head, sep, gloss = line.partition("|")
    if not sep:
        raise _corrupt(path, lineno, "no '|' before the gloss")
    f = head.split()
    if len(f) < 6:
        raise _corrupt(path, lineno, f"only {len(f)} fields before the gloss")
    try:
        offset = int(f[0])
        lex = int(f[1])
        n_words = int(f[3], 16)
    except ValueError:
        raise _corrupt(path, lineno, f"synset offset '{f[0]}', lex_filenum '{f[1]}' or w_cnt '{f[3]}' "
                                     "is not a number") from None
    if not 0 <= lex < len(LEXNAMES):
        raise _corrupt(path, lineno, f"lex_filenum {lex} is outside 0..{len(LEXNAMES) - 1}")
    lexname = LEXNAMES[lex]
    if f[2] not in _SS_TYPES[part] or lexname.split(".")[0] != part:
        raise _corrupt(path, lineno, f"synset type '{f[2]}' / lexicographer file {lexname} do not belong in data.{part}")
    p_at = 4 + 2 * n_words
    if n_words < 1 or len(f) <= p_at:
        raise _corrupt(path, lineno, f"w_cnt says {n_words} words but the line ends early")
    try:
        n_pointers = int(f[p_at])
    except ValueError:
        raise _corrupt(path, lineno, f"pointer count '{f[p_at]}' is not a number") from None
    rest = f[p_at + 1:]
    if len(rest) < _POINTER_FIELDS * n_pointers:
        raise _corrupt(path, lineno, f"p_cnt says {n_pointers} pointers but only {len(rest)} fields follow")
    frames = rest[_POINTER_FIELDS * n_pointers:]  # verbs only: f_cnt, then '+ f_num w_num' per frame
    if frames and not (part == "verb" and frames[0].isdigit() and len(frames) == 1 + 3 * int(frames[0])):
        raise _corrupt(path, lineno, f"unexpected fields after the pointers: {' '.join(frames[:6])}")
    words = tuple(_ADJ_MARKER.sub("", w).replace("_", " ") for w in f[4:p_at:2])
    gloss = gloss.strip()
    if not gloss:
        raise _corrupt(path, lineno, "the gloss is empty")
    return Synset(offset, part, lexname, words, gloss)


def read_synsets(root: str | Path, part: str) -> Iterator[Synset]:
    """Every synset of ``root/data.<part>`` in file order."""
    if part not in PARTS:
        raise DataError(f"Unknown WordNet part of speech '{part}'; choose from {', '.join(PARTS)}.")
    path = Path(root) / f"data.{part}"
    if not path.is_file():
        raise DataError(f"WordNet data file {path} is missing. {INSTALL_HINT}")
    lineno = 0
    count = 0
    try:
        with open(path, encoding="utf-8", newline="\n") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.startswith("  "):
                    continue  # licence header
                if not line.strip():
                    continue
                yield parse_line(line.rstrip("\r\n"), part, path, lineno)
                count += 1
    except UnicodeDecodeError as exc:
        raise _corrupt(path, lineno + 1, f"bytes that are not valid UTF-8 ({exc.reason})") from exc
    except OSError as exc:
        raise DataError(f"Could not read WordNet data file {path}: {exc}.") from exc
    if count == 0:
        raise DataError(f"WordNet data file {path} holds no synsets (empty or only a header). {INSTALL_HINT}")


def read_wordnet(root: str | Path, parts: Sequence[str] = PARTS) -> list[Synset]:
    """All synsets of the named parts of speech, in a fixed order (part, then file order)."""
    return [s for part in parts for s in read_synsets(root, part)]


def class_counts(synsets: Sequence[Synset]) -> dict[str, int]:
    """Number of synsets per lexicographer class."""
    counts: dict[str, int] = {}
    for s in synsets:
        counts[s.lexname] = counts.get(s.lexname, 0) + 1
    return counts


def balanced_probe_split(
    synsets: Sequence[Synset], classes: Sequence[str], train_per_class: int, test_per_class: int, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a class-balanced, seeded probe set: ``train_per_class`` + ``test_per_class``
    synsets drawn without replacement from each lexicographer class in ``classes``.

    Returns (train indices, test indices), each sorted. The draw depends only on ``seed`` and
    the file contents, never on the order of ``classes``; the test set does not depend on
    ``train_per_class``.
    """
    unknown = [c for c in classes if c not in LEXNAMES]
    if unknown:
        raise DataError(f"Unknown WordNet lexicographer class(es) {unknown}; choose from {', '.join(LEXNAMES)}.")
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise DataError(f"dataset_kwargs.classes must name at least two different classes, got {list(classes)}.")
    if train_per_class < 1 or test_per_class < 1:
        raise DataError(f"train_per_class and test_per_class must be positive, got {train_per_class}, {test_per_class}.")
    need = train_per_class + test_per_class
    by_class: dict[str, list[int]] = {c: [] for c in classes}
    for i, s in enumerate(synsets):
        if s.lexname in by_class:
            by_class[s.lexname].append(i)
    train: list[int] = []
    test: list[int] = []
    for c in sorted(classes):
        members = by_class[c]
        if len(members) < need:
            raise DataError(
                f"WordNet class {c} has {len(members)} glosses, fewer than train_per_class + test_per_class = "
                f"{need}. Lower those settings or choose larger classes."
            )
        # one seeded permutation per class: the test entries come first, so a larger
        # train_per_class keeps the same test set and extends the training set
        pick = np.random.default_rng([seed, LEXNAMES.index(c)]).permutation(np.asarray(members))
        test += pick[:test_per_class].tolist()
        train += pick[test_per_class:need].tolist()
    return np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(test, dtype=np.int64))
