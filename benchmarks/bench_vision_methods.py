"""SimCLR, BYOL, DINO and MAE from the vision plugin next to the same methods built with the
``lightly`` package, on the same backbone, data, batch size, epochs and optimiser schedule.

For each method the script

1. trains ``ours`` through sslkit's runner (``ssl run``'s code path, the method's recipe with
   ``train.epochs`` set to the shared budget) and records its training samples/s and the kNN
   top-1 accuracy of the trained encoder;
2. builds the method from lightly's parts (heads, losses, momentum helpers, transforms) around
   a backbone of the same architecture and initial weights (for MAE: timm's ViT of the same
   size inside lightly's ``MaskedVisionTransformerTIMM``), trains it with a plain PyTorch loop
   in the way lightly's examples do (per-image transforms in DataLoader workers, AdamW with the
   same learning rate, weight decay, warm-up + cosine schedule and momentum schedule), and
   records the same two numbers;
3. scores a randomly initialised backbone with the same kNN probe, as the floor.

Data: each recipe's built-in set (Fashion-MNIST: the balanced 10,000-image subset of the
official training split, probes tested on 2,000 official test images; the digits where
Fashion-MNIST is not installed). kNN: sslkit's weighted-cosine kNN (k=20, T=0.07) on frozen
features, train split -> test split. ``benchmarks/bench_table.py --lightly`` puts these lightly
builds into the benchmark table with a linear probe as well.

lightly is a benchmark-only dependency (``pip install lightly==1.6.0``; it leaves torch alone).
Prints a table and writes ``benchmarks/results/vision_methods.json``.

Run: ``python benchmarks/bench_vision_methods.py [--epochs N] [--methods simclr byol dino mae]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ssl_core.config import nest
from ssl_core.evaluators.knn import KNNEvaluator
from ssl_core.interfaces import DataModule, Encoder
from ssl_core.optim import cosine, warmup_cosine
from ssl_core.runner import build_data, build_encoder, resolve_config, run_experiment
from ssl_vision.augment import dino_local_size
from ssl_vision.vit import VIT_SIZES

RESULTS = Path(__file__).resolve().parent / "results" / "vision_methods.json"
METHODS = ["simclr", "byol", "dino", "mae"]


# ---------------------------------------------------------------------- shared pieces
class PILViews(Dataset):
    """Grey training images as PIL images through a lightly transform (which returns one view or a list)."""

    def __init__(self, data: DataModule, transform: Callable[[Any], Any]) -> None:
        from PIL import Image

        ds = data.train
        self.images = [Image.fromarray(ds[i]["image"][0].numpy(), mode="L") for i in range(len(ds))]  # type: ignore[arg-type]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Any:
        views = self.transform(self.images[i])
        return views if isinstance(views, list) else [views]


def param_groups(model: nn.Module, wd: float) -> list[dict[str, Any]]:
    """No weight decay on biases and norms, as sslkit does; frozen parameters left out."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.ndim > 1], "weight_decay": wd},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]


def train_loop(model: nn.Module, loader: DataLoader, epochs: int, train_cfg: Any,
               step_fn: Callable[[list[Tensor], int, int], Tensor]) -> tuple[float, list[float]]:
    """AdamW + sslkit's warm-up/cosine LR schedule; returns (samples/s, losses)."""
    opt = torch.optim.AdamW(param_groups(model, train_cfg.weight_decay), lr=train_cfg.lr, betas=tuple(train_cfg.betas))
    total = epochs * len(loader)
    warm = int(round(train_cfg.warmup_fraction * total))
    wd_end = train_cfg.weight_decay if train_cfg.weight_decay_end is None else train_cfg.weight_decay_end
    losses, step, n = [], 0, 0
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        for views in loader:
            lr = warmup_cosine(step, total, warm, train_cfg.lr, train_cfg.lr * train_cfg.min_lr_ratio)
            wd = cosine(step, total, train_cfg.weight_decay, wd_end)
            opt.param_groups[0]["lr"], opt.param_groups[1]["lr"] = lr, lr
            opt.param_groups[0]["weight_decay"] = wd
            loss = step_fn(views, step, total)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if train_cfg.clip_grad:
                nn.utils.clip_grad_norm_(model.parameters(), train_cfg.clip_grad)
            opt.step()
            model.after_step(step, total)  # type: ignore[operator]
            losses.append(float(loss))
            n += views[0].shape[0]
            step += 1
    return n / (time.perf_counter() - start), losses


