"""Hugging Face datasets on disk (save_to_disk folders, .arrow and .parquet files) for every modality.

Each test builds a small real dataset with the `datasets` library (digit scans as PNG, wav clips,
Python documentation paragraphs) and reads it back through the modality's ``hf_*`` reader.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

datasets = pytest.importorskip("datasets", reason="pip install 'sslkit[hf]'")

from ssl_core.errors import DataError  # noqa: E402
from ssl_core.files import HF_DATASET  # noqa: E402


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def digit_rows():
    """45 UCI digit scans (classes 0-2) as 16x16 grey PNGs with ClassLabel labels."""
    from sklearn.datasets import load_digits

    d = load_digits(n_class=3)
    keep = np.concatenate([np.flatnonzero(d.target == c)[:15] for c in range(3)])
    imgs = [np.kron(d.images[i] * 255 / 16, np.ones((2, 2))).astype(np.uint8) for i in keep]
    return imgs, [int(d.target[i]) for i in keep]


@pytest.fixture(scope="module")
def image_dict(digit_rows, tmp_path_factory):
    imgs, labels = digit_rows
    features = datasets.Features({"img": datasets.Image(), "digit": datasets.ClassLabel(names=["zero", "one", "two"]),
                                  "caption": datasets.Value("string")})
    rows = {"img": [{"bytes": _png(a), "path": None} for a in imgs], "digit": labels,
            "caption": [f"a handwritten {['zero', 'one', 'two'][y]}" for y in labels]}
    full = datasets.Dataset.from_dict(rows, features=features)
    split = full.train_test_split(test_size=9, seed=0, stratify_by_column="digit")
    root = tmp_path_factory.mktemp("hf") / "digits"
    split.save_to_disk(str(root))
    full.to_parquet(str(root.parent / "digits.parquet"))
    return root


def test_images_from_a_saved_dataset_dict_keep_pixels_and_labels(image_dict, digit_rows) -> None:
    from ssl_vision.data import hf_images

    dm = hf_images(str(image_dict), image_column="img", label_column="digit", image_size=16, channels=1)
    assert dm.class_names == ["zero", "one", "two"] and len(dm.train) == 36 and len(dm.eval_test) == 9
    table = datasets.load_from_disk(str(image_dict))["train"]
    sample = dm.train[0]
    assert sample["image"].shape == (1, 16, 16) and sample["image"].dtype == torch.uint8
    want = np.array(table[0]["img"].convert("L"))
    assert torch.equal(sample["image"][0], torch.from_numpy(want)) and sample["label"] == table[0]["digit"]
    # the marker file routes a saved dataset folder to the hf_* readers (ssl run --data PATH)
    assert HF_DATASET.marked(str(image_dict)) and not HF_DATASET.marked(str(image_dict.parent / "nothing"))


def test_images_from_parquet_and_arrow_files(image_dict) -> None:
    from ssl_vision.data import hf_images

    pq = hf_images(str(image_dict.parent / "digits.parquet"), image_column="img", label_column="digit",
                   image_size=8, channels=3, test_fraction=0.2)
    assert pq.train[0]["image"].shape == (3, 8, 8) and len(pq.train) + len(pq.eval_test) == 45
    assert pq.num_classes == 3 and len(pq.eval_test) >= 3  # stratified hold-out: every class on both sides
    arrow = sorted((image_dict / "train").glob("*.arrow"))
    dm = hf_images(str(arrow[0]), image_column="img", label_column="digit", image_size=16, channels=1)
    assert len(dm.train) + len(dm.eval_test) == 36


def test_missing_column_names_the_field_and_the_columns(image_dict) -> None:
    from ssl_vision.data import hf_images

    with pytest.raises(DataError, match=r"no column 'image' \(dataset_kwargs.image_column\). Columns: img, digit, caption"):
        hf_images(str(image_dict))
    with pytest.raises(DataError, match="splits"):
        hf_images(str(image_dict), image_column="img", split="training")


def test_image_caption_pairs(image_dict) -> None:
    from ssl_clip.data import hf_captions

    dm = hf_captions(str(image_dict), image_column="img", caption_column="caption", label_column="digit", image_size=16)
    s = dm.train[0]
    assert s["image"].shape == (3, 16, 16) and s["caption"].startswith("a handwritten ")
    assert sorted(dm.class_names) == ["one", "two", "zero"]
    assert dm.class_names[s["label"]] in s["caption"]


def test_text_documents_with_labels(tmp_path) -> None:
    from pydoc_data.topics import topics

    from ssl_text.data import hf_text

    docs, labels = [], []
    for topic in ("class", "try", "import"):
        for para in topics[topic].split("\n\n"):
            if len(para.strip()) > 60:
                docs.append(para.strip())
                labels.append(topic)
    datasets.Dataset.from_dict({"body": docs, "topic": labels}).save_to_disk(str(tmp_path / "docs"))
    dm = hf_text(str(tmp_path / "docs"), text_column="body", label_column="topic", mode="mlm", block_size=32,
                 vocab_size=300, min_frequency=1, cache_dir=str(tmp_path / "cache"))
    assert dm.train[0]["input_ids"].shape[-1] <= 32
    assert sorted(dm.class_names) == ["class", "import", "try"] and len(dm.eval_train) > 0
    assert {dm.eval_train[i]["label"] for i in range(len(dm.eval_train))} == {0, 1, 2}
    first = dm.extras["tokenizer"].decode(dm.eval_train[0]["input_ids"].tolist())
    assert first.split()[0] in " ".join(docs)  # the documents' own words come back out of the tokenizer


def test_audio_clips_any_rate_resampled_to_16k(tmp_path) -> None:
    import soundfile as sf

    from ssl_audio.data import hf_audio

    rows, labels = [], []
    for i in range(12):
        rate = (8000, 22050)[i % 2]
        freq = (220.0, 440.0, 880.0)[i % 3]
        t = np.arange(int(0.5 * rate)) / rate
        buf = io.BytesIO()
        sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate, format="WAV")
        rows.append({"bytes": buf.getvalue(), "path": None})
        labels.append(["low", "mid", "high"][i % 3])
    # an Audio column (encoding through datasets' Audio() would need torchcodec; reading never does)
    ds = datasets.Dataset.from_dict({"audio": rows, "pitch": labels}).cast_column("audio", datasets.Audio(decode=False))
    ds.save_to_disk(str(tmp_path / "tones"))
    dm = hf_audio(str(tmp_path / "tones"), label_column="pitch", test_fraction=0.25)
    s = dm.train[0]
    assert s["waveform"].shape == (8000,) and s["waveform"].dtype == torch.float32  # 0.5 s at 16 kHz
    spectrum = torch.fft.rfft(s["waveform"]).abs()
    assert abs(int(spectrum.argmax()) * 16000 / 8000 - {"low": 220, "mid": 440, "high": 880}[dm.class_names[s["label"]]]) <= 4
    assert len(dm.eval_test) == 3 and dm.extras["objective_kwargs"]["target_data"]["dataset"] == "hf_audio"
    batch = dm.collate([dm.eval_train[i] for i in range(3)])
    assert batch["waveform"].shape == (3, 8000)


def test_ssl_run_with_data_pointing_at_a_dataset_picks_the_reader_and_trains(image_dict, tmp_path, reevaluate) -> None:
    from ssl_core.runner import resolve_config, run_experiment

    cfg = resolve_config("simclr", "vision", overrides={
        "data": str(image_dict), "dataset_kwargs": {"image_column": "img", "label_column": "digit", "image_size": 16,
                                                    "channels": 1},
        "out": str(tmp_path / "run"), "evaluators": ["knn"], "compare_random": False,
        "train": {"steps": 2, "epochs": None, "batch_size": 12, "progress": False, "health_every": 0}})
    assert cfg.dataset == "hf_images"
    outcome = run_experiment(cfg)
    assert outcome.train.steps == 2 and outcome.metrics["trained"]["knn_top1"] == reevaluate(tmp_path / "run")["knn_top1"]
    plain = resolve_config("simclr", "vision", overrides={"data": str(tmp_path)})
    assert plain.dataset == "imagefolder"  # an ordinary folder still goes to the image-folder reader
