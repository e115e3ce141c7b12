"""Dataset ``captions_wds_stream``: image-caption pairs streamed from WebDataset shards, held-out
pairs read into memory from separate shards, and a short in-process run on streamed shards."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from ssl_core.data import ResumableStream, default_collate
from ssl_core.errors import DataError
from ssl_clip.data import TensorPairDataset
from ssl_clip.stream import captions_wds_stream

WORDS = ["zero", "one", "two"]


@pytest.fixture
def pair_shards(tmp_path: Path, digit_rgb, png_bytes, write_shard) -> Path:  # type: ignore[no-untyped-def]
    """2 training shards (with one broken image and one pair without caption) and 2 labelled
    evaluation shards of real digit scans."""
    pairs = digit_rgb(8)  # 24 images, 3 classes
    for s in range(2):
        rows = [(f"t{s}_{k:03d}", png_bytes(arr), f"a handwritten {WORDS[c]}", str(c))
                for k, (arr, c) in enumerate(pairs[s::2])]
        if s == 0:
            rows += [("broken", b"\x89PNG\r\n\x1a\n not a png", "a broken image", "1"),
                     ("mute", png_bytes(pairs[0][0]), None, "0")]
        write_shard(tmp_path / f"train-{s:03d}.tar", rows)
        write_shard(tmp_path / f"eval-{s:03d}.tar",
                    [(f"e{s}_{k:03d}", png_bytes(arr), f"the digit {WORDS[c]}, scan {k}", WORDS[c])
                     for k, (arr, c) in enumerate(pairs[s::2])])
    return tmp_path


def test_stream_yields_pairs_and_eval_is_in_memory(pair_shards: Path) -> None:
    data = captions_wds_stream(str(pair_shards / "train-{000..001}.tar"), image_size=16, shuffle_buffer=4,
                               eval_path=str(pair_shards / "eval-*.tar"))
    assert isinstance(data.train, ResumableStream)
    batches = list(DataLoader(data.train, batch_size=5, num_workers=2, collate_fn=data.collate or default_collate))
    images = torch.cat([b["image"] for b in batches])
    captions = [c for b in batches for c in b["caption"]]
    assert images.shape == (24, 3, 16, 16) and images.dtype == torch.uint8  # the 24 good pairs
    assert all(c.startswith("a handwritten ") for c in captions) and "label" not in batches[0]
    assert isinstance(data.eval_train, TensorPairDataset) and isinstance(data.eval_test, TensorPairDataset)
    assert data.class_names == ["one", "two", "zero"] and data.num_classes == 3
    assert len(data.eval_train) + len(data.eval_test) == 24 and len(data.eval_test) == 6  # stratified 20%
    for i in range(len(data.eval_test)):
        sample = data.eval_test[i]
        assert sample["image"].shape == (3, 16, 16)
        assert sample["caption"].startswith(f"the digit {data.class_names[sample['label']]},")
    assert data.extras["encoder_kwargs"] == {"image_size": 16} and data.extras["zero_shot_templates"]


def test_bad_pairs_are_skipped_with_warnings(pair_shards: Path) -> None:
    data = captions_wds_stream(str(pair_shards / "train-000.tar"), image_size=8, shuffle_buffer=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = list(data.train)
    messages = " ".join(str(w.message) for w in caught)
    assert "train-000.tar:broken.png" in messages and "train-000.tar:mute" in messages
    assert len(got) == 12 and data.eval_test is None


def test_unlabelled_eval_shards_give_a_retrieval_split(pair_shards: Path, write_shard, png_bytes, digit_rgb) -> None:  # type: ignore[no-untyped-def]
    write_shard(pair_shards / "plain.tar", [(f"p{k}", png_bytes(arr), f"scan {k}", None)
                                            for k, (arr, _) in enumerate(digit_rgb(4))])
    data = captions_wds_stream(str(pair_shards / "train-001.tar"), eval_path=str(pair_shards / "plain.tar"),
                               test_fraction=0.25)
    assert data.eval_train is None and data.eval_test is None
    assert len(data.extras["retrieval_split"]) == 3
    with pytest.raises(DataError, match="needs --data"):
        captions_wds_stream(None)
    with pytest.raises(DataError, match="cannot be split with test_fraction=0.2: raise dataset_kwargs.eval_samples"):
        captions_wds_stream(str(pair_shards / "train-001.tar"), eval_path=str(pair_shards / "plain.tar"), eval_samples=2)


def test_short_clip_run_on_streamed_shards(pair_shards: Path, tmp_path: Path, registry, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SSLKIT_ALLOW_PIPE", "1")  # the pipe: spec below is the test's own
    from ssl_core.runner import resolve_config, run_experiment

    cfg = resolve_config("clip", registry=registry, overrides={
        "dataset": "captions_wds_stream", "data": f"pipe:cat {pair_shards / 'train-000.tar'}::{pair_shards / 'train-001.tar'}",
        "dataset_kwargs": {"eval_path": str(pair_shards / "eval-{000..001}.tar"), "image_size": 16, "shuffle_buffer": 8},
        "out": str(tmp_path / "run"), "evaluators": ["clip_retrieval", "clip_zero_shot", "knn", "health"],
        "train": {"epochs": None, "steps": 3, "batch_size": 8, "progress": False, "health_every": 0}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the broken pairs are reported in every epoch
        outcome = run_experiment(cfg, registry=registry)
    assert outcome.train.steps == 3
    trained = outcome.metrics["trained"]
    assert {"i2t_r1", "t2i_r1", "zeroshot_top1", "knn_top1", "effective_rank"} <= set(trained)
