"""EMA teachers (BYOL's target, DINO's teacher): no gradients, not optimised, EMA-updated with
the cosine momentum schedule, and the schedules themselves."""

from __future__ import annotations

import copy

import pytest
import torch

from ssl_core.config import TrainConfig
from ssl_core.interfaces import StepInfo
from ssl_core.trainer import Trainer
from ssl_vision.augment import MultiCropAugmenter, byol_views
from ssl_vision.byol import BYOL
from ssl_vision.dino import DINO
from ssl_vision.ema import cosine_momentum, ema_update, make_teacher
from ssl_vision.encoders import ResNetEncoder
from ssl_vision.vit import ViTEncoder


def _byol() -> BYOL:
    torch.manual_seed(0)
    enc = ResNetEncoder(in_channels=1, widths=(8, 16, 16, 16))
    return BYOL(enc, byol_views(image_size=16, hflip_p=0.0), proj_hidden_dim=32, proj_dim=16, pred_hidden_dim=32)


def _dino() -> DINO:
    torch.manual_seed(0)
    enc = ViTEncoder(embed_dim=32, depth=1, num_heads=2, patch_size=4, in_channels=1)
    return DINO(enc, MultiCropAugmenter(image_size=16, n_local=2, hflip_p=0.0), out_dim=64, hidden_dim=32, bottleneck_dim=16)


TEACHERS = {"byol": (_byol, ("target_encoder", "target_projector")),
            "dino": (_dino, ("teacher_backbone", "teacher_head"))}


def _step(i: int = 0, total: int = 10) -> StepInfo:
    return StepInfo(step=i, total_steps=total, epoch=0, generator=torch.Generator().manual_seed(i))


def _batch() -> dict[str, torch.Tensor]:
    return {"image": torch.randint(0, 256, (8, 1, 16, 16), generator=torch.Generator().manual_seed(5), dtype=torch.uint8)}


def test_cosine_momentum_schedule() -> None:
    assert cosine_momentum(0.0, 0.996) == pytest.approx(0.996)
    assert cosine_momentum(1.0, 0.996) == pytest.approx(1.0)
    assert cosine_momentum(0.5, 0.996) == pytest.approx(0.998)
    values = [cosine_momentum(p / 20, 0.996) for p in range(21)]
    assert all(a <= b for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("method", sorted(TEACHERS))
def test_teacher_gets_no_gradient_and_is_not_optimised(method: str) -> None:
    build, names = TEACHERS[method]
    obj = build()
    teacher_params = {id(p) for n in names for p in getattr(obj, n).parameters()}
    assert teacher_params, "the objective has no teacher parameters"
    out = obj.training_step(_batch(), _step())
    out["loss"].backward()
    for n in names:
        for pname, p in getattr(obj, n).named_parameters():
            assert not p.requires_grad and p.grad is None, f"{n}.{pname} received a gradient"
    assert any(p.grad is not None for p in obj.encoder.parameters())
    optimised = {id(p) for g in obj.param_groups(0.05) for p in g["params"]}
    assert not optimised & teacher_params
    assert {id(p) for p in obj.encoder.parameters()} <= optimised


@pytest.mark.parametrize("method", sorted(TEACHERS))
def test_teacher_follows_student_by_ema_after_optimizer_step(method: str) -> None:
    build, names = TEACHERS[method]
    obj = build()
    student = {"byol": (obj.encoder, getattr(obj, "projector", None)),
               "dino": (obj.encoder, getattr(obj, "head", None))}[method]
    with torch.no_grad():  # make student and teacher differ
        for m in student:
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.1)
    before = [copy.deepcopy(getattr(obj, n).state_dict()) for n in names]
    info = _step(3, 10)
    tau = obj.momentum(info.progress)
    assert tau == pytest.approx(cosine_momentum(3 / 9, 0.996))
    obj.on_after_optimizer_step(info)
    for n, old, s in zip(names, before, student):
        new = getattr(obj, n).state_dict()
        for key, value in s.state_dict().items():
            if value.dtype.is_floating_point:
                assert torch.allclose(new[key], tau * old[key] + (1 - tau) * value, atol=1e-6), key


def test_trainer_moves_teacher_and_keeps_it_frozen() -> None:
    obj = _dino()
    data = _tiny_data()
    teacher0 = copy.deepcopy(obj.teacher_backbone.state_dict())
    cfg = TrainConfig(steps=3, batch_size=8, lr=1e-3, device="cpu", progress=False, health_every=0, log_every=1)
    Trainer(obj, data, cfg).fit()
    moved = any(not torch.equal(teacher0[k], v) for k, v in obj.teacher_backbone.state_dict().items())
    assert moved
    assert all(not p.requires_grad for p in obj.teacher_backbone.parameters())
    assert all(torch.isfinite(p).all() for p in obj.teacher_head.parameters())


def test_dino_last_layer_stays_frozen_under_the_trainer() -> None:
    obj = _dino()
    obj.freeze_last_layer_fraction = 1.01  # frozen for the whole (short) run
    last0 = obj.head.last_layer.weight.detach().clone()
    mlp0 = obj.head.mlp[0].weight.detach().clone()
    cfg = TrainConfig(steps=3, batch_size=8, lr=1e-3, weight_decay=0.04, device="cpu", progress=False,
                      health_every=0, log_every=1)
    Trainer(obj, _tiny_data(), cfg).fit()
    assert torch.equal(obj.head.last_layer.weight, last0)  # no update and no weight decay
    assert not torch.equal(obj.head.mlp[0].weight, mlp0)


def test_dino_schedules() -> None:
    obj = _dino()
    assert obj.teacher_temperature(0.0) == pytest.approx(0.04)
    assert obj.teacher_temperature(0.15) == pytest.approx(0.055)
    assert obj.teacher_temperature(0.3) == obj.teacher_temperature(0.9) == pytest.approx(0.07)
    out = obj.training_step(_batch(), _step(0, 1000))
    out["loss"].backward()
    # the frozen last layer still takes part in the backward (DDP needs every parameter used)...
    assert obj.head.last_layer.weight.grad is not None
    obj.on_before_optimizer_step(_step(0, 1000))
    assert obj.head.last_layer.weight.grad is None  # ...and its gradient is dropped before the step
    obj.zero_grad()
    obj.training_step(_batch(), _step(500, 1000))["loss"].backward()
    obj.on_before_optimizer_step(_step(500, 1000))
    assert obj.head.last_layer.weight.grad is not None


def test_ema_update_checks_structure() -> None:
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 3, bias=False)
    with pytest.raises(RuntimeError, match="make_teacher"):
        ema_update(make_teacher(b), a, 0.9)


def _tiny_data():  # type: ignore[no-untyped-def]
    from ssl_core.data import TensorDictDataset
    from ssl_core.interfaces import DataModule

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (32, 1, 16, 16), generator=g, dtype=torch.uint8)
    return DataModule(train=TensorDictDataset(image=x, label=torch.zeros(32, dtype=torch.long)))