class _Wrapped(Encoder):
    """Gives any backbone sslkit's ``embed`` for the kNN probe."""

    modality, input_key = "vision", "image"

    def __init__(self, fn: Callable[[Tensor], Tensor], module: nn.Module, dim: int) -> None:
        super().__init__()
        self.fn, self.module, self.embed_dim = fn, module, dim

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def embed(self, batch: dict) -> Tensor:
        return self(batch["image"].float() / 255.0)


def knn(encoder: Encoder, data: DataModule) -> float:
    return float(KNNEvaluator().evaluate(encoder, data)["knn_top1"])


# ---------------------------------------------------------------------- lightly builds
def lightly_simclr(cfg: Any, backbone: Encoder, data: DataModule, workers: int) -> tuple[nn.Module, DataLoader, Callable]:
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform

    aug, ok = cfg.augmenter_kwargs, cfg.objective_kwargs
    transform = SimCLRTransform(input_size=aug["image_size"], cj_bright=0.4, cj_contrast=0.4, cj_sat=0.2, cj_hue=0.1,
                                min_scale=aug["scale"][0], hf_prob=aug["hflip_p"], normalize=None)

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone
            self.head = SimCLRProjectionHead(backbone.embed_dim, ok["proj_hidden_dim"], ok["proj_dim"])
            self.loss = NTXentLoss(temperature=ok["temperature"])

        def after_step(self, step: int, total: int) -> None:
            pass

    model = Model()

    def step_fn(views: list[Tensor], step: int, total: int) -> Tensor:
        z = model.head(model.backbone(torch.cat(views[:2])))
        z0, z1 = z.chunk(2)
        return model.loss(z0, z1)

    return model, _loader(data, transform, cfg, workers), step_fn


def lightly_byol(cfg: Any, backbone: Encoder, data: DataModule, workers: int) -> tuple[nn.Module, DataLoader, Callable]:
    from lightly.loss import NegativeCosineSimilarity
    from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.transforms import BYOLTransform
    from lightly.transforms.byol_transform import BYOLView1Transform, BYOLView2Transform
    from lightly.utils.scheduler import cosine_schedule

    aug, ok = cfg.augmenter_kwargs, cfg.objective_kwargs
    common = dict(input_size=aug["image_size"], min_scale=aug["scale"][0], hf_prob=aug["hflip_p"], normalize=None)
    transform = BYOLTransform(view_1_transform=BYOLView1Transform(**common), view_2_transform=BYOLView2Transform(**common))

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone
            self.projection_head = BYOLProjectionHead(backbone.embed_dim, ok["proj_hidden_dim"], ok["proj_dim"])
            self.prediction_head = BYOLPredictionHead(ok["proj_dim"], ok["pred_hidden_dim"], ok["proj_dim"])
            self.backbone_momentum = copy.deepcopy(self.backbone)
            self.projection_head_momentum = copy.deepcopy(self.projection_head)
            deactivate_requires_grad(self.backbone_momentum)
            deactivate_requires_grad(self.projection_head_momentum)
            self.criterion = NegativeCosineSimilarity()

        def after_step(self, step: int, total: int) -> None:
            m = cosine_schedule(step, total, ok.get("base_momentum", 0.996), 1.0)
            update_momentum(self.backbone, self.backbone_momentum, m=m)
            update_momentum(self.projection_head, self.projection_head_momentum, m=m)

    model = Model()

    def step_fn(views: list[Tensor], step: int, total: int) -> Tensor:
        x0, x1 = views[:2]
        p0 = model.prediction_head(model.projection_head(model.backbone(x0)))
        p1 = model.prediction_head(model.projection_head(model.backbone(x1)))
        with torch.no_grad():
            z0 = model.projection_head_momentum(model.backbone_momentum(x0))
            z1 = model.projection_head_momentum(model.backbone_momentum(x1))
        return 0.5 * (model.criterion(p0, z1) + model.criterion(p1, z0))

    return model, _loader(data, transform, cfg, workers), step_fn


