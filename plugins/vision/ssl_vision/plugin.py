"""Registers the vision plugin's components with sslkit (entry point ``vision``)."""

from __future__ import annotations

from ssl_core import hookimpl
from ssl_vision import data, encoders
from ssl_vision.augment import TwoViewAugmenter
from ssl_vision.simclr import SimCLR


@hookimpl
def register_encoders(register):  # type: ignore[no-untyped-def]
    register("resnet_small", encoders.resnet_small, modality="vision",
             summary="Narrow ResNet from torchvision BasicBlocks (~1.2M params), for CPU runs")
    register("resnet18", encoders.resnet18, modality="vision", summary="torchvision ResNet-18, small-image stem")
    register("resnet50", encoders.resnet50, modality="vision", summary="torchvision ResNet-50")


@hookimpl
def register_augmenters(register):  # type: ignore[no-untyped-def]
    register("simclr_views", TwoViewAugmenter, modality="vision",
             summary="Two views: crop+flip, colour jitter, grayscale, blur (batched, on device)")


@hookimpl
def register_datasets(register):  # type: ignore[no-untyped-def]
    register("digits", data.digits, modality="vision", builtin=True,
             summary="UCI handwritten digits shipped in scikit-learn (1,797 images, 10 classes)")
    register("imagefolder", data.image_folder, modality="vision",
             summary="Folder of jpg/png images; class sub-folders give labels")


@hookimpl
def register_objectives(register):  # type: ignore[no-untyped-def]
    register(
        "simclr", SimCLR, modality="vision",
        summary="SimCLR: contrastive NT-Xent over two augmented views (Chen et al., 2020)",
        recipe={
            "encoder": "resnet_small",
            "augmenter": "simclr_views",
            "dataset": "digits",
            "objective_kwargs": {"temperature": 0.2, "proj_hidden_dim": 512, "proj_dim": 128},
            "train": {"epochs": 15, "batch_size": 256, "lr": 2e-3, "weight_decay": 1e-4,
                      "optimizer": "adamw", "warmup_fraction": 0.1},
        },
    )
