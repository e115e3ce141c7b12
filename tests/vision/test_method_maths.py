"""Each vision method's loss and update rule against an independent formula, in seconds.

These back the slow learning tests in ``test_methods.py``: a bug in the maths (an EMA that
copies batch-norm statistics, a decoder that leaves tokens in shuffled order, a loss on the
visible patches, BYOL pairing a view with itself, DINO pairing a crop with itself or forgetting
to centre) fails here without training anything. Objectives get fixed views from a stub
augmenter, so the expected value is computed from the same inputs by a separate route.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core.interfaces import Augmenter, StepInfo
from ssl_vision.byol import BYOL
from ssl_vision.dino import DINO
from ssl_vision.ema import make_teacher, ema_update
from ssl_vision.encoders import ResNetEncoder
from ssl_vision.mae import MAE, MAEDecoder, patchify, random_masking
from ssl_vision.vit import ViTEncoder, sincos_pos_embed_2d


class FixedViews(Augmenter):
    """Returns the views stored in the batch under ``views`` (a list), ignoring the generator."""

    def __call__(self, batch, generator):  # type: ignore[no-untyped-def]
        return list(batch["views"])


def _step(i: int = 0, total: int = 10) -> StepInfo:
    return StepInfo(step=i, total_steps=total, epoch=0, generator=torch.Generator().manual_seed(i))


def approx(x: float):  # type: ignore[no-untyped-def]
    return pytest.approx(x, rel=1e-5, abs=1e-6)


def _perturb(module: nn.Module, scale: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


# --------------------------------------------------------------------------- EMA teachers
def test_ema_averages_parameters_and_batchnorm_statistics_and_copies_counters() -> None:
    """``xi <- tau xi + (1 - tau) theta`` for weights and for BN running mean/var alike (BYOL keeps
    an EMA of the whole target network); the integer ``num_batches_tracked`` is copied."""
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    teacher = make_teacher(student)
    student.train()
    for _ in range(3):  # move the student's running statistics away from the teacher's
        student(3.0 * torch.randn(32, 4) + 1.0)
    _perturb(student, 0.5, seed=1)
    old = {k: v.clone() for k, v in teacher.state_dict().items()}
    new = {k: v.clone() for k, v in student.state_dict().items()}
    tau = 0.7
    ema_update(teacher, student, tau)
    after = teacher.state_dict()
    checked = set()
    for key, value in after.items():
        if key.endswith("num_batches_tracked"):
            assert int(value) == int(new[key]) == 3, key
            continue
        expected = [tau * a + (1 - tau) * b for a, b in zip(old[key].flatten().tolist(), new[key].flatten().tolist())]
        torch.testing.assert_close(value.flatten(), torch.tensor(expected), rtol=1e-5, atol=1e-6, msg=key)
        assert not torch.allclose(value, new[key]), f"{key} was copied, not averaged"
        checked.add(key)
    assert {"1.running_mean", "1.running_var", "0.weight", "3.bias"} <= checked
    assert not any(p.requires_grad for p in teacher.parameters())
    # the student is untouched
    assert all(torch.equal(new[k], v) for k, v in student.state_dict().items())


# --------------------------------------------------------------------------- BYOL
def _normalised_mse(p: Tensor, z: Tensor) -> Tensor:
    """BYOL Eq. 2, written out: mean over the batch of ``|| p/|p| - z/|z| ||^2``."""
    return ((p / p.norm(dim=1, keepdim=True) - z / z.norm(dim=1, keepdim=True)) ** 2).sum(1).mean()


def test_byol_predicts_the_target_projection_of_the_other_view() -> None:
    torch.manual_seed(0)
    enc = ResNetEncoder(in_channels=1, widths=(8, 16, 16, 16))
    obj = BYOL(enc, FixedViews(), proj_hidden_dim=32, proj_dim=16, pred_hidden_dim=32)
    _perturb(obj.target_encoder, 0.05, seed=2)  # a target that has drifted from the online net
    _perturb(obj.target_projector, 0.05, seed=3)
    g = torch.Generator().manual_seed(4)
    v1, v2 = torch.rand(8, 1, 16, 16, generator=g), torch.rand(8, 1, 16, 16, generator=g)
    loss = obj.training_step({"views": [v1, v2]}, _step())["loss"]

    with torch.no_grad():  # batch-norm in train mode: each view is normalised by its own statistics
        p1, p2 = (obj.predictor(obj.projector(obj.encoder(v))) for v in (v1, v2))
        z1, z2 = (obj.target_projector(obj.target_encoder(v)) for v in (v1, v2))
    cross = _normalised_mse(p1, z2) + _normalised_mse(p2, z1)
    same = _normalised_mse(p1, z1) + _normalised_mse(p2, z2)
    assert abs(float(cross) - float(same)) > 1e-2  # the data can tell the two pairings apart
    assert float(loss.detach()) == approx(float(cross))
    loss.backward()
    assert all(p.grad is None for p in obj.target_encoder.parameters())


def _byol_momentum(progress: float, base: float = 0.996) -> float:
    """BYOL Sec. 3.2: ``tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2``."""
    import math

    return 1 - (1 - base) * (math.cos(math.pi * progress) + 1) / 2


def test_byol_target_moves_by_this_steps_momentum_after_the_optimiser_step() -> None:
    """After a step at progress 0.3 both target networks are ``tau xi + (1 - tau) theta`` with the
    paper's cosine ``tau`` from 0.996 to 1, and ``training_step`` reports that ``tau``."""
    torch.manual_seed(0)
    enc = ResNetEncoder(in_channels=1, widths=(8, 8, 8, 8))
    obj = BYOL(enc, FixedViews(), proj_hidden_dim=16, proj_dim=8, pred_hidden_dim=16)
    _perturb(obj.encoder, 0.1, seed=8)  # the online network has moved away from its target
    _perturb(obj.projector, 0.1, seed=9)
    pairs = [(obj.target_encoder, obj.encoder), (obj.target_projector, obj.projector)]
    step = _step(3, 11)  # progress 0.3
    tau = _byol_momentum(0.3)
    assert abs(tau - 0.996) > 1e-4 and abs(tau - 1.0) > 1e-4
    v = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    out = obj.training_step({"views": [v, v.flip(-1)]}, step)
    assert float(out["momentum"]) == pytest.approx(tau, rel=1e-6)
    # (the step's forward passes update batch-norm statistics, the target's included)
    before = [{k: v.clone() for k, v in t.state_dict().items()} for t, _ in pairs]
    obj.on_after_optimizer_step(step)
    for (target, online), old in zip(pairs, before):
        moved = 0
        for key, value in target.state_dict().items():
            if value.dtype.is_floating_point:
                expected = tau * old[key] + (1 - tau) * online.state_dict()[key]
                torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-7, msg=key)
                moved += not torch.equal(value, old[key])
        assert moved > 0


