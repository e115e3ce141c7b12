"""Registers VICReg with sslkit (entry point ``vicreg`` in pyproject.toml)."""

from __future__ import annotations

from ssl_core import hookimpl


@hookimpl
def register_objectives(register):  # type: ignore[no-untyped-def]
    """Register the VICReg objective, reusing the vision plugin's encoder, views and data.

    The factory is an import path: sslkit imports ``ssl_vicreg.vicreg`` (and torch) only when
    VICReg is used, so ``ssl list`` stays fast.
    """
    register(
        "vicreg", "ssl_vicreg.vicreg:VICReg", modality="vision",
        summary="VICReg: variance-invariance-covariance regularisation (Bardes et al., 2022)",
        recipe={
            "encoder": "resnet_small",
            "augmenter": "simclr_views",
            # the vision plugin's built-in Fashion-MNIST subset, at SimCLR's budget (2 epochs, 78 steps)
            "dataset": "fashion_mnist",
            "objective_kwargs": {"expander_dim": 512},
            "train": {"epochs": 2, "batch_size": 256, "lr": 2e-3, "weight_decay": 1e-4,
                      "optimizer": "adamw", "warmup_fraction": 0.1},
        },
    )
