"""wav2vec 2.0's quantiser and both of its gradient paths, and HuBERT's targets, against
independent formulas.

The straight-through Gumbel softmax must use the hard one-hot choice in the forward pass and the
gradient of the soft Gumbel probabilities in the backward pass; the contrastive loss reaches the
quantiser's logits only through that estimator, the diversity penalty only through the averaged
softmax. Each path is checked on its own, so losing either one fails a test.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssl_audio.encoders import Wav2Vec2Encoder
from ssl_audio.hubert import HuBERT, MFCCFeatures, _align
from ssl_audio.masking import span_mask
from ssl_audio.quantizer import GumbelVectorQuantizer
from ssl_audio.wav2vec2 import Wav2Vec2
from ssl_core.interfaces import StepInfo


def _step(i: int = 0, total: int = 10) -> StepInfo:
    return StepInfo(i, total, 0, torch.Generator().manual_seed(i))


def _gumbel_noise(shape: torch.Size, seed: int) -> torch.Tensor:
    """The quantiser's Gumbel noise: ``-log(-log u)`` with ``u`` the generator's first uniform draw."""
    u = torch.rand(shape, generator=torch.Generator().manual_seed(seed)).clamp(1e-9, 1.0 - 1e-9)
    return -torch.log(-torch.log(u))


def test_straight_through_forward_is_the_hard_choice_and_backward_the_soft_probabilities() -> None:
    torch.manual_seed(0)
    groups, entries, dim, tau, seed = 2, 5, 8, 0.7, 3
    q = GumbelVectorQuantizer(in_dim=6, groups=groups, entries=entries, dim=dim).train()
    z = torch.randn(16, 6)
    out = q(z, temperature=tau, generator=torch.Generator().manual_seed(seed))

    w, b = q.weight_proj.weight, q.weight_proj.bias
    logits = (z @ w.T + b).view(16, groups, entries)
    soft = F.softmax((logits + _gumbel_noise(logits.shape, seed)) / tau, dim=-1)
    codes = soft.argmax(-1)
    assert torch.equal(out.codes, codes)
    assert len(torch.unique(codes)) > 2  # the draw is not degenerate
    book = q.codebook.detach()
    hard_q = torch.cat([book[g][codes[:, g]] for g in range(groups)], dim=1)
    torch.testing.assert_close(out.q, hard_q)  # forward: exactly the chosen codebook entries

    upstream = torch.randn_like(out.q)
    grad_w, grad_book = torch.autograd.grad((out.q * upstream).sum(), [w, q.codebook])
    # backward: the gradient of the *soft* mixture of codebook entries, evaluated at the same noise
    soft_q = torch.einsum("ngv,gvd->ngd", soft, book).reshape(16, -1)
    (ref_w,) = torch.autograd.grad((soft_q * upstream).sum(), [w])
    assert ref_w.abs().sum() > 0
    torch.testing.assert_close(grad_w, ref_w, rtol=1e-4, atol=1e-6)
    # the codebook gets the upstream gradient of the frames that chose each entry (hard one-hot)
    up = upstream.view(16, groups, dim // groups)
    ref_book = torch.zeros_like(book)
    for n in range(16):
        for g in range(groups):
            ref_book[g, codes[n, g]] += up[n, g]
    torch.testing.assert_close(grad_book, ref_book, rtol=1e-5, atol=1e-6)


def test_diversity_loss_is_the_perplexity_penalty_and_trains_the_logits() -> None:
    """wav2vec 2.0 Eq. 4: ``(GV - sum_g exp(H(mean_n softmax(l_ng)))) / GV``, on logits without
    Gumbel noise; its gradient reaches the projection that makes the logits."""
    torch.manual_seed(1)
    groups, entries = 2, 6
    q = GumbelVectorQuantizer(in_dim=4, groups=groups, entries=entries, dim=4).train()
    z = torch.randn(32, 4)
    out = q(z, temperature=2.0, generator=torch.Generator().manual_seed(0))
    w, b = q.weight_proj.weight, q.weight_proj.bias
    probs = F.softmax((z @ w.T + b).view(32, groups, entries), dim=-1).mean(0)
    ppl = sum(torch.exp(-(probs[g] * probs[g].log()).sum()) for g in range(groups))
    expected = (groups * entries - ppl) / (groups * entries)
    assert float(out.diversity_loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert out.diversity_loss.requires_grad, "the diversity penalty is detached: it trains nothing"
    (grad,) = torch.autograd.grad(out.diversity_loss, [w])
    (ref,) = torch.autograd.grad(expected, [w])
    assert ref.abs().sum() > 0
    torch.testing.assert_close(grad, ref, rtol=1e-4, atol=1e-7)


def _wav2vec2(diversity_weight: float) -> Wav2Vec2:
    torch.manual_seed(0)
    return Wav2Vec2(Wav2Vec2Encoder(size="tiny"), num_negatives=10, codebook_entries=16, codevector_dim=16,
                    final_dim=16, diversity_weight=diversity_weight, feature_penalty_weight=0.0, feature_dropout=0.0)


def test_wav2vec2_contrastive_and_diversity_terms_each_send_gradient_to_the_quantiser_logits() -> None:
    g = torch.Generator().manual_seed(0)
    batch = {"waveform": torch.randn(3, 8000, generator=g), "lengths": torch.tensor([8000, 7000, 6000])}

    def logit_grad(obj: Wav2Vec2) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        torch.manual_seed(1)  # same dropout draws in both runs
        out = obj.training_step(batch, _step(2))
        out["loss"].backward()
        return obj.quantizer.weight_proj.weight.grad.clone(), out

    contrastive_only, base = _wav2vec2(0.0), _wav2vec2(0.5)
    base.load_state_dict(contrastive_only.state_dict())
    g_c, out_c = logit_grad(contrastive_only)
    # the contrastive loss alone reaches the logits, through the straight-through estimator
    assert float(out_c["loss"].detach()) == pytest.approx(float(out_c["loss_contrastive"]), rel=1e-6)
    assert g_c.abs().sum() > 0
    g_both, out_both = logit_grad(base)
    assert float(out_both["loss_contrastive"]) == pytest.approx(float(out_c["loss_contrastive"]), rel=1e-6)
    assert float(out_both["loss"].detach()) == pytest.approx(
        float(out_c["loss_contrastive"]) + 0.5 * float(out_both["loss_diversity"]), rel=1e-6)
    # what the diversity term adds to the logits' gradient is not zero
    assert (g_both - g_c).abs().sum() > 1e-3 * g_c.abs().sum()


# --------------------------------------------------------------------------- HuBERT targets
def test_align_truncates_or_repeats_the_last_label() -> None:
    labels = torch.tensor([[1, 2, 3], [4, 5, 6]])
    assert torch.equal(_align(labels, 2), torch.tensor([[1, 2], [4, 5]]))
    assert torch.equal(_align(labels, 5), torch.tensor([[1, 2, 3, 3, 3], [4, 5, 6, 6, 6]]))
    assert torch.equal(_align(torch.tensor([[1, 2, 3]]), 2), torch.tensor([[1, 2]]))  # frames, not rows
    assert torch.equal(_align(torch.tensor([[1], [2], [3]]), 2), torch.tensor([[1, 1], [2, 2], [3, 3]]))


def _hubert_reference(obj: HuBERT, batch: dict, seed: int) -> dict[str, torch.Tensor]:
    """HuBERT Eq. 1-3 recomputed from the encoder's parts: k-means unit of each frame's MFCCs,
    mask embedding on masked frames, cosine(projection, unit embedding) / 0.1, and the logits and
    units of the masked and of the valid unmasked frames, plus the CNN feature penalty."""
    wave, lengths = batch["waveform"], batch["lengths"]
    enc, km = obj.encoder, obj.targets.kmeans
    with torch.no_grad():
        feats, frames = enc.extract(wave, lengths)
        t = feats.shape[1]
        mfcc, _ = MFCCFeatures()(wave, lengths)
        z = (mfcc - km.mean) / km.std
        units = torch.cdist(z, km.centroids[None].expand(z.shape[0], -1, -1)).argmin(-1)
        units = units[:, :t] if units.shape[1] >= t else torch.cat(
            [units, units[:, -1:].expand(-1, t - units.shape[1])], 1)
        _, x = enc.project(feats)
        mask = span_mask(frames, t, 0.08, 10, 2, torch.Generator().manual_seed(seed))
        x = torch.where(mask[..., None], obj.mask_embedding, x)
        context = enc.contextualize(x, frames)
        valid = torch.arange(t)[None] < frames[:, None]
        emb = obj.label_embeddings

        def logits(rows: torch.Tensor) -> torch.Tensor:
            proj = obj.final_proj(rows)
            return (proj @ emb.T) / (proj.norm(dim=1, keepdim=True) * emb.norm(dim=1)[None]) / 0.1

        unmasked = valid & ~mask
        return {"logits_m": logits(context[mask]), "units_m": units[mask], "logits_u": logits(context[unmasked]),
                "units_u": units[unmasked], "penalty": feats.pow(2)[valid].mean(),
                "mask_frac": mask.sum() / valid.sum()}


def _hubert(tiny_words, **kw) -> HuBERT:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    obj = HuBERT(Wav2Vec2Encoder(size="tiny"), target_dataset=tiny_words.train, num_clusters=12, final_dim=16, **kw)
    return obj.eval()  # no dropout, so the recomputation sees the same network


def test_hubert_loss_is_cross_entropy_against_mfcc_kmeans_units_on_masked_frames(tiny_words) -> None:  # type: ignore[no-untyped-def]
    """Cross-entropy over the masked frames plus 10 x the CNN feature penalty; nothing from the
    unmasked frames by default (alpha = 1)."""
    obj = _hubert(tiny_words)
    batch = tiny_words.collate([tiny_words.train[i] for i in range(4)])
    out = obj.training_step(batch, _step(3))
    ref = _hubert_reference(obj, batch, seed=3)
    expected = F.cross_entropy(ref["logits_m"], ref["units_m"])
    assert len(torch.unique(ref["units_m"])) > 3
    assert float(out["loss_masked"]) == pytest.approx(float(expected), rel=1e-4)
    assert float(out["loss"].detach()) == pytest.approx(float(expected + 10 * ref["penalty"]), rel=1e-4)
    assert float(out["feature_pen"]) == pytest.approx(float(ref["penalty"]), rel=1e-4)
    assert float(out["acc_masked"]) == pytest.approx(float((ref["logits_m"].argmax(1) == ref["units_m"]).float().mean()))
    assert float(out["mask_frac"]) == pytest.approx(float(ref["mask_frac"]), rel=1e-6)
    assert "loss_unmasked" not in out


def test_hubert_unmasked_weight_adds_cross_entropy_on_the_valid_unmasked_frames(tiny_words) -> None:  # type: ignore[no-untyped-def]
    """HuBERT Eq. 3 with alpha < 1: ``L = L_m + (1 - alpha) / alpha * L_u``, here weight 0.5 on the
    cross-entropy of the valid frames that were not masked (padding excluded)."""
    obj = _hubert(tiny_words, unmasked_weight=0.5)
    batch = tiny_words.collate([tiny_words.train[i] for i in range(4)])
    batch["lengths"] = torch.tensor([7000, 5000, 6000, 4000]).minimum(batch["lengths"])
    batch["waveform"] = batch["waveform"] * (torch.arange(batch["waveform"].shape[1]) < batch["lengths"][:, None])
    out = obj.training_step(batch, _step(3))  # padded frames must not count as unmasked
    ref = _hubert_reference(obj, batch, seed=3)
    loss_m = F.cross_entropy(ref["logits_m"], ref["units_m"])
    loss_u = F.cross_entropy(ref["logits_u"], ref["units_u"])
    assert float(out["loss_unmasked"]) == pytest.approx(float(loss_u), rel=1e-4)
    assert float(out["loss"].detach()) == pytest.approx(float(loss_m + 0.5 * loss_u + 10 * ref["penalty"]), rel=1e-4)


def test_hubert_scales_the_cnn_gradient_of_the_prediction_loss_but_not_of_the_penalty(tiny_words) -> None:  # type: ignore[no-untyped-def]
    """The CNN's gradient is ``m * A + 10 * P`` for gradient multiplier m (0.1 in the paper), A the
    prediction loss's and P the feature penalty's: so G(0.1) = 0.1 G(1) + 0.9 G(0)."""
    obj = _hubert(tiny_words)
    assert obj.feature_grad_mult == 0.1
    batch = tiny_words.collate([tiny_words.train[i] for i in range(3)])
    cnn = list(obj.encoder.model.feature_extractor.parameters())

    def cnn_grad(mult: float) -> torch.Tensor:
        obj.feature_grad_mult = mult
        grads = torch.autograd.grad(obj.training_step(batch, _step(5))["loss"], cnn)
        return torch.cat([g.flatten() for g in grads])

    g01, g1, g0 = cnn_grad(0.1), cnn_grad(1.0), cnn_grad(0.0)
    assert (g1 - g0).abs().max() > 10 * (g0.abs().max() * 1e-4)  # the prediction loss reaches the CNN
    torch.testing.assert_close(g01, 0.1 * g1 + 0.9 * g0, rtol=1e-3, atol=1e-6 * float(g1.abs().max()))


def test_hubert_defaults_are_the_papers(tiny_words, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """BASE pre-training (Sec. IV-C): p = 8%, span 10, final dim 256, logit temperature 0.1,
    alpha = 1, feature penalty 10, CNN gradient x0.1; k = 100 MFCC units in iteration 1, k = 500
    on layer features (the middle layer by default) afterwards."""
    import inspect

    obj = HuBERT(Wav2Vec2Encoder(size="tiny"), target_dataset=tiny_words.train)
    assert obj.num_clusters == 100 and obj.targets.kmeans.centroids.shape == (100, 39)
    assert obj.final_proj.out_features == 256 and obj.label_embeddings.shape == (100, 256)
    assert (obj.mask_prob, obj.mask_length, obj.min_masks) == (0.08, 10, 2)
    assert (obj.logit_temp, obj.unmasked_weight) == (0.1, 0.0)
    assert (obj.feature_penalty_weight, obj.feature_grad_mult) == (10.0, 0.1)
    defaults = {k: p.default for k, p in inspect.signature(HuBERT).parameters.items()}
    assert (defaults["kmeans_max_frames"], defaults["kmeans_iters"], defaults["seed"]) == (100_000, 30, 0)
    teacher = Wav2Vec2Encoder(size="tiny", num_layers=4)
    torch.save({"encoder": "wav2vec2_small", "encoder_kwargs": {"size": "tiny", "num_layers": 4},
                "modality": "audio", "state_dict": teacher.state_dict()}, tmp_path / "encoder.pt")
    # k = 500 needs 500 frames: the 24 clips (269 frames) twice, the copy with a little noise
    noisy = [{**s, "waveform": s["waveform"] + 1e-3 * torch.randn(s["waveform"].shape)} for s in tiny_words.train]
    twice = torch.utils.data.ConcatDataset([tiny_words.train, noisy])
    second = HuBERT(Wav2Vec2Encoder(size="tiny"), target_dataset=twice, targets_from=str(tmp_path))
    assert second.num_clusters == 500 and second.targets.layer == 2  # 500 units on layer 4 // 2
    one = tmp_path / "one-layer"
    one.mkdir()
    torch.save({"encoder": "wav2vec2_small", "encoder_kwargs": {"size": "tiny", "num_layers": 1}, "modality": "audio",
                "state_dict": Wav2Vec2Encoder(size="tiny", num_layers=1).state_dict()}, one / "encoder.pt")
    third = HuBERT(Wav2Vec2Encoder(size="tiny"), target_dataset=tiny_words.train, targets_from=str(one), num_clusters=8)
    assert third.targets.layer == 1  # 1 // 2 = 0: at least layer 1


def test_hubert_targets_are_computed_in_float32_under_the_trainers_autocast(tiny_words) -> None:  # type: ignore[no-untyped-def]
    """Targets are data: under bf16 autocast the MFCCs (and so the k-means units) stay float32;
    in bf16 the MFCCs move by up to ~1.3 and some frames change unit."""
    obj = _hubert(tiny_words)
    seen: list[torch.dtype] = []
    obj.targets.features.register_forward_hook(lambda m, i, o: seen.append(o[0].dtype))
    batch = tiny_words.collate([tiny_words.train[i] for i in range(2)])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = obj.training_step(batch, _step(1))
    assert seen == [torch.float32] and torch.isfinite(out["loss"])