def test_byol_defaults_are_the_papers_and_momenta_are_checked_at_their_bounds() -> None:
    """Sec. 3.3: projector and predictor Linear(4096)-BN-ReLU-Linear(256); tau from 0.996 to 1.
    ``0 <= base <= final <= 1`` holds with equality at each end; BYOL needs two views."""
    enc = ResNetEncoder(in_channels=1, widths=(8, 8, 8, 8))
    obj = BYOL(enc, FixedViews())
    shapes = [tuple(m.weight.shape) for m in (*obj.projector, *obj.predictor) if isinstance(m, nn.Linear)]
    assert shapes == [(4096, enc.embed_dim), (256, 4096), (4096, 256), (256, 4096)]
    assert (obj.base_momentum, obj.final_momentum) == (0.996, 1.0)
    for base, final in [(0.0, 0.0), (0.5, 0.5), (1.0, 1.0), (0.0, 1.0)]:
        BYOL(enc, FixedViews(), 8, 8, 8, base_momentum=base, final_momentum=final)
    for base, final in [(-0.01, 0.5), (0.6, 0.5), (0.5, 1.01), (-1.0, -0.5)]:
        with pytest.raises(ValueError, match="momentum"):
            BYOL(enc, FixedViews(), 8, 8, 8, base_momentum=base, final_momentum=final)
    with pytest.raises(ValueError, match="two-view augmenter"):
        BYOL(enc, None, 8, 8, 8)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- DINO
def _dino() -> DINO:
    torch.manual_seed(0)
    enc = ViTEncoder(embed_dim=32, depth=1, num_heads=2, patch_size=4, in_channels=1)
    return DINO(enc, FixedViews(), out_dim=48, hidden_dim=32, bottleneck_dim=16, center_momentum=0.9)


def _dino_reference(student: list[Tensor], teacher: list[Tensor], center: Tensor, ts: float, tt: float) -> float:
    """DINO Eq. 3 / Algorithm 1: teacher crops are the 2 global ones, centred and sharpened;
    every student crop except the teacher's own is matched; mean over pairs and samples."""
    pairs = []
    for iq, t in enumerate(teacher):
        p_t = torch.exp((t - center) / tt)
        p_t = p_t / p_t.sum(1, keepdim=True)
        for v, s in enumerate(student):
            if v == iq:
                continue
            log_p_s = s / ts - torch.logsumexp(s / ts, dim=1, keepdim=True)
            pairs.append(float((-(p_t * log_p_s).sum(1)).mean()))
    return sum(pairs) / len(pairs)


