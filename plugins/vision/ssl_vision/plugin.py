"""Registers the vision plugin's components with sslkit (entry point ``vision``).

Each objective's recipe names a CPU-sized encoder and the built-in Fashion-MNIST subset; the
papers' settings (encoders, head sizes, schedules) stay available through the config. Every
recipe's epochs are sized so a default run on two CPU cores takes minutes and beats its random
encoder on the kNN and linear probes (measured in docs/benchmarks.md).
"""

from __future__ import annotations

from ssl_core import hookimpl
from ssl_core.files import HF_DATASET, IMAGE_SUFFIXES, SHARD_SUFFIXES, Accepts

# Factories are import paths ("module:attr"): `ssl list` reads this file without importing torch.

EVALUATORS = ["knn", "linear_probe", "few_shot", "health", "nn_grid"]
# What each file reader takes as --data; `ssl run --data PATH` tries READERS in this order
# (local shards are streamed only when named with --dataset webdataset_stream).
IMAGE_FOLDER = Accepts(IMAGE_SUFFIXES, files=False, layout="one sub-folder per class gives labels")
LOCAL_SHARDS = Accepts(SHARD_SUFFIXES, patterns=True, layout="WebDataset members KEY.jpg/png (+ KEY.cls)")
REMOTE_SHARDS = Accepts(SHARD_SUFFIXES, folders=False, files=False, schemes=("http", "https", "pipe"),
                        layout="streamed; needs --steps")
# a folder holding the MNIST family's training images file (raw or gzipped) is an idx folder
IDX_FOLDER = Accepts(folders=False, files=False,
                     markers=("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte", "train-images.idx3-ubyte"),
                     layout="the idx files train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz), t10k-...")
READERS = ("imagefolder", "idx", "webdataset", "webdataset_stream", "hf_images")


@hookimpl
def register_encoders(register):  # type: ignore[no-untyped-def]
    register("resnet_small", "ssl_vision.encoders:resnet_small", modality="vision",
             summary="Narrow ResNet from torchvision BasicBlocks (~1.2M params), for CPU runs")
    register("resnet18", "ssl_vision.encoders:resnet18", modality="vision", summary="torchvision ResNet-18, small-image stem")
    register("resnet50", "ssl_vision.encoders:resnet50", modality="vision", summary="torchvision ResNet-50")
    register("vit_nano", "ssl_vision.vit:vit_nano", modality="vision",
             summary="ViT for 16-32 px images on CPU: patch 4, 128-d, 4 blocks (timm blocks, ~0.8M params)")
    register("vit_micro", "ssl_vision.vit:vit_micro", modality="vision",
             summary="ViT for 16-32 px images on CPU: patch 4, 192-d, 6 blocks (timm blocks, ~2.7M params)")
    register("vit_tiny", "ssl_vision.vit:vit_tiny", modality="vision", summary="ViT-Tiny: patch 16, 192-d, 12 blocks (timm)")
    register("vit_small", "ssl_vision.vit:vit_small", modality="vision", summary="ViT-Small: patch 16, 384-d, 12 blocks (timm)")
    register("vit_base", "ssl_vision.vit:vit_base", modality="vision", summary="ViT-Base: patch 16, 768-d, 12 blocks (timm)")


@hookimpl
def register_augmenters(register):  # type: ignore[no-untyped-def]
    register("simclr_views", "ssl_vision.augment:TwoViewAugmenter", modality="vision",
             summary="Two views: crop+flip, colour jitter, grayscale, blur (batched, on device)")
    register("byol_views", "ssl_vision.augment:byol_views", modality="vision",
             summary="BYOL's asymmetric two views: blur p=1.0/0.1, solarise p=0/0.2 (batched, on device)")
    register("multicrop", "ssl_vision.augment:MultiCropAugmenter", modality="vision",
             summary="DINO multi-crop: 2 global + N local crops, blur/solarise per crop (batched, on device)")
    register("mae_views", "ssl_vision.augment:SingleViewAugmenter", modality="vision",
             summary="MAE: one random-resized crop + flip per image (batched, on device)")