def lightly_dino(cfg: Any, backbone: Encoder, data: DataModule, workers: int) -> tuple[nn.Module, DataLoader, Callable]:
    from lightly.loss import DINOLoss
    from lightly.models.modules import DINOProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.transforms import DINOTransform
    from lightly.utils.scheduler import cosine_schedule

    aug, ok = cfg.augmenter_kwargs, cfg.objective_kwargs
    size = aug["image_size"]
    n_local = aug.get("n_local", 6)
    transform = DINOTransform(global_crop_size=size, local_crop_size=aug.get("local_size") or dino_local_size(size),
                              n_local_views=n_local, hf_prob=aug["hflip_p"], normalize=None)
    epochs = cfg.train.epochs
    out_dim = ok.get("out_dim", 65536)

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.student_backbone = backbone
            head = dict(input_dim=backbone.embed_dim, hidden_dim=ok.get("hidden_dim", 2048),
                        bottleneck_dim=ok.get("bottleneck_dim", 256), output_dim=out_dim,
                        batch_norm=ok.get("use_bn_in_head", False))
            self.student_head = DINOProjectionHead(**head, freeze_last_layer=0)
            self.teacher_backbone = copy.deepcopy(backbone)
            self.teacher_head = DINOProjectionHead(**head)
            self.teacher_head.load_state_dict(self.student_head.state_dict())
            deactivate_requires_grad(self.teacher_backbone)
            deactivate_requires_grad(self.teacher_head)
            self.criterion = DINOLoss(output_dim=out_dim, warmup_teacher_temp=ok.get("warmup_teacher_temp", 0.04),
                                      teacher_temp=ok.get("teacher_temp", 0.07),
                                      warmup_teacher_temp_epochs=max(1, int(ok.get("warmup_teacher_temp_fraction", 0.3) * epochs)))

        def after_step(self, step: int, total: int) -> None:
            m = cosine_schedule(step, total, ok.get("base_momentum", 0.996), 1.0)
            update_momentum(self.student_backbone, self.teacher_backbone, m=m)
            update_momentum(self.student_head, self.teacher_head, m=m)

    model = Model()
    steps_per_epoch = len(data.train) // cfg.train.batch_size  # type: ignore[arg-type]

    def step_fn(views: list[Tensor], step: int, total: int) -> Tensor:
        epoch = step // max(1, steps_per_epoch)
        teacher_out = [model.teacher_head(model.teacher_backbone(v)) for v in views[:2]]
        student_out = [model.student_head(model.student_backbone(v)) for v in views]
        loss = model.criterion(teacher_out, student_out, epoch=epoch)
        model.student_head.cancel_last_layer_gradients(current_epoch=epoch)
        return loss

    return model, _loader(data, transform, cfg, workers), step_fn