def test_dino_matches_teacher_global_crops_with_the_other_student_crops_and_centres() -> None:
    obj = _dino()
    _perturb(obj.teacher_backbone, 0.05, seed=5)
    _perturb(obj.teacher_head, 0.05, seed=6)
    g = torch.Generator().manual_seed(7)
    crops = [torch.rand(4, 1, 16, 16, generator=g) for _ in range(2)] + \
            [torch.rand(4, 1, 8, 8, generator=g) for _ in range(3)]
    with torch.no_grad():
        obj.criterion.center.copy_(0.5 * torch.randn(1, 48, generator=g))
    c0 = obj.criterion.center.clone()
    info = _step(800, 1000)  # past the temperature warm-up and the frozen last layer
    tt = obj.teacher_temperature(info.progress)
    assert tt == 0.07
    loss = obj.training_step({"views": crops}, info)["loss"]

    with torch.no_grad():
        student = [obj.head(obj.encoder(c)) for c in crops]
        teacher = [obj.teacher_head(obj.teacher_backbone(c)) for c in crops[:2]]
    expected = _dino_reference(student, teacher, c0, 0.1, tt)
    assert float(loss.detach()) == approx(expected)
    # changing any of the ingredients changes the value, so the check above has teeth
    assert abs(_dino_reference(student, teacher, torch.zeros_like(c0), 0.1, tt) - expected) > 1e-3  # no centring
    assert abs(_dino_reference(student, teacher, c0, 0.1, 0.1) - expected) > 1e-3  # no sharpening
    with_self = sum(float((-(F.softmax((t - c0) / tt, 1) * F.log_softmax(s / 0.1, 1)).sum(1)).mean())
                    for t in teacher for s in student) / (2 * len(student))
    assert abs(with_self - expected) > 1e-3  # a crop paired with itself
    # centre EMA (Eq. 4) from this batch's teacher outputs on the global crops
    torch.testing.assert_close(obj.criterion.center, 0.9 * c0 + 0.1 * torch.cat(teacher).mean(0, keepdim=True))


def test_dino_defaults_are_the_papers_and_arguments_are_checked_at_their_bounds() -> None:
    """Sec. 3 and the reference code: head 2048 hidden, 256 bottleneck, 65,536 prototypes, no
    batch-norm; student temperature 0.1, teacher 0.04 -> 0.07 over the first 30%, centre momentum
    0.9, teacher momentum 0.996 -> 1, last layer frozen for the first 1%, teacher evaluated.
    ``0 <= base <= final <= 1`` and the warm-up fraction in [0, 1] hold with equality."""
    enc = ViTEncoder(embed_dim=32, depth=1, num_heads=2, patch_size=4, in_channels=1)
    obj = DINO(enc, FixedViews())
    shapes = [tuple(m.weight.shape) for m in obj.head.mlp if isinstance(m, nn.Linear)]
    assert shapes == [(2048, 32), (2048, 2048), (256, 2048)]
    assert tuple(obj.head.last_layer.weight.shape) == (65536, 256)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in obj.head.modules())
    assert (obj.criterion.student_temp, obj.criterion.center_momentum) == (0.1, 0.9)
    assert (obj.warmup_teacher_temp, obj.teacher_temp, obj.warmup_teacher_temp_fraction) == (0.04, 0.07, 0.3)
    assert (obj.base_momentum, obj.final_momentum, obj.freeze_last_layer_fraction) == (0.996, 1.0, 0.01)
    assert obj.encoder_for_evaluation() is obj.teacher_backbone
    small = dict(out_dim=8, hidden_dim=8, bottleneck_dim=8)
    assert DINO(enc, FixedViews(), evaluate_teacher=False, **small).encoder_for_evaluation() is enc
    for base, final in [(0.0, 0.0), (0.5, 0.5), (1.0, 1.0), (0.0, 1.0)]:
        DINO(enc, FixedViews(), base_momentum=base, final_momentum=final, **small)
    for base, final in [(-0.01, 0.5), (0.6, 0.5), (0.5, 1.01), (-1.0, -0.5)]:
        with pytest.raises(ValueError, match="momentum"):
            DINO(enc, FixedViews(), base_momentum=base, final_momentum=final, **small)
    for fraction in (0.0, 1.0):
        DINO(enc, FixedViews(), warmup_teacher_temp_fraction=fraction, **small)
    for fraction in (-0.01, 1.01, -1.0):
        with pytest.raises(ValueError, match="warmup_teacher_temp_fraction"):
            DINO(enc, FixedViews(), warmup_teacher_temp_fraction=fraction, **small)
    with pytest.raises(ValueError, match="multi-crop augmenter"):
        DINO(enc, None, **small)  # type: ignore[arg-type]


