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
            "dataset": "digits",
            "objective_kwargs": {"expander_dim": 512},
            "train": {"epochs": 15, "batch_size": 256, "lr": 2e-3, "weight_decay": 1e-4},
        },
    )