def lightly_mae(cfg: Any, data: DataModule, workers: int) -> tuple[nn.Module, DataLoader, Callable, Encoder]:
    from lightly.models import utils
    from lightly.models.modules import MAEDecoderTIMM, MaskedVisionTransformerTIMM
    from lightly.transforms import MAETransform
    from timm.models.vision_transformer import VisionTransformer

    aug, ok, ek = cfg.augmenter_kwargs, cfg.objective_kwargs, cfg.encoder_kwargs
    size = aug["image_size"]
    dims = dict(VIT_SIZES[cfg.encoder])  # the same size as sslkit's encoder for this recipe
    dims.update({k: ek[k] for k in dims if k in ek})
    torch.manual_seed(cfg.train.seed)
    vit = VisionTransformer(img_size=size, patch_size=dims["patch_size"], in_chans=ek.get("in_channels", 3), num_classes=0,
                            embed_dim=dims["embed_dim"], depth=dims["depth"], num_heads=dims["num_heads"])
    mean, std = ek.get("mean", [0.5]), ek.get("std", [0.25])
    transform = MAETransform(input_size=size, min_scale=aug.get("scale", (0.2, 1.0))[0], normalize={"mean": mean, "std": std})
    mask_ratio = ok.get("mask_ratio", 0.75)
    pool_mean = ek.get("pool", "cls") == "mean"

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = MaskedVisionTransformerTIMM(vit=vit)
            self.sequence_length = self.backbone.sequence_length
            self.patch_size = dims["patch_size"]
            self.decoder = MAEDecoderTIMM(num_patches=vit.patch_embed.num_patches, patch_size=self.patch_size,
                                          in_chans=ek.get("in_channels", 3), embed_dim=dims["embed_dim"],
                                          decoder_embed_dim=ok.get("decoder_dim", 512), decoder_depth=ok.get("decoder_depth", 8),
                                          decoder_num_heads=ok.get("decoder_heads", 16))
            self.criterion = nn.MSELoss()

        def after_step(self, step: int, total: int) -> None:
            pass

    model = Model()

    def step_fn(views: list[Tensor], step: int, total: int) -> Tensor:
        images = views[0]
        b = images.shape[0]
        idx_keep, idx_mask = utils.random_token_mask(size=(b, model.sequence_length), mask_ratio=mask_ratio, device=images.device)
        encoded = model.backbone.encode(images=images, idx_keep=idx_keep)
        x = model.decoder.embed(encoded)
        tokens = utils.repeat_token(model.decoder.mask_token, (b, model.sequence_length))
        tokens = utils.set_at_index(tokens, idx_keep, x.type_as(tokens))
        pred = model.decoder.predict(utils.get_at_index(model.decoder.decode(tokens), idx_mask))
        target = utils.get_at_index(utils.patchify(images, model.patch_size), idx_mask - 1)
        return model.criterion(pred, target)

    mean_t = torch.tensor(mean).view(1, -1, 1, 1)
    std_t = torch.tensor(std).view(1, -1, 1, 1)

    def embed(x: Tensor) -> Tensor:
        tokens = model.backbone.encode(images=(x - mean_t) / std_t)
        return tokens[:, 1:].mean(1) if pool_mean else tokens[:, 0]

    return model, _loader(data, transform, cfg, workers), step_fn, _Wrapped(embed, model, dims["embed_dim"])


def _loader(data: DataModule, transform: Callable, cfg: Any, workers: int) -> DataLoader:
    return DataLoader(PILViews(data, transform), batch_size=cfg.train.batch_size, shuffle=True, drop_last=True,
                      num_workers=workers, persistent_workers=workers > 0,
                      generator=torch.Generator().manual_seed(cfg.train.seed))


# ---------------------------------------------------------------------- the benchmark
def train_lightly(method: str, cfg: Any, data: DataModule, epochs: int, workers: int,
                  score: Callable[[Encoder], dict[str, float]]) -> dict[str, Any]:
    """Build ``method`` from lightly's parts around the recipe's backbone (same initial weights
    as sslkit's run, seeded as it was) and train it for ``epochs`` with a plain loop.

    Returns ``encoder`` (the trained backbone, with sslkit's ``embed``), ``before`` and ``after``
    (``score`` of it at lightly's own random start and after training), ``samples_per_s``,
    ``train_s`` and the losses.
    """
    torch.manual_seed(cfg.train.seed)  # the same initial backbone weights as ours
    if method == "mae":
        model, loader, step_fn, eval_encoder = lightly_mae(cfg, data, workers)
    else:
        backbone = build_encoder(cfg, data)
        build = {"simclr": lightly_simclr, "byol": lightly_byol, "dino": lightly_dino}[method]
        model, loader, step_fn = build(cfg, backbone, data, workers)
        eval_encoder = backbone
    before = score(eval_encoder)
    t0 = time.perf_counter()
    sps, losses = train_loop(model, loader, epochs, cfg.train, step_fn)
    train_s = time.perf_counter() - t0
    return {"encoder": eval_encoder, "before": before, "after": score(eval_encoder), "samples_per_s": sps,
            "train_s": train_s, "loss_first": losses[0], "loss_last": losses[-1]}