def test_dino_schedules_at_their_edges() -> None:
    """No warm-up (fraction 0) is the final teacher temperature from the first step; the last
    layer is frozen strictly before ``freeze_last_layer_fraction`` of the run."""
    obj = _dino()
    obj.warmup_teacher_temp_fraction = 0.0
    assert obj.teacher_temperature(0.0) == obj.teacher_temperature(0.5) == 0.07
    obj.warmup_teacher_temp_fraction = 1.0
    assert obj.teacher_temperature(0.5) == pytest.approx(0.055) and obj.teacher_temperature(1.0) == 0.07
    obj.freeze_last_layer_fraction = 0.5
    assert obj.last_layer_frozen(_step(499, 1001)) and not obj.last_layer_frozen(_step(500, 1001))  # 500 / 1000


def test_dino_needs_two_global_crops() -> None:
    obj = _dino()
    one = {"views": [torch.rand(2, 1, 16, 16)]}
    with pytest.raises(ValueError, match="2 global crops"):
        obj.training_step(one, _step())
    two = {"views": [torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)]}
    assert torch.isfinite(obj.training_step(two, _step())["loss"])


# --------------------------------------------------------------------------- MAE
def test_mae_decoder_puts_every_token_back_at_its_own_patch_position() -> None:
    """The reference builds the full sequence by *scattering* the visible tokens to ``ids_keep``
    and mask tokens everywhere else; the decoder's gather with ``ids_restore`` must agree."""
    torch.manual_seed(0)
    dec = MAEDecoder(encoder_dim=8, patch_pixels=5, dim=16, depth=1, num_heads=2).eval()
    b, gh, gw = 3, 2, 4
    ids_keep, mask, ids_restore = random_masking(b, gh * gw, 0.5, torch.Generator().manual_seed(1), torch.device("cpu"))
    latent = torch.randn(b, 1 + ids_keep.shape[1], 8)
    with torch.no_grad():
        out = dec(latent, ids_restore, gh, gw)
        x = dec.embed(latent)
        full = dec.mask_token.expand(b, gh * gw, 16).clone()
        for i in range(b):
            for j, patch in enumerate(ids_keep[i].tolist()):
                assert mask[i, patch] == 0
                full[i, patch] = x[i, 1 + j]
        seq = torch.cat([x[:, :1], full + sincos_pos_embed_2d(gh, gw, 16)], dim=1)
        ref = dec.pred(dec.norm(dec.blocks(seq)))[:, 1:]
    assert out.shape == (b, gh * gw, 5)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def _mae() -> MAE:
    torch.manual_seed(0)
    enc = ViTEncoder(embed_dim=32, depth=1, num_heads=2, patch_size=4, in_channels=1)
    return MAE(enc, None, decoder_dim=32, decoder_depth=1, decoder_heads=2)


def test_mae_encodes_visible_patches_and_scores_only_the_masked_ones() -> None:
    mae = _mae()
    kept: list[Tensor] = []
    visible = mae.encoder.forward_visible
    mae.encoder.forward_visible = lambda x, ids: (kept.append(ids.clone()), visible(x, ids))[1]  # type: ignore[method-assign]
    images = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    loss, pred, mask, target = mae.forward_masked(images, torch.Generator().manual_seed(3))
    pred = pred.detach()
    (ids_keep,) = kept
    seen = torch.zeros(4, 16).scatter_(1, ids_keep, 1.0)
    assert torch.equal(mask, 1 - seen)  # masked = exactly the patches the encoder did not see
    assert torch.equal(target, patchify(mae.encoder.normalize(images), 4))

    def patch_errors(which: Tensor) -> float:  # normalised-pixel MSE per patch, averaged over `which`
        errs = []
        for i, j in which.nonzero().tolist():
            t = target[i, j]
            t = (t - t.mean()) / (t.var() + 1e-6).sqrt()
            errs.append(float(((pred[i, j] - t) ** 2).mean()))
        return sum(errs) / len(errs)

    assert float(loss.detach()) == approx(patch_errors(mask))
    assert abs(patch_errors(1 - mask) - patch_errors(mask)) > 1e-3  # the visible-patch loss differs
