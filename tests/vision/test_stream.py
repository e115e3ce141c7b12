"""Dataset ``webdataset_stream``: images streamed from WebDataset shards (local, http, pipe),
a labelled evaluation set held in memory, and an end-to-end `ssl run` on streamed shards."""

from __future__ import annotations

import functools
import http.server
import io
import json
import tarfile
import threading
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ssl_core.config import RunConfig
from ssl_core.data import POSITION_KEY, WORKER_KEY, ResumableStream, TensorDictDataset, default_collate
from ssl_core.errors import DataError
from ssl_core.runner import build_data
from ssl_vision.shards import expand_shard_spec, webdataset
from ssl_vision.stream import webdataset_stream

COLOURS = [(220, 30, 30), (30, 200, 40), (40, 60, 230)]  # one colour per class, so labels can be checked


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _image(cls: int, k: int) -> np.ndarray:
    rng = np.random.default_rng(1000 * cls + k)
    base = np.array(COLOURS[cls], dtype=np.int16)[None, None, :]
    noise = rng.integers(-20, 20, size=(20, 24, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def write_shards(root: Path, prefix: str, n_shards: int, per_shard: int, bad_image: bool = False) -> None:
    """``prefix-000.tar`` ...: PNG images of 3 classes with ``cls`` and ``txt`` labels."""
    root.mkdir(parents=True, exist_ok=True)
    for s in range(n_shards):
        with tarfile.open(root / f"{prefix}-{s:03d}.tar", "w") as tar:
            for i in range(per_shard):
                c, key = (s * per_shard + i) % 3, f"{prefix}_{s}_{i:03d}"
                _add(tar, f"{key}.png", _png(_image(c, s * per_shard + i)))
                _add(tar, f"{key}.cls", str(c).encode())
                _add(tar, f"{key}.txt", f"colour {'rgb'[c]}".encode())
            if bad_image and s == 0:
                _add(tar, "broken.png", b"\x89PNG\r\n\x1a\n not really a png")
                _add(tar, "broken.cls", b"1")


@pytest.fixture()
def stream_shards(tmp_path: Path) -> Path:
    """4 training shards x 6 images (one extra broken PNG) + 2 evaluation shards x 15 images."""
    root = tmp_path / "wds"
    write_shards(root, "train", 4, 6, bad_image=True)
    write_shards(root, "eval", 2, 15)
    return root


def _dominant(images: torch.Tensor) -> torch.Tensor:
    return images.float().mean(dim=(2, 3)).argmax(dim=1)  # channel with the most colour = the class


def test_stream_batches_through_a_dataloader(stream_shards: Path, registry) -> None:  # type: ignore[no-untyped-def]
    spec = str(stream_shards / "train-{000..003}.tar")
    data = registry.get("dataset", "webdataset_stream", modality="vision").build(
        path=spec, image_size=16, shuffle_buffer=5, eval_path=str(stream_shards / "eval-*.tar"))
    assert isinstance(data.train, ResumableStream)
    with pytest.raises(TypeError):
        len(data.train)  # type: ignore[arg-type]
    loader = DataLoader(data.train, batch_size=4, num_workers=2, collate_fn=data.collate or default_collate)
    batches = list(loader)
    images = torch.cat([b["image"] for b in batches])
    labels = torch.cat([b["label"] for b in batches])
    assert images.dtype == torch.uint8 and images.shape == (24, 3, 16, 16)  # the broken PNG is skipped
    assert labels.dtype == torch.int64 and set(labels.tolist()) == {0, 1, 2}
    assert torch.equal(_dominant(images), labels)
    assert set(batches[0]) == {"image", "label", WORKER_KEY, POSITION_KEY}
    assert data.extras == {"encoder_kwargs": {"in_channels": 3}, "augmenter_kwargs": {"image_size": 16}}


def test_unreadable_image_is_skipped_with_a_warning(stream_shards: Path) -> None:
    data = webdataset_stream(str(stream_shards / "train-000.tar"), image_size=8, label=None, shuffle_buffer=0)
    with pytest.warns(UserWarning, match=r"Skipping unreadable image .*train-000.tar:broken.png"):
        samples = list(data.train)
    assert len(samples) == 6 and all(set(s) == {"image", WORKER_KEY, POSITION_KEY} for s in samples)
    assert [s[POSITION_KEY] for s in samples] == [1, 2, 3, 4, 5, 6]  # the broken one was item 7
    assert data.eval_train is None and data.eval_test is None


def test_eval_split_is_labelled_and_in_memory(stream_shards: Path) -> None:
    evals = str(stream_shards / "eval-000.tar") + "::" + str(stream_shards / "eval-001.tar")
    data = webdataset_stream(str(stream_shards / "train-*.tar"), image_size=12, eval_path=evals, test_fraction=0.2)
    assert isinstance(data.eval_train, TensorDictDataset) and isinstance(data.eval_test, TensorDictDataset)
    assert len(data.eval_train) == 24 and len(data.eval_test) == 6  # 30 images, stratified 20%
    assert data.num_classes == 3 and data.class_names == ["0", "1", "2"]
    for split in (data.eval_train, data.eval_test):
        batch = split[list(range(len(split)))]  # type: ignore[index]
        assert batch["image"].shape[1:] == (3, 12, 12) and batch["image"].dtype == torch.uint8
        assert set(batch["label"].tolist()) == {0, 1, 2}
        assert torch.equal(_dominant(batch["image"]), batch["label"])
    limited = webdataset_stream(str(stream_shards / "train-*.tar"), eval_path=evals, eval_samples=10, label="txt")
    assert len(limited.eval_train) + len(limited.eval_test) == 10  # type: ignore[arg-type]
    assert limited.class_names == ["colour b", "colour g", "colour r"]
    assert "label" not in next(iter(limited.train))  # txt names are only numbered for the eval set
    sized = webdataset_stream(str(stream_shards / "train-*.tar"), samples_per_epoch=24)
    assert len(sized.train) == 24  # type: ignore[arg-type]


def test_registry_build_grey_and_errors(stream_shards: Path, registry, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SSLKIT_ALLOW_PIPE", "1")  # the pipe: spec below is the test's own
    cfg = RunConfig(modality="vision", dataset="webdataset_stream", data=f"pipe:cat {stream_shards / 'train-001.tar'}",
                    dataset_kwargs={"image_size": 10, "channels": 1})
    built = build_data(cfg, registry)
    first = next(iter(built.train))
    assert first["image"].shape == (1, 10, 10)
    assert built.extras["encoder_kwargs"] == {"in_channels": 1}
    with pytest.raises(DataError, match="needs --data"):
        webdataset_stream(None)
    with pytest.raises(DataError, match="label must be"):
        webdataset_stream(str(stream_shards), label="jpg")
    with pytest.raises(DataError, match="No shard found"):
        webdataset_stream(str(stream_shards / "nope-{000..003}.tar"))
    bad = stream_shards / "bad"
    bad.mkdir()
    with tarfile.open(bad / "x.tar", "w") as tar:
        _add(tar, "a.cls", b"0")
    with pytest.raises(DataError, match="no readable images"), pytest.warns(UserWarning, match="no image field"):
        webdataset_stream(str(stream_shards / "train-000.tar"), eval_path=str(bad))
    # the map-style reader sends remote shards to the streaming one
    with pytest.raises(DataError, match="webdataset_stream"):
        webdataset("http://127.0.0.1:9/train-{000..001}.tar")
    assert expand_shard_spec("http://127.0.0.1:9/x.tar") == []


@pytest.fixture()
def http_root(stream_shards: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(stream_shards)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_cli_trains_on_streamed_http_shards(stream_shards: Path, http_root: str, tmp_path: Path, reevaluate,  # type: ignore[no-untyped-def]
                                           ssl_cli) -> None:
    """Through the console entry point, in this process (a subprocess adds only start-up time)."""
    out = tmp_path / "run"
    res = ssl_cli(
        "run", "--modality", "vision", "--objective", "simclr", "--dataset", "webdataset_stream",
        "--data", http_root + "/train-{000..003}.tar", "--steps", "3", "--batch-size", "8",
        "--out", str(out), "--no-progress",
        "--set", f"dataset_kwargs.eval_path={stream_shards / 'eval-{000..001}.tar'}",
        "--set", "dataset_kwargs.image_size=16", "--set", "dataset_kwargs.shuffle_buffer=8",
        "--set", "encoder_kwargs.widths=[8,16,16,16]", "--set", "evaluators=[knn,health]",
        "--set", "train.log_every=1",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((out / "eval.json").read_text())
    assert metrics["trained"] == pytest.approx(reevaluate(out, ("knn", "health")))  # streamed eval = in-memory re-eval
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    assert any(r.get("step") == 3 for r in lines)


@pytest.mark.parametrize("workers,checkpoint_every", [
    (0, 3), (2, 2), (2, 3),  # with 2 workers, a checkpoint after 3 batches owes worker 1's batch next
])
def test_crashed_streamed_run_resumes_exactly(stream_shards: Path, tmp_path: Path, registry,  # type: ignore[no-untyped-def]
                                              workers: int, checkpoint_every: int) -> None:
    """Real shards and a shuffle buffer: a run that crashes mid-epoch and resumes from its
    checkpoint logs the same losses as one that never stopped."""
    from ssl_core.config import nest
    from ssl_core.runner import build_encoder, build_objective, resolve_config
    from ssl_core.trainer import Trainer

    overrides = nest({
        "dataset": "webdataset_stream", "data": str(stream_shards / "train-{000..003}.tar"),
        "dataset_kwargs": {"image_size": 16, "shuffle_buffer": 4, "label": None},
        "encoder_kwargs": {"widths": [8, 16, 16, 16]}, "evaluators": [],
        "train.steps": 8, "train.epochs": None, "train.batch_size": 4, "train.num_workers": workers,
        "train.checkpoint_every": checkpoint_every, "train.log_every": 1, "train.health_every": 0, "train.progress": False,
    })

    def trainer(run: str, init_seed: int = 0, **kw: Any) -> Trainer:
        cfg = resolve_config("simclr", "vision", overrides=overrides, registry=registry)
        data = build_data(cfg, registry)
        torch.manual_seed(init_seed)
        obj = build_objective(cfg, build_encoder(cfg, data, registry), data, registry)
        return Trainer(obj, data, cfg.train, tmp_path / run, **kw)

    class Crash(Exception):
        pass

    def crash_at_5(record: dict[str, Any]) -> None:
        if record["step"] == 5:
            raise Crash

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the broken PNG is reported in every epoch
        trainer("a").fit()
        with pytest.raises(Crash):
            trainer("b", callbacks=[crash_at_5]).fit()
        ckpt = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=False)
        assert ckpt["step"] == 4 // checkpoint_every * checkpoint_every and ckpt["stream"]["ranks"][0]["positions"]
        trainer("b", init_seed=7).fit(resume=True)  # weights, optimiser and position: all from the checkpoint
    losses = [[(r["step"], r["loss"]) for r in map(json.loads, (tmp_path / d / "metrics.jsonl").read_text().splitlines())]
              for d in ("a", "b")]
    assert [s for s, _ in losses[0]] == list(range(1, 9))
    assert losses[0] == losses[1]


def test_mae_reconstructions_from_a_stream_without_eval_set(stream_shards: Path, tmp_path: Path) -> None:
    from ssl_vision.augment import SingleViewAugmenter
    from ssl_vision.mae import MAE, RECONSTRUCTION_FILE
    from ssl_vision.vit import ViTEncoder

    data = webdataset_stream(str(stream_shards / "train-00{1,2}.tar"), image_size=16, channels=1, shuffle_buffer=0)
    torch.manual_seed(0)
    enc = ViTEncoder(embed_dim=32, depth=1, num_heads=2, patch_size=4, in_channels=1)
    mae = MAE(enc, SingleViewAugmenter(image_size=16, hflip_p=0.0), decoder_dim=32, decoder_depth=1,
              decoder_heads=2, n_reconstructions=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "could not write" warning
        mae.on_train_end(tmp_path, data)
    assert (tmp_path / RECONSTRUCTION_FILE).stat().st_size > 300