def run_method(method: str, epochs: int | None, workers: int, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    overrides = {"train.progress": False, "evaluators": ["knn"], "compare_random": False,
                 "train.checkpoint_every": 0, "train.health_every": 0}
    if epochs:
        overrides["train.epochs"] = epochs
    with tempfile.TemporaryDirectory() as tmp:
        cfg = resolve_config(method, "vision", overrides=nest({**overrides, "out": tmp}))
        t0 = time.perf_counter()
        outcome = run_experiment(cfg)
        ours = {"samples_per_s": outcome.train.samples_per_s, "knn_top1": outcome.metrics["trained"]["knn_top1"],
                "train_s": outcome.train.wall_time_s, "total_s": time.perf_counter() - t0,
                "loss_first": outcome.train.history[0]["loss"], "loss_last": outcome.train.final_loss}
    epochs = int(cfg.train.epochs or 0)
    data = build_data(cfg)
    torch.manual_seed(cfg.train.seed)
    random_backbone = build_encoder(cfg, data)
    floor = knn(random_backbone, data)
    lt = train_lightly(method, cfg, data, epochs, workers, lambda enc: {"knn_top1": knn(enc, data)})
    lightly_res = {"samples_per_s": lt["samples_per_s"], "knn_top1": lt["after"]["knn_top1"], "train_s": lt["train_s"],
                   "loss_first": lt["loss_first"], "loss_last": lt["loss_last"],
                   # its own initialisation (differs from ours for MAE's timm ViT)
                   "random_knn_top1": lt["before"]["knn_top1"]}
    return {"method": method, "encoder": cfg.encoder, "encoder_kwargs": {k: v for k, v in cfg.encoder_kwargs.items() if k not in ("mean", "std")},
            "dataset": cfg.dataset, "batch_size": cfg.train.batch_size, "epochs": epochs, "lr": cfg.train.lr,
            "ours": ours, "lightly": lightly_res, "random_knn_top1": floor}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="*", default=METHODS, choices=METHODS)
    parser.add_argument("--epochs", type=int, default=None,
                        help="the shared budget in passes over the training images (default: each recipe's epochs)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for lightly's per-image transforms")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import lightly

    rows = []
    for method in args.methods:
        r = run_method(method, args.epochs, args.workers, args.threads)
        rows.append(r)
        o, l_ = r["ours"], r["lightly"]
        print(f"{method:7s} ours {o['samples_per_s']:7.1f} samples/s kNN {o['knn_top1']:.4f} | lightly "
              f"{l_['samples_per_s']:7.1f} samples/s kNN {l_['knn_top1']:.4f} (at init {l_['random_knn_top1']:.4f}) | "
              f"random kNN {r['random_knn_top1']:.4f}", flush=True)
    header = (f"{'method':7s} {'encoder':12s} {'ours samples/s':>14s} {'lightly samples/s':>17s} "
              f"{'ours kNN':>9s} {'lightly kNN':>11s} {'random kNN':>10s} {'lightly init kNN':>16s}")
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        print(f"{r['method']:7s} {r['encoder']:12s} {r['ours']['samples_per_s']:14.1f} {r['lightly']['samples_per_s']:17.1f} "
              f"{r['ours']['knn_top1']:9.4f} {r['lightly']['knn_top1']:11.4f} {r['random_knn_top1']:10.4f} "
              f"{r['lightly']['random_knn_top1']:16.4f}")
    result = {
        "benchmark": "bench_vision_methods",
        "description": "per method: training samples/s and kNN top-1 (k=20, T=0.07) on the built-in data after the same "
                       "epochs, batch, backbone and LR schedule; ours = sslkit vision plugin via the runner, lightly = "
                       "the same method from lightly's heads/losses/transforms in a plain loop with DataLoader workers",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "lightly": lightly.__version__, "load_average": os.getloadavg()},
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