@hookimpl
def register_datasets(register):  # type: ignore[no-untyped-def]
    register("fashion_mnist", "ssl_vision.fashion_mnist:fashion_mnist", modality="vision", builtin=True,
             summary="Fashion-MNIST (Debian dataset-fashion-mnist or $SSLKIT_FASHION_MNIST): official split, "
                     "balanced 10k/2k subset; falls back to digits, loudly",
             reader=READERS)
    register("digits", "ssl_vision.data:digits", modality="vision", builtin=True,
             summary="UCI handwritten digits shipped in scikit-learn (1,797 images, 10 classes): tests, fallback",
             reader=READERS)
    register("imagefolder", "ssl_vision.data:image_folder", modality="vision",
             summary="Folder of jpg/png images; class sub-folders give labels", accepts=IMAGE_FOLDER)
    register("idx", "ssl_vision.fashion_mnist:idx_folder", modality="vision",
             summary="Folder of MNIST-family idx(.gz) files (MNIST, Fashion-MNIST, KMNIST, EMNIST)", accepts=IDX_FOLDER)
    register("webdataset", "ssl_vision.shards:webdataset", modality="vision",
             summary="WebDataset .tar shards (folder, glob or file) of jpg/png + cls/txt", accepts=LOCAL_SHARDS)
    register("webdataset_stream", "ssl_vision.stream:webdataset_stream", modality="vision",
             summary="WebDataset shards streamed from paths, http(s):// or pipe:CMD (needs --steps); "
                     "eval_path: labelled shards held in memory", accepts=REMOTE_SHARDS)
    register("hf_images", "ssl_vision.data:hf_images", modality="vision",
             summary="Hugging Face dataset on disk (save_to_disk, .arrow, .parquet): image_column, label_column "
                     "(pip install 'sslkit[hf]')", accepts=HF_DATASET)


@hookimpl
def register_evaluators(register):  # type: ignore[no-untyped-def]
    register("nn_grid", "ssl_vision.nn_grid:NNGridEvaluator", modality="vision",
             summary="Nearest-neighbour grid PNG (query + nearest training images) and precision@k")


