"""`ssl run --modality image-text --objective clip`, end to end through the console entry point
``ssl_core.cli.main`` in this process: a subprocess would add only Python's and torch's start-up.
Process-level behaviour (signals, torchrun) is tested with real processes in tests/core."""

from __future__ import annotations

import json
from pathlib import Path


def test_cli_builtin_pairs_train_export_and_evaluate(tmp_path: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    res = ssl_cli("run", "--modality", "image-text", "--objective", "clip", "--steps", "4", "--batch-size", "32",
                  "--out", str(out), "--no-progress", "--set", "dataset_kwargs.train_size=200",
                  "--set", "dataset_kwargs.test_size=100")
    assert res.returncode == 0, res.stderr[-3000:]
    from ssl_vision.fashion_mnist import locate

    installed = locate()[0] is not None
    used = "fashion_captions" if installed else "digit_captions"
    assert f"built-in data, dataset {used}" in res.stderr  # the header names the data actually used
    metrics = json.loads((out / "eval.json").read_text())
    for key in ("zeroshot_top1", "i2t_r1", "i2t_r10", "t2i_r5", "knn_top1", "linear_top1", "effective_rank"):
        assert key in metrics["trained"] and key in metrics["random"], key
    assert "zeroshot_top1" in res.stdout and "trained - random" in res.stdout
    cfg = (out / "config.yaml").read_text()
    assert "model: sslkit-clip-tiny" in cfg and f"image_size: {28 if installed else 16}" in cfg
    assert f"dataset: {used}" in cfg
    assert (out / "open_clip" / "open_clip_pytorch_model.bin").is_file()
    assert (out / "encoder.pt").is_file()
    # `ssl eval` rebuilds the encoder from the run directory and scores it again
    res = ssl_cli("eval", str(out), "--no-random", "-e", "clip_retrieval")
    assert res.returncode == 0, res.stderr[-3000:]
    again = json.loads((out / "eval.json").read_text())["trained"]
    assert again["i2t_r10"] == metrics["trained"]["i2t_r10"]


def test_cli_user_csv_pairs(csv_pairs_dir: Path, tmp_path: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    res = ssl_cli("run", "--modality", "image-text", "--objective", "clip", "--data", str(csv_pairs_dir / "pairs.csv"),
                  "--steps", "2", "--batch-size", "8", "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((out / "eval.json").read_text())["trained"]
    assert {"zeroshot_top1", "i2t_r1", "knn_top1"} <= set(metrics)
    assert "dataset: captions" in (out / "config.yaml").read_text()


def test_cli_bad_csv_is_one_clear_message(tmp_path: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "p.csv").write_text("picture,caption\na.png,hello\n")
    res = ssl_cli("run", "--modality", "image-text", "--objective", "clip", "--data", str(tmp_path / "p.csv"),
                  "--steps", "1", "--out", str(tmp_path / "run"), "--no-progress")
    assert res.returncode == 2
    assert "no image column" in res.stderr and "dataset_kwargs.image_column" in res.stderr
    assert "Traceback" not in res.stderr


def test_unlabelled_webdataset_run_in_process(tmp_path: Path, digit_rgb, png_bytes, write_shard, registry) -> None:
    """Shards without .cls train fine; on unlabelled data the core skips label probes but still runs
    `health` and retrieval (which declares needs_labels=False) on the held-out pairs."""
    from ssl_clip.evaluators import RetrievalEvaluator
    from ssl_core.runner import build_data, resolve_config, run_experiment

    samples = [(f"k{i:03d}", png_bytes(arr), f"a digit, scan {i}", None) for i, (arr, _) in enumerate(digit_rgb(8))]
    write_shard(tmp_path / "shard-0.tar", samples)
    cfg = resolve_config("clip", registry=registry, overrides={
        "data": str(tmp_path / "shard-0.tar"), "out": str(tmp_path / "run"),
        "train": {"epochs": None, "steps": 2, "batch_size": 8, "progress": False, "health_every": 0}})
    assert cfg.dataset == "captions"
    outcome = run_experiment(cfg, registry=registry)
    trained = set(outcome.metrics["trained"])
    assert {"embed_std", "embed_std_ratio", "effective_rank", "i2t_r1", "t2i_r1"} <= trained
    assert not trained & {"knn_top1", "linear_top1", "zeroshot_top1"}  # these need labels
    data = build_data(cfg, registry)
    held_out = data.extras["retrieval_split"]
    assert len(held_out) == 5 and data.eval_test is None
    m = RetrievalEvaluator(ks=(1, 5)).evaluate(outcome.objective.encoder, data)
    assert m["i2t_r5"] == 1.0 and 0.0 <= m["i2t_r1"] <= 1.0  # 5 unique captions: all within top 5
