"""Registers the time-series modality with sslkit (entry point ``timeseries`` in pyproject.toml).

Factories are import paths ("module:attr"): sslkit imports them (and torch) only when they are
used, so `ssl list` stays fast.
"""

from __future__ import annotations

from ssl_core import hookimpl
from ssl_core.files import Accepts

MODALITY = "timeseries"
SERIES_FOLDER = Accepts((".npy", ".csv"), files=False, layout="one sub-folder per class gives labels")


@hookimpl
def register_encoders(register):  # type: ignore[no-untyped-def]
    register("series_cnn", "ssl_timeseries.model:ConvEncoder", modality=MODALITY,
             summary="1-D CNN (3 conv blocks, average pooling) for [B, C, T] series")


@hookimpl
def register_augmenters(register):  # type: ignore[no-untyped-def]
    register("jitter_scale", "ssl_timeseries.model:JitterScaleViews", modality=MODALITY,
             summary="Two views: random scaling + Gaussian jitter (Um et al., 2017)")


@hookimpl
def register_datasets(register):  # type: ignore[no-untyped-def]
    register("sequential_digits", "ssl_timeseries.data:sequential_digits", modality=MODALITY, builtin=True,
             summary="UCI digits read pixel by pixel as 64-step series (10 classes)", reader="series_folder")
    register("series_folder", "ssl_timeseries.data:series_folder", modality=MODALITY,
             summary="Your .npy/.csv series, one sub-folder per class", accepts=SERIES_FOLDER)


@hookimpl
def register_objectives(register):  # type: ignore[no-untyped-def]
    register(
        "series_contrastive", "ssl_timeseries.model:ContrastiveSeries", modality=MODALITY,
        summary="NT-Xent between jittered/scaled views of each series (Chen et al., 2020)",
        recipe={
            "encoder": "series_cnn",
            "augmenter": "jitter_scale",
            "dataset": "sequential_digits",
            "objective_kwargs": {"temperature": 0.2},
            "train": {"steps": 300, "batch_size": 128, "lr": 3e-3, "weight_decay": 1e-4},
            "evaluators": ["knn", "linear_probe", "health"],
        },
    )
