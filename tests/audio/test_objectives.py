"""wav2vec 2.0 and HuBERT pieces: distractors, contrastive logits, MFCC/k-means targets, iteration 2."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssl_audio.encoders import Wav2Vec2Encoder
from ssl_audio.hubert import HuBERT, LayerTargets, MFCCFeatures, MFCCTargets
from ssl_audio.kmeans import KMeans, fit_kmeans
from ssl_audio.wav2vec2 import Wav2Vec2, contrastive_logits, sample_distractors, scale_grad
from ssl_core.errors import ConfigError
from ssl_core.interfaces import StepInfo


def _step(i: int = 0, total: int = 10) -> StepInfo:
    return StepInfo(i, total, 0, torch.Generator().manual_seed(i))


def test_distractors_come_from_other_masked_frames_of_the_same_utterance():
    mask = torch.zeros(3, 30, dtype=torch.bool)
    mask[0, 2:12] = True
    mask[1, 5:25] = True
    mask[2, 7] = True  # a single masked frame: nothing else to draw
    idx = sample_distractors(mask, 200, torch.Generator().manual_seed(0))
    assert idx.shape == (3, 30, 200)  # every frame, masked or not: a fixed shape
    assert mask.gather(1, idx.view(3, -1)).all()  # every draw lands on a masked frame of its own row
    for row in range(2):
        own = torch.arange(30)[:, None]
        drawn = idx[row][mask[row]]
        assert not (drawn == own[mask[row]]).any()  # never the frame itself when there is a choice
    assert (idx[2, 7] == 7).all()
    counts = torch.bincount(idx[0][mask[0]].flatten(), minlength=30)[2:12]
    assert counts.min() > 120  # ~uniform over the 9 others (10 x 200 / 10 = 200 each, minus self)
    empty = sample_distractors(torch.zeros(2, 5, dtype=torch.bool), 4)  # no masked frame: still in range
    assert empty.shape == (2, 5, 4) and empty.min() >= 0 and empty.max() < 5


def test_contrastive_logits_put_the_target_first_and_hide_identical_distractors():
    q = F.normalize(torch.randn(1, 6, 16), dim=-1)
    codes = torch.arange(6)[None, :, None].repeat(1, 1, 2)
    codes[0, 3] = codes[0, 1]  # same code twice
    idx = torch.tensor([[1, 2, 3]] * 6)[None]
    logits = contrastive_logits(q.clone(), q, codes, idx, temperature=0.1)
    assert logits.shape == (1, 6, 4)
    assert torch.allclose(logits[0, :, 0], torch.full((6,), 10.0), atol=1e-4)  # cos = 1 at T = 0.1
    assert torch.isinf(logits[0, 1, 1]) and torch.isinf(logits[0, 1, 3])  # the distractor with q[1]'s code
    assert torch.isinf(logits[0, 2, 2]) and torch.isfinite(logits[0, 2, 1])  # the frame itself
    cos = F.cosine_similarity(q[0, 0], q[0, 2], dim=0) / 0.1
    assert torch.allclose(logits[0, 0, 2], cos, atol=1e-5)
    zeros = torch.zeros(6, dtype=torch.long)
    assert F.cross_entropy(logits[0], zeros) < F.cross_entropy(
        contrastive_logits(torch.randn(1, 6, 16), q, codes, idx, 0.1)[0], zeros)


def _sparse_wav2vec2_reference(obj: Wav2Vec2, batch: dict, seed: int, info: StepInfo) -> dict[str, torch.Tensor]:
    """The loss of wav2vec 2.0 over the masked frames only, computed as the paper states it: gather
    the masked frames, draw each one's distractors among the other masked frames of its utterance
    (keyed by utterance and frame, as the objective does), and average the cross-entropy."""
    from ssl_audio.data import padding_mask
    from ssl_audio.masking import span_mask
    from ssl_core.randomness import keyed_uniform, sample_keys

    g = torch.Generator().manual_seed(seed)
    enc = obj.encoder
    feats, frames = enc.extract(batch["waveform"], batch["lengths"])
    normed, x = enc.project(scale_grad(feats, obj.feature_grad_mult))
    t = feats.shape[1]
    mask = span_mask(frames, t, obj.mask_prob, obj.mask_length, obj.min_masks, g)
    x = torch.where(mask[..., None], obj.mask_embedding, x)
    c = obj.final_proj(enc.contextualize(x, frames)[mask])
    rows, cols = mask.nonzero(as_tuple=True)

    def uniform(per_frame: int) -> torch.Tensor:
        keys = sample_keys(g, mask.shape[0])
        return keyed_uniform(keys[rows][:, None], cols[:, None] * per_frame + torch.arange(per_frame)[None, :])

    qout = obj.quantizer(normed[mask], obj.temperature(info), uniform=uniform(obj.quantizer.num_codes))
    q = obj.project_q(qout.q)
    u = uniform(obj.num_negatives)
    logits = []
    for i, (row, col) in enumerate(zip(rows.tolist(), cols.tolist())):
        same_row = (rows == row).nonzero().squeeze(1)  # this utterance's masked frames
        others = same_row[same_row != i]
        if len(others) == 0:
            others = torch.tensor([i])
        negs = others[torch.floor(u[i] * len(others)).long().clamp_max(len(others) - 1)]
        cand = torch.cat([q[i:i + 1], q[negs]])
        row_logits = F.cosine_similarity(c[i][None], cand, dim=-1) / obj.logit_temp
        same = (qout.codes[negs] == qout.codes[i]).all(-1)
        logits.append(torch.cat([row_logits[:1], row_logits[1:].masked_fill(same, float("-inf"))]))
    logits = torch.stack(logits)
    zeros = torch.zeros(len(logits), dtype=torch.long)
    valid = ~padding_mask(frames, t)
    pen = feats.float().pow(2)[valid].mean()
    loss_c = F.cross_entropy(logits, zeros)
    return {"loss_contrastive": loss_c, "loss_diversity": qout.diversity_loss, "code_ppl": qout.code_perplexity,
            "acc": (logits.argmax(1) == 0).float().mean(),
            "loss": loss_c + obj.diversity_weight * qout.diversity_loss + obj.feature_penalty_weight * pen}


def test_the_fixed_shape_step_computes_the_masked_frame_loss_of_the_paper():
    """The step scores every frame and weights by the mask (no ``context[mask]``, no ``nonzero``);
    its loss, diversity penalty, code usage and accuracy equal those of the masked frames alone,
    drawn the same way, and so do the gradients."""
    torch.manual_seed(0)
    obj = Wav2Vec2(Wav2Vec2Encoder(size="tiny"), num_negatives=12, codebook_entries=16, codevector_dim=16,
                   final_dim=16, feature_dropout=0.0)
    g = torch.Generator().manual_seed(5)
    batch = {"waveform": torch.randn(3, 9000, generator=g), "lengths": torch.tensor([9000, 6000, 3000])}
    info = StepInfo(3, 10, 0, torch.Generator().manual_seed(7))
    torch.manual_seed(1)
    dense = obj.training_step(batch, info)
    dense["loss"].backward()
    grads = {n: p.grad.clone() for n, p in obj.named_parameters() if p.grad is not None}
    obj.zero_grad()
    torch.manual_seed(1)
    ref = _sparse_wav2vec2_reference(obj, batch, 7, info)
    ref["loss"].backward()
    for k in ("loss", "loss_contrastive", "loss_diversity", "code_ppl", "acc"):
        torch.testing.assert_close(dense[k].float(), ref[k].float(), rtol=1e-5, atol=1e-6, msg=k)
    assert 0.0 < float(ref["acc"]) < 1.0 or float(ref["loss_contrastive"]) > 0  # not a degenerate batch
    for n, p in obj.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[n], p.grad, rtol=1e-4, atol=1e-6, msg=n)
    assert len(grads) > 10


def test_grad_multiply_scales_only_the_gradient():
    x = torch.ones(3, requires_grad=True)
    y = scale_grad(x, 0.1)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.full((3,), 0.1))


def test_wav2vec2_step_is_finite_and_trains_every_part():
    torch.manual_seed(0)
    obj = Wav2Vec2(Wav2Vec2Encoder(size="tiny"), num_negatives=10, codebook_entries=16, codevector_dim=16, final_dim=16)
    wave = torch.randn(4, 12000)
    out = obj.training_step({"waveform": wave, "lengths": torch.tensor([12000, 9000, 7000, 4000])}, _step())
    assert torch.isfinite(out["loss"])
    assert 0.3 < float(out["mask_frac"]) < 0.9 and float(out["code_ppl"]) > 1
    out["loss"].backward()
    for name in ("quantizer.weight_proj.weight", "quantizer.codebook", "mask_embedding", "project_q.weight",
                 "encoder.model.feature_extractor.conv_layers.0.conv.weight"):
        assert dict(obj.named_parameters())[name].grad.abs().sum() > 0, name


def test_mfcc_frames_line_up_with_encoder_frames():
    enc, mfcc = Wav2Vec2Encoder(size="tiny"), MFCCFeatures()
    for n in (400, 1000, 8000, 16000, 23456):
        feats, frames = mfcc(torch.randn(2, n), torch.tensor([n, n - 80]))
        assert feats.shape[2] == 39
        _, enc_frames = enc.extract(torch.randn(2, n), torch.tensor([n, n - 80]))
        assert torch.equal(frames, enc_frames) and feats.shape[1] == enc_frames[0]


def test_kmeans_recovers_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.3 * torch.randn(100, 2, generator=g) for c in centres])
    c, inertia = fit_kmeans(x, 3, seed=1)
    assert torch.cdist(centres, c).min(1).values.max() < 0.2
    assert inertia < 1.3 * 300 * 2 * 0.3**2  # ~ the noise variance: nothing left unexplained
    labels = KMeans(c)(x)
    assert all(len(torch.unique(labels[i * 100:(i + 1) * 100])) == 1 for i in range(3))


def test_hubert_targets_come_from_kmeans_fitted_on_training_mfccs(tiny_words):
    torch.manual_seed(0)
    obj = HuBERT(Wav2Vec2Encoder(size="tiny"), target_dataset=tiny_words.train, num_clusters=12, final_dim=16)
    assert isinstance(obj.targets, MFCCTargets) and obj.targets.kmeans.centroids.shape == (12, 39)
    batch = tiny_words.collate([tiny_words.train[i] for i in range(6)])
    feats, frames = obj.targets.features(batch["waveform"], batch["lengths"])
    labels = obj.targets(batch["waveform"], batch["lengths"], feats.shape[1])
    km = obj.targets.kmeans
    manual = torch.cdist((feats - km.mean) / km.std, km.centroids[None]).argmin(-1)
    assert torch.equal(labels, manual)
    valid = labels[torch.arange(feats.shape[1])[None] < frames[:, None]]
    assert len(torch.unique(valid)) >= 6  # speech frames spread over many units
    # the fitted centroids explain the MFCC frames far better than random data points would
    from ssl_audio.hubert import collect_frames
    x = (collect_frames(obj.targets, tiny_words.train) - km.mean) / km.std
    fitted = torch.cdist(x, km.centroids).min(1).values.pow(2).sum()
    rand = torch.cdist(x, x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:12]]).min(1).values.pow(2).sum()
    assert fitted < 0.8 * rand
    out = obj.training_step(batch, _step())
    assert torch.isfinite(out["loss"])  # the loss and accuracy values: test_quantizer_grads.py (HuBERT)


def test_hubert_iteration_two_uses_a_frozen_trained_layer(tiny_words, tmp_path):
    teacher = Wav2Vec2Encoder(size="tiny", num_layers=2)
    torch.save({"encoder": "wav2vec2_small", "encoder_kwargs": {"size": "tiny", "num_layers": 2},
                "modality": "audio", "state_dict": teacher.state_dict()}, tmp_path / "encoder.pt")
    obj = HuBERT(Wav2Vec2Encoder(size="tiny"), target_dataset=tiny_words.train, targets_from=str(tmp_path),
                 target_layer=1, num_clusters=8, final_dim=16)
    assert isinstance(obj.targets, LayerTargets) and obj.targets.layer == 1
    assert obj.targets.kmeans.centroids.shape == (8, 32)
    assert obj.label_embeddings.shape[0] == 8
    loaded = obj.targets.teacher
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), teacher.state_dict().values()))
    before = {k: v.clone() for k, v in loaded.state_dict().items()}
    opt = torch.optim.AdamW([p for g in obj.param_groups(0.01) for p in g["params"]], lr=1e-2)
    obj.train()
    assert not loaded.training  # frozen teacher stays in eval mode
    batch = tiny_words.collate([tiny_words.train[i] for i in range(4)])
    out = obj.training_step(batch, _step())
    out["loss"].backward()
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in loaded.state_dict().items())
    assert not any(p.requires_grad for p in loaded.parameters())


def test_hubert_configuration_errors_say_how_to_fix_them(tiny_words, tmp_path):
    with pytest.raises(ConfigError, match="target_data"):
        HuBERT(Wav2Vec2Encoder(size="tiny"))
    with pytest.raises(ConfigError, match="targets_from"):
        HuBERT(Wav2Vec2Encoder(size="tiny"), target_dataset=tiny_words.train, target_layer=3)
    with pytest.raises(Exception, match="encoder.pt"):
        HuBERT(Wav2Vec2Encoder(size="tiny"), target_dataset=tiny_words.train, targets_from=str(tmp_path))


def test_mfcc_features_without_lengths_count_every_frame_and_pad_a_short_clip():
    """25 ms windows every 20 ms at 16 kHz (the CNN's frames), 13 coefficients from 23 mel bands;
    a batch shorter than one window is zero-padded to one; a clip shorter than a hop has 0 frames."""
    mfcc = MFCCFeatures()
    assert (mfcc.win, mfcc.hop, mfcc.mfcc.n_mfcc, mfcc.mfcc.MelSpectrogram.mel_scale.n_mels) == (400, 320, 13, 23)
    feats, frames = mfcc(torch.randn(2, 8000))
    assert feats.shape == (2, 24, 39) and frames.tolist() == [24, 24]  # (8000 - 400) // 320 + 1
    short = torch.randn(400, 300)
    feats, frames = mfcc(short)  # shorter than one window: zero-padded at the end to 400
    assert feats.shape[:2] == (400, 1) and frames.unique().tolist() == [1]
    torch.testing.assert_close(feats[:, 0, :13], mfcc.mfcc(F.pad(short, (0, 100)))[:, :, 0], rtol=1e-5, atol=1e-4)
    _, frames = mfcc(torch.randn(2, 8000), torch.tensor([8000, 50]))
    assert frames.tolist() == [24, 0]  # not -1


def test_layer_targets_accept_every_layer_of_the_teacher_and_no_other():
    teacher = Wav2Vec2Encoder(size="tiny", num_layers=2)
    wave = torch.randn(2, 4000)
    outs, _ = teacher.eval().layer_outputs(wave)
    for layer in (1, 2):
        feats, _ = LayerTargets(teacher, layer).frame_features(wave, None)
        torch.testing.assert_close(feats, outs[layer - 1])
    targets = LayerTargets(teacher, 1)
    assert targets.train().training and not targets.teacher.training  # train() means train mode
    for layer in (0, 3):
        with pytest.raises(ConfigError, match="between 1 and 2"):
            LayerTargets(teacher, layer)


def test_collect_frames_keeps_every_valid_frame_in_order_or_a_seeded_subset(tiny_words):
    """Every valid frame of every clip (no padding frame), in dataset order, while they fit in
    ``max_frames`` (boundary included); beyond it, ``max_frames`` distinct frames of clips read in
    the seed's order, and reading stops once they are in hand (the cost is bounded by max_frames)."""
    import inspect

    from ssl_audio.data import pad_collate
    from ssl_audio.hubert import collect_frames
    from ssl_core.errors import DataError

    targets = MFCCTargets(KMeans(torch.zeros(1, 39)))
    clips = torch.utils.data.Subset(tiny_words.train, range(5))
    batch = pad_collate([clips[i] for i in range(5)])
    feats, frames = MFCCFeatures()(batch["waveform"], batch["lengths"])
    assert len(set(frames.tolist())) > 1  # clips of different lengths: padding frames exist
    expected = torch.cat([feats[i, :int(frames[i])] for i in range(5)])
    n = expected.shape[0]
    torch.testing.assert_close(collect_frames(targets, clips), expected)
    torch.testing.assert_close(collect_frames(targets, clips, max_frames=n), expected)
    sub = collect_frames(targets, clips, max_frames=n // 2, seed=1)
    assert sub.shape == (n // 2, 39)
    order = torch.randperm(5, generator=torch.Generator().manual_seed(1)).tolist()
    torch.testing.assert_close(sub, torch.cat([feats[i, :int(frames[i])] for i in order])[: n // 2])
    torch.testing.assert_close(collect_frames(targets, clips, max_frames=n // 2, seed=1), sub)
    assert not torch.equal(collect_frames(targets, clips, max_frames=n // 2, seed=2), sub)
    reads: list[int] = []

    class Counted(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(clips)

        def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
            reads.append(i)
            return clips[i]

    first = int(frames.min())  # no more frames than any one clip holds: the first batch of 2 is enough
    torch.testing.assert_close(collect_frames(targets, Counted(), max_frames=first, batch_size=2, seed=1),
                               collect_frames(targets, clips, max_frames=first, batch_size=2, seed=1))
    assert len(reads) == 2, reads
    defaults = {k: p.default for k, p in inspect.signature(collect_frames).parameters.items()}
    assert (defaults["max_frames"], defaults["seed"]) == (100_000, 0)
    with pytest.raises(DataError, match="empty"):
        collect_frames(targets, [])


def test_resolve_target_dataset_builds_the_named_dataset_or_says_what_is_wrong(tiny_words, words_cache):
    from ssl_audio.hubert import resolve_target_dataset

    from .conftest import TINY_WORDS

    train, collate = resolve_target_dataset({"dataset": "spoken_words",
                                             "dataset_kwargs": {**TINY_WORDS, "cache_dir": words_cache}})
    assert len(train) == len(tiny_words.train) and callable(collate)
    for bad in ("spoken_words", {"path": "/data"}):
        with pytest.raises(ConfigError, match="'dataset' name"):
            resolve_target_dataset(bad)
    # the objective takes the same description (what `ssl run` passes) and fits its targets on it
    obj = HuBERT(Wav2Vec2Encoder(size="tiny"), num_clusters=8, final_dim=16,
                 target_data={"dataset": "spoken_words", "dataset_kwargs": {**TINY_WORDS, "cache_dir": words_cache}})
    assert obj.targets.kmeans.centroids.shape == (8, 39)
    with pytest.raises(ConfigError, match="fits its k-means targets on the training audio but got none"):
        HuBERT(Wav2Vec2Encoder(size="tiny"))


def test_mfcc_frames_of_a_clip_do_not_depend_on_the_padding_of_its_batch():
    """Padded to a longer clip's length, a clip's valid frames (deltas and delta-deltas of its
    last 4 frames included) are torchaudio's MFCCs + deltas of the clip alone: HuBERT's targets
    must not depend on the batch."""
    import torchaudio.functional as AF

    g = torch.Generator().manual_seed(0)
    short, long = 0.1 * torch.randn(6000, generator=g), 0.1 * torch.randn(8000, generator=g)
    mfcc = MFCCFeatures()

    def reference(clip: torch.Tensor) -> torch.Tensor:  # torchaudio on the clip alone, no padding
        m = mfcc.mfcc(clip[None])
        d1 = AF.compute_deltas(m)
        return torch.cat([m, d1, AF.compute_deltas(d1)], dim=1).transpose(1, 2)[0]

    alone, frames_alone = mfcc(short[None], torch.tensor([6000]))
    batch = torch.stack([torch.cat([short, torch.zeros(2000)]), long])
    padded, frames = mfcc(batch, torch.tensor([6000, 8000]))
    assert frames.tolist() == [18, 24] and frames_alone.tolist() == [18]  # (n - 400) // 320 + 1
    torch.testing.assert_close(alone[0], reference(short), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(padded[0, :18], reference(short), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(padded[1], reference(long), rtol=1e-5, atol=1e-4)
    one_frame = short[:400]  # a single valid frame: its deltas are 0, whatever the padding holds
    padded, frames = mfcc(torch.stack([torch.cat([one_frame, torch.zeros(7600)]), long]), torch.tensor([400, 8000]))
    assert frames.tolist() == [1, 24]
    torch.testing.assert_close(padded[0, :1], reference(one_frame), rtol=1e-5, atol=1e-4)
