"""Fixtures shared by the core tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def toy_run(tmp_path: Path, ssl_cli) -> Path:  # type: ignore[no-untyped-def]
    """A finished 4-step toy run (checkpoints at steps 2 and 4, no evaluation) in ``tmp_path/run``."""
    out = tmp_path / "run"
    res = ssl_cli("run", "-o", "toy_align", "--steps", "4", "--no-eval", "--set", "train.checkpoint_every=2",
                  "--out", out)
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture(scope="session")
def pydoc_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real English corpus (600 paragraphs of Python's pydoc topics, ~140 kB) as a .txt
    file for ``--dataset textfiles``: it tokenizes in a second, where the text recipes' default
    (WordNet) takes ~25 s of CPU in every process that builds it."""
    from pydoc_data.topics import topics

    paragraphs = [p.strip() for name in sorted(topics) for p in topics[name].split("\n\n") if len(p.strip()) > 40]
    path = tmp_path_factory.mktemp("corpus") / "pydoc_topics.txt"
    path.write_text("\n\n".join(paragraphs[:600]), encoding="utf-8")
    return path
