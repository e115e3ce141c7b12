"""Registers the image-text plugin's components with sslkit (entry point ``clip``)."""

from __future__ import annotations

from ssl_core import hookimpl
from ssl_core.files import HF_DATASET, SHARD_SUFFIXES, TABLE_SUFFIXES, Accepts

# Factories are import paths ("module:attr"): `ssl list` reads this file without importing torch.
PAIRS = Accepts(TABLE_SUFFIXES + SHARD_SUFFIXES, patterns=True,
                layout="a .csv/.tsv of (image path, caption) rows, or WebDataset shards of KEY.jpg + KEY.txt")
TABLE = Accepts(TABLE_SUFFIXES, layout="(image path, caption) rows; paths relative to the file")
LOCAL_SHARDS = Accepts(SHARD_SUFFIXES, patterns=True, layout="members KEY.jpg/png + KEY.txt (+ KEY.cls)")
REMOTE_SHARDS = Accepts(SHARD_SUFFIXES, folders=False, files=False, schemes=("http", "https", "pipe"),
                        layout="streamed; needs --steps")

MODALITY = "image-text"


@hookimpl
def register_encoders(register):  # type: ignore[no-untyped-def]
    register("open_clip", "ssl_clip.encoder:open_clip_encoder", modality=MODALITY,
             summary="open_clip image+text towers, random init offline (default config sslkit-clip-tiny, ~8M params)")


@hookimpl
def register_augmenters(register):  # type: ignore[no-untyped-def]
    register("clip_crop", "ssl_clip.augment:clip_crop", modality=MODALITY,
             summary="Per-image random resized crop, batched on device (CLIP's only augmentation)")


@hookimpl
def register_datasets(register):  # type: ignore[no-untyped-def]
    register("fashion_captions", "ssl_clip.fashion_captions:fashion_captions", modality=MODALITY, builtin=True,
             summary="Fashion-MNIST with captions: class name + measured size/shape/tone/detail; "
                     "falls back to digit_captions, loudly",
             reader=("captions", "captions_wds_stream", "hf_captions"))
    register("digit_captions", "ssl_clip.data:digit_captions", modality=MODALITY, builtin=True,
             summary="UCI digits (scikit-learn) with captions built from labels + measured stroke/slant: tests, fallback",
             reader=("captions", "captions_wds_stream", "hf_captions"))
    register("captions", "ssl_clip.data:caption_pairs", modality=MODALITY,
             summary="Your pairs: .csv/.tsv (image path, caption) or WebDataset .tar shards, by suffix", accepts=PAIRS)
    register("captions_csv", "ssl_clip.data:csv_pairs", modality=MODALITY,
             summary="CSV/TSV with image path and caption columns (paths relative to the file)", accepts=TABLE)
    register("captions_wds", "ssl_clip.data:webdataset_pairs", modality=MODALITY,
             summary="WebDataset tar shards with KEY.jpg/png + KEY.txt (+ KEY.cls) members", accepts=LOCAL_SHARDS)
    register("captions_wds_stream", "ssl_clip.stream:captions_wds_stream", modality=MODALITY,
             summary="WebDataset pairs streamed from paths, http(s):// or pipe:CMD (needs --steps); "
                     "eval_path: held-out shards in memory", accepts=REMOTE_SHARDS)
    register("hf_captions", "ssl_clip.data:hf_captions", modality=MODALITY,
             summary="Hugging Face dataset on disk (save_to_disk, .arrow, .parquet): image_column, caption_column, "
                     "label_column (pip install 'sslkit[hf]')", accepts=HF_DATASET)


@hookimpl
def register_evaluators(register):  # type: ignore[no-untyped-def]
    register("clip_zero_shot", "ssl_clip.evaluators:ZeroShotEvaluator", modality=MODALITY,
             summary="Zero-shot top-1/top-5 from class-name prompt templates (Radford et al., 2021)")
    register("clip_retrieval", "ssl_clip.evaluators:RetrievalEvaluator", modality=MODALITY,
             summary="Image->text and text->image recall@1/5/10 on held-out pairs")


@hookimpl
def register_objectives(register):  # type: ignore[no-untyped-def]
    register(
        "clip", "ssl_clip.objective:CLIP", modality=MODALITY,
        summary="CLIP: symmetric InfoNCE over image-caption pairs, learned temperature (Radford et al., 2021)",
        recipe={
            "encoder": "open_clip",
            "encoder_kwargs": {"model": "sslkit-clip-tiny"},
            "augmenter": "clip_crop",
            "dataset": "fashion_captions",
            # 10 epochs = 780 steps, ~5 CPU minutes with both evaluations; 30 epochs improve
            # retrieval (i2t R@10 0.40 -> 0.58) for 3x the time (docs/clip.md)
            "train": {"epochs": 10, "batch_size": 128, "lr": 3e-3, "weight_decay": 0.1,
                      "betas": [0.9, 0.98], "warmup_fraction": 0.1, "optimizer": "adamw"},
            "evaluators": ["clip_zero_shot", "clip_retrieval", "knn", "linear_probe", "health"],
        },
    )


@hookimpl
def register_exporters(register):  # type: ignore[no-untyped-def]
    register("open_clip", "ssl_clip.export:OpenCLIPExporter", modality=MODALITY,
             summary="open_clip folder (open_clip.create_model('local-dir:...')); written by every CLIP run too")