@hookimpl
def register_objectives(register):  # type: ignore[no-untyped-def]
    register(
        "simclr", "ssl_vision.simclr:SimCLR", modality="vision",
        summary="SimCLR: contrastive NT-Xent over two augmented views (Chen et al., 2020)",
        recipe={
            "encoder": "resnet_small",
            "augmenter": "simclr_views",
            "dataset": "fashion_mnist",
            "objective_kwargs": {"temperature": 0.2, "proj_hidden_dim": 512, "proj_dim": 128},
            # 2 epochs = 78 steps, ~6 min on 2 CPU cores (docs/benchmarks.md); 30+ on a GPU
            "train": {"epochs": 2, "batch_size": 256, "lr": 2e-3, "weight_decay": 1e-4,
                      "optimizer": "adamw", "warmup_fraction": 0.1},
            "evaluators": EVALUATORS,
        },
    )
    register(
        "byol", "ssl_vision.byol:BYOL", modality="vision",
        summary="BYOL: online/target networks, predictor, EMA target (Grill et al., 2020)",
        recipe={
            "encoder": "resnet_small",
            "augmenter": "byol_views",
            "dataset": "fashion_mnist",
            # a short run needs a target that keeps up: base momentum 0.95 (the paper's 0.996 is for
            # hundreds of epochs) and batch 128 (twice the steps of 256 for the same samples). At 2
            # epochs on Fashion-MNIST: linear +0.031 over random, where 0.99 at batch 256 gave +0.004
            "objective_kwargs": {"proj_hidden_dim": 1024, "proj_dim": 128, "pred_hidden_dim": 1024,
                                 "base_momentum": 0.95},
            # 2 epochs = 156 steps, ~6 min on 2 CPU cores (docs/benchmarks.md)
            "train": {"epochs": 2, "batch_size": 128, "lr": 2e-3, "weight_decay": 1e-4,
                      "optimizer": "adamw", "warmup_fraction": 0.1},
            "evaluators": EVALUATORS,
        },
    )
    register(
        "dino", "ssl_vision.dino:DINO", modality="vision",
        summary="DINO: self-distillation with multi-crop, centring, sharpening, EMA teacher (Caron et al., 2021)",
        recipe={
            "encoder": "vit_nano",
            "augmenter": "multicrop",
            # two 12 px local crops (four took the default run to 6 min 10 s on 2 CPU threads; with
            # two the margins held: kNN +0.093, linear +0.076 over random; docs/benchmarks.md)
            "augmenter_kwargs": {"n_local": 2},
            "dataset": "fashion_mnist",
            # evaluate_teacher=False: after this short schedule the 0.99->1 EMA teacher still lags
            # (kNN 0.598 vs the student's 0.844 on the digits); the paper's long runs probe the teacher
            "objective_kwargs": {"out_dim": 4096, "hidden_dim": 512, "bottleneck_dim": 128,
                                 "use_bn_in_head": True, "teacher_temp": 0.04, "base_momentum": 0.99,
                                 "evaluate_teacher": False},
            # 2 epochs = 156 steps (docs/benchmarks.md)
            "train": {"epochs": 2, "batch_size": 128, "lr": 1e-3, "weight_decay": 0.04,
                      "weight_decay_end": 0.4, "optimizer": "adamw", "warmup_fraction": 0.3,
                      "clip_grad": 3.0},
            "evaluators": EVALUATORS,
        },
    )
    register(
        "mae", "ssl_vision.mae:MAE", modality="vision",
        summary="MAE: ViT on visible patches, 75% masking, light decoder, normalised pixels (He et al., 2022)",
        recipe={
            "encoder": "vit_micro",
            # the probes read the mean of the patch tokens: MAE's loss never reaches the class token
            # directly, and in a short run it stays near its initialisation (3 epochs on
            # Fashion-MNIST: linear +0.014 over random with the class token, +0.029 with the mean)
            "encoder_kwargs": {"pool": "mean"},
            "augmenter": "mae_views",
            "dataset": "fashion_mnist",
            # plain pixel targets: normalising each 4x4 grey patch by its own statistics (the paper's
            # norm_pix_loss, for 16x16 colour patches) turns near-flat patches into noise to predict.
            # 3 seeds, linear probe over random: +0.029/+0.039/+0.058 plain vs +0.029/-0.021/+0.018
            # normalised (kNN +0.11/+0.12/+0.12 vs +0.09/-0.01/+0.12); lightly's MAE uses plain pixels too
            "objective_kwargs": {"mask_ratio": 0.75, "decoder_dim": 128, "decoder_depth": 2, "decoder_heads": 4,
                                 "norm_pix_loss": False},
            # 3 epochs = 234 steps, ~3 min of training on 2 CPU cores (docs/benchmarks.md)
            "train": {"epochs": 3, "batch_size": 128, "lr": 1.5e-3, "weight_decay": 0.05,
                      "optimizer": "adamw", "betas": [0.9, 0.95], "warmup_fraction": 0.1},
            "evaluators": EVALUATORS,
        },
    )


@hookimpl
def register_exporters(register):  # type: ignore[no-untyped-def]
    register("torchvision", "ssl_vision.export:TorchvisionExporter", modality="vision",
             summary="ResNet-18/34/50 trunk as a torchvision state dict (strict load; stem noted in config.json)")
    register("timm", "ssl_vision.export:TimmExporter", modality="vision",
             summary="ResNets as timm ResNet, ViTs as timm VisionTransformer (strict load, same features)")
