"""Registers the audio plugin's components with sslkit (entry point ``audio``)."""

from __future__ import annotations

from ssl_core import hookimpl
from ssl_core.files import AUDIO_SUFFIXES, HF_DATASET, Accepts

# Factories are import paths ("module:attr"): `ssl list` reads this file without importing torch.
AUDIO_FOLDER = Accepts(AUDIO_SUFFIXES, files=False, layout="one sub-folder per class gives labels")

EVALUATORS = ["knn", "linear_probe", "few_shot", "health"]
EVAL_KWARGS = {"knn": {"batch_size": 64}, "linear_probe": {"batch_size": 64}, "few_shot": {"batch_size": 64},
               "health": {"batch_size": 64, "max_samples": 256}}
# CPU defaults: the ~1.9 M-parameter 'small' network on 1 s crops of the built-in spoken words
# (AdamW with betas 0.9/0.98, 8% warm-up and weight decay 0.01 as in both papers). Utterance
# embeddings average the mean-pooled output of every Transformer layer (as SUPERB's layer
# weighting does, uniformly): the top layers specialise in the pre-training task.
ENCODER_KWARGS = {"pool_layer": "mean"}


def _cpu_train(steps: int, lr: float, min_lr_ratio: float = 0.0) -> dict:
    return {"steps": steps, "epochs": None, "batch_size": 16, "lr": lr, "min_lr_ratio": min_lr_ratio,
            "weight_decay": 0.01, "optimizer": "adamw", "warmup_fraction": 0.08, "betas": [0.9, 0.98],
            "clip_grad": 10.0, "health_every": 0, "log_every": 10, "checkpoint_every": 0}


@hookimpl
def register_encoders(register):  # type: ignore[no-untyped-def]
    register("wav2vec2_small", "ssl_audio.encoders:wav2vec2_small", modality="audio",
             summary="wav2vec2 network, CPU size: 64-ch CNN + 4 x 192-d Transformer (~1.9M params)")
    register("wav2vec2_base", "ssl_audio.encoders:wav2vec2_base", modality="audio",
             summary="wav2vec 2.0 / HuBERT BASE: 512-ch CNN + 12 x 768-d Transformer (95M params)")
    register("wav2vec2_large", "ssl_audio.encoders:wav2vec2_large", modality="audio",
             summary="wav2vec 2.0 LARGE: layer-norm CNN + 24 x 1024-d pre-LN Transformer (317M params)")


@hookimpl
def register_augmenters(register):  # type: ignore[no-untyped-def]
    register("audio_crop", "ssl_audio.augment:RandomCrop", modality="audio",
             summary="Random per-utterance crop to crop_seconds (batched, on device)")


@hookimpl
def register_datasets(register):  # type: ignore[no-untyped-def]
    register("spoken_words", "ssl_audio.data:spoken_words", modality="audio", builtin=True,
             summary="Speech Commands' 20 core words spoken by eSpeak NG, 24 voices x 3 rates x 2 pitches "
                     "(2,880 clips), made offline",
             reader=("audiofolder", "hf_audio"))
    register("audiofolder", "ssl_audio.data:audio_folder", modality="audio",
             summary="Folder of wav/flac (any rate, mono/stereo); class sub-folders give labels", accepts=AUDIO_FOLDER)
    register("hf_audio", "ssl_audio.data:hf_audio", modality="audio",
             summary="Hugging Face dataset on disk (save_to_disk, .arrow, .parquet): audio_column, label_column "
                     "(pip install 'sslkit[hf]')", accepts=HF_DATASET)


@hookimpl
def register_objectives(register):  # type: ignore[no-untyped-def]
    register(
        "wav2vec2", "ssl_audio.wav2vec2:Wav2Vec2", modality="audio",
        summary="wav2vec 2.0: masked contrastive prediction of Gumbel-quantised latents (Baevski et al., 2020)",
        recipe={
            "encoder": "wav2vec2_small",
            "augmenter": "audio_crop",
            "dataset": "spoken_words",
            "encoder_kwargs": ENCODER_KWARGS,
            # one-word clips are ~20 frames: one span of 10 is enough, and a smaller codebook suits
            # ~10 minutes of audio (the paper: G=2, V=320, K=100 on 960 h)
            "objective_kwargs": {"num_negatives": 50, "codebook_entries": 64, "codevector_dim": 128,
                                 "final_dim": 128, "feature_grad_mult": 1.0, "min_masks": 1},
            # the contrastive loss leaves chance only after ~150 steps here: keep 20% of the LR at the end
            "train": _cpu_train(300, 1e-3, min_lr_ratio=0.2),
            "evaluators": EVALUATORS,
            "eval_kwargs": EVAL_KWARGS,
        },
    )
    register(
        "hubert", "ssl_audio.hubert:HuBERT", modality="audio",
        summary="HuBERT: masked prediction of k-means units of MFCCs or a trained layer (Hsu et al., 2021)",
        recipe={
            "encoder": "wav2vec2_small",
            "augmenter": "audio_crop",
            "dataset": "spoken_words",
            "encoder_kwargs": ENCODER_KWARGS,
            "objective_kwargs": {"final_dim": 128, "feature_grad_mult": 1.0, "min_masks": 1},
            "train": _cpu_train(200, 2e-3),
            "evaluators": EVALUATORS,
            "eval_kwargs": EVAL_KWARGS,
        },
    )


@hookimpl
def register_exporters(register):  # type: ignore[no-untyped-def]
    register("torchaudio", "ssl_audio.export:TorchaudioExporter", modality="audio",
             summary="wav2vec 2.0 / HuBERT as torchaudio.models.wav2vec2_model weights + builder config (strict load)")
