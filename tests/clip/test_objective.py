"""The CLIP loss, the learned temperature and its clamp, DDP negatives, and the core contracts."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.nn.functional as F

from ssl_clip.encoder import INIT_LOGIT_SCALE, open_clip_encoder
from ssl_clip.objective import CLIP, GatheredClipLoss, clip_contrastive_loss
from ssl_core.config import TrainConfig
from ssl_core.interfaces import StepInfo
from ssl_core.testing import OBJECTIVE_CONTRACTS, check_objective_contract
from ssl_core.trainer import Trainer


def direct_infonce(img: torch.Tensor, txt: torch.Tensor, scale: float) -> torch.Tensor:
    """Radford et al. (2021), Fig. 3, written out element by element in float64."""
    img = img.double() / img.double().norm(dim=1, keepdim=True)
    txt = txt.double() / txt.double().norm(dim=1, keepdim=True)
    n = img.shape[0]
    total_i, total_t = 0.0, 0.0
    for i in range(n):
        row = [scale * float(img[i] @ txt[j]) for j in range(n)]
        col = [scale * float(img[j] @ txt[i]) for j in range(n)]
        total_i += -(row[i] - math.log(sum(math.exp(v) for v in row)))
        total_t += -(col[i] - math.log(sum(math.exp(v) for v in col)))
    return torch.tensor((total_i / n + total_t / n) / 2, dtype=torch.float64)


def _batch(data, n: int = 12) -> dict:
    from ssl_core.data import default_collate

    return default_collate([data.train[i] for i in range(n)])


@pytest.fixture(scope="module")
def encoder_kwargs():
    from ssl_clip.data import digit_captions

    return digit_captions().extras["encoder_kwargs"]


def test_open_clip_loss_matches_the_formula() -> None:
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(9, 16, generator=g), torch.randn(9, 16, generator=g)
    from open_clip.loss import ClipLoss

    for scale in (1.0, 1 / 0.07, 100.0):
        expected = direct_infonce(img, txt, scale)
        got = ClipLoss()(F.normalize(img, dim=1), F.normalize(txt, dim=1), torch.tensor(scale))
        assert got.item() == pytest.approx(expected.item(), rel=1e-5)
        ours = clip_contrastive_loss(F.normalize(img, dim=1), F.normalize(txt, dim=1), scale)
        assert ours.item() == pytest.approx(expected.item(), rel=1e-5)
        gathered = GatheredClipLoss()(F.normalize(img, dim=1), F.normalize(txt, dim=1), torch.tensor(scale))
        assert gathered.item() == pytest.approx(expected.item(), rel=1e-5)


def test_training_step_loss_is_the_formula_on_the_towers(digit_data, encoder_kwargs) -> None:
    torch.manual_seed(0)
    enc = open_clip_encoder(**encoder_kwargs)
    obj = CLIP(enc, augmenter=None)
    batch = _batch(digit_data)
    step = StepInfo(0, 10, 0, torch.Generator().manual_seed(0))
    out = obj.training_step(batch, step)
    with torch.no_grad():
        img = enc.encode_image(batch["image"])
        txt = enc.encode_text(batch["caption"])
    expected = direct_infonce(img, txt, math.exp(INIT_LOGIT_SCALE))
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-4)
    assert out["logit_scale"].item() == pytest.approx(1 / 0.07, rel=1e-5)
    out["loss"].backward()
    assert enc.logit_scale.grad is not None and enc.logit_scale.grad.abs() > 0  # the temperature is learned
    assert enc.model.visual.conv1.weight.grad.abs().sum() > 0
    assert enc.model.token_embedding.weight.grad.abs().sum() > 0


def test_logit_scale_initialised_and_clamped_at_100(digit_data, encoder_kwargs) -> None:
    enc = open_clip_encoder(**encoder_kwargs)
    obj = CLIP(enc)
    assert enc.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    with torch.no_grad():
        enc.logit_scale.fill_(math.log(1000.0))
    assert obj.scale().item() == pytest.approx(100.0)  # the forward never scales logits past 100
    obj.on_after_optimizer_step(StepInfo(0, 1, 0, torch.Generator()))
    assert enc.logit_scale.item() == pytest.approx(math.log(100.0))
    # through the real trainer: every step's update pushes log-scale up by 5 (far past ln 100 = 4.6);
    # the objective's post-step hook must bring it back to the cap each time
    with torch.no_grad():
        enc.logit_scale.fill_(math.log(90.0))
    enc.logit_scale.register_hook(lambda g: torch.full_like(g, -1.0))
    seen = []
    cfg = TrainConfig(steps=3, epochs=None, batch_size=16, lr=5.0, weight_decay=0.0, warmup_fraction=0.0,
                      optimizer="sgd", momentum=0.0, progress=False, health_every=0, checkpoint_every=0,
                      log_every=1)
    Trainer(obj, digit_data, cfg, callbacks=[lambda rec: seen.append(enc.logit_scale.item())]).fit()
    assert len(seen) == 3
    assert all(v == pytest.approx(math.log(100.0)) for v in seen)
    assert obj.scale().item() == pytest.approx(100.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, img: torch.Tensor, txt: torch.Tensor, out: dict) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        criterion = GatheredClipLoss()  # what CLIP.training_step calls
        n = img.shape[0] // world
        mine_i = img[rank * n:(rank + 1) * n].clone().requires_grad_()
        mine_t = txt[rank * n:(rank + 1) * n].clone()
        loss = criterion(mine_i, mine_t, torch.tensor(1 / 0.07))
        loss.backward()
        impl = criterion.impl()
        out[rank] = (impl.rank, impl.world_size, loss.item(), mine_i.grad.clone())
    finally:
        from ssl_core.distributed import shutdown

        shutdown()


def test_negatives_are_gathered_across_ranks() -> None:
    """Two gloo ranks with half a batch each see the same loss as one process with all of it."""
    import torch.multiprocessing as mp

    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(8, 16, generator=g), dim=1)
    txt = F.normalize(torch.randn(8, 16, generator=g), dim=1)
    full_img = img.clone().requires_grad_()
    full = clip_contrastive_loss(full_img, txt, 1 / 0.07)
    full.backward()
    manager = mp.Manager()
    out = manager.dict()
    mp.start_processes(_ddp_worker, args=(2, _free_port(), img, txt, out), nprocs=2, join=True, start_method="fork")
    for rank in (0, 1):
        r, w, loss, grad = out[rank]
        assert (r, w) == (rank, 2)  # the objective read rank/world_size from torch.distributed
        assert loss == pytest.approx(full.item(), rel=1e-5)
        # each rank's gradient, summed over ranks by DDP, is the full-batch gradient (x world_size)
        assert torch.allclose(grad / 2, full_img.grad[rank * 4:(rank + 1) * 4], atol=1e-6)


TINY = {"train": {"batch_size": 8}}


@pytest.mark.parametrize("contract", OBJECTIVE_CONTRACTS)
def test_clip_conforms_to_core_contracts(contract: str, registry) -> None:
    check_objective_contract("clip", contract, overrides=TINY, registry=registry)
