"""Shared fixtures: a private token cache for the session and small real corpora."""

from __future__ import annotations

import json
import os
from pathlib import Path

# On a shared CPU, OpenMP threads that spin while waiting make torch ops 10-100x slower; waiting
# passively costs nothing when the machine is idle. Must be set before torch starts its pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

TOPICS = {  # pydoc language-reference topics used as a small real corpus with labels
    "class": "class", "function": "function", "try": "try", "import": "import",
    "if": None, "while": None, "for": None, "with": None, "lambda": None, "raise": None,
}


@pytest.fixture(scope="session", autouse=True)
def text_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every store (and every `ssl` subprocess) of this session uses one fresh cache folder."""
    cache = tmp_path_factory.mktemp("ssl_text_cache")
    old = os.environ.get("SSL_TEXT_CACHE")
    os.environ["SSL_TEXT_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("SSL_TEXT_CACHE", None)
    else:
        os.environ["SSL_TEXT_CACHE"] = old


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny test models gain nothing from more threads, and a busy shared CPU loses a lot."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def topic_docs() -> list[dict]:
    """Paragraphs of Python's language reference (pydoc topics), some labelled by topic."""
    from pydoc_data.topics import topics

    docs = []
    for name, label in TOPICS.items():
        for para in topics[name].split("\n\n"):
            if len(para.strip()) > 40:
                docs.append({"text": para.strip(), "label": label})
    return docs


@pytest.fixture(scope="session")
def jsonl_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JSONL file of ~200 real paragraphs; about half carry a label."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for d in topic_docs():
            fh.write(json.dumps(d if d["label"] else {"text": d["text"]}) + "\n")
    return path


@pytest.fixture(scope="session")
def builtin_clm():
    """The built-in corpus as causal-LM blocks of 64 tokens (built once per session)."""
    from ssl_text.data import python_docs

    return python_docs(mode="clm", block_size=64, vocab_size=1024)
