"""HuBERT pre-training objective.

Hsu, Bolte, Tsai, Lakhotia, Salakhutdinov & Mohamed, "HuBERT: Self-Supervised Speech
Representation Learning by Masked Prediction of Hidden Units", IEEE/ACM TASLP 2021
(arXiv:2106.07447).

Frame targets are cluster ids from k-means fitted offline on the training audio:

- iteration 1: 39-d MFCCs (13 coefficients + deltas + delta-deltas), k = 100 in the paper;
- iteration 2+: features of one Transformer layer of a model trained in the previous iteration
  (the paper: layer 6 of the iteration-1 BASE model, k = 500), given here as
  ``targets_from=RUN_DIR`` (a finished ``ssl run`` directory) and ``target_layer=N``.

Spans of the projected CNN features are replaced by a learned mask embedding (p = 8%, span 10);
the Transformer output at each frame is projected and scored against one learned embedding per
cluster by cosine similarity / 0.1 (Eq. 1-3); the loss is cross-entropy over masked frames
(alpha = 1; ``unmasked_weight`` adds the unmasked-frame term), plus the CNN feature penalty.
This is the computation of torchaudio's ``HuBERTPretrainModel`` (whose logits put the positive
in column 0 next to every cluster); it is written out here so the mask is drawn from the
run's seeded generator and the targets can come from any source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from ssl_core import distributed as D
from ssl_core.errors import ConfigError, DataError
from ssl_core.interfaces import Augmenter, Batch, Objective, StepInfo
from ssl_core.rundir import launched_rank
from ssl_audio.data import SAMPLE_RATE, pad_collate, padding_mask
from ssl_audio.encoders import Wav2Vec2Encoder
from ssl_audio.kmeans import KMeans
from ssl_audio.masking import masked_fraction, span_mask
from ssl_audio.wav2vec2 import scale_grad


class MFCCFeatures(nn.Module):
    """39-d MFCC frames (13 + delta + delta-delta) aligned with the encoder's frames.

    Window 400 samples and hop 320 samples without centring: frame t covers exactly the samples
    the CNN's frame t sees (25 ms receptive field, 20 ms stride at 16 kHz).
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE, n_mfcc: int = 13, n_mels: int = 23,
                 win_length: int = 400, hop_length: int = 320) -> None:
        super().__init__()
        import torchaudio

        self.hop, self.win = hop_length, win_length
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate=sample_rate, n_mfcc=n_mfcc,
            melkwargs={"n_fft": win_length, "win_length": win_length, "hop_length": hop_length,
                       "n_mels": n_mels, "center": False},
        )

    def forward(self, waveform: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``[B, L]`` -> (features ``[B, T, 39]``, valid frames ``[B]``)."""
        import torchaudio.functional as AF

        if waveform.shape[1] < self.win:
            waveform = F.pad(waveform, (0, self.win - waveform.shape[1]))
        m = self.mfcc(waveform.float())  # [B, 13, T]
        if lengths is None:
            lengths = torch.full((waveform.shape[0],), waveform.shape[1], device=waveform.device)
        frames = (torch.div(lengths - self.win, self.hop, rounding_mode="floor") + 1).clamp(0, m.shape[-1])
        # the deltas reach 2 (delta-deltas 4) frames ahead: at a padded clip's end they would see
        # its padding, so a clip's last frames would depend on its batch. Repeat the last valid
        # frame (of the MFCCs, then of the deltas) over the padding instead, as compute_deltas
        # does at the end of an unpadded clip.
        last = torch.minimum(torch.arange(m.shape[-1], device=m.device)[None], (frames - 1).clamp_min(0)[:, None])
        last = last[:, None, :].expand(-1, m.shape[1], -1)
        m = torch.gather(m, 2, last)
        d1 = torch.gather(AF.compute_deltas(m), 2, last)
        d2 = AF.compute_deltas(d1)
        return torch.cat([m, d1, d2], dim=1).transpose(1, 2), frames


def _align(labels: Tensor, t: int) -> Tensor:
    """Truncate or edge-pad frame labels ``[B, T']`` to ``t`` frames."""
    if labels.shape[1] >= t:
        return labels[:, :t]
    return torch.cat([labels, labels[:, -1:].expand(-1, t - labels.shape[1])], dim=1)


class MFCCTargets(nn.Module):
    """Iteration-1 targets: k-means cluster of each frame's MFCC vector."""

    def __init__(self, kmeans: KMeans) -> None:
        super().__init__()
        self.features = MFCCFeatures()
        self.kmeans = kmeans

    @property
    def feature_dim(self) -> int:
        """Size of a frame feature: 13 coefficients + deltas + delta-deltas."""
        return 3 * self.features.mfcc.n_mfcc

    def frame_features(self, waveform: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        return self.features(waveform, lengths)

    @torch.no_grad()
    def forward(self, waveform: Tensor, lengths: Tensor | None, num_frames: int) -> Tensor:
        feats, _ = self.features(waveform, lengths)
        return _align(self.kmeans(feats), num_frames)


class LayerTargets(nn.Module):
    """Iteration-2+ targets: k-means cluster of a frozen teacher's layer-``layer`` features."""

    def __init__(self, teacher: Wav2Vec2Encoder, layer: int, kmeans: KMeans | None = None) -> None:
        super().__init__()
        if not 1 <= layer <= teacher.num_layers:
            raise ConfigError(f"target_layer must be between 1 and {teacher.num_layers} (the teacher's layers), got {layer}.")
        self.teacher, self.layer = teacher, layer
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.kmeans = kmeans

    @property
    def feature_dim(self) -> int:
        """Size of a frame feature: the teacher's width."""
        return self.teacher.embed_dim

    def train(self, mode: bool = True) -> "LayerTargets":
        super().train(mode)
        self.teacher.eval()  # the teacher is frozen: no dropout, ever
        return self

    @torch.no_grad()
    def frame_features(self, waveform: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        outs, frames = self.teacher.layer_outputs(waveform, lengths, num_layers=self.layer)
        return outs[self.layer - 1], frames

    @torch.no_grad()
    def forward(self, waveform: Tensor, lengths: Tensor | None, num_frames: int) -> Tensor:
        assert self.kmeans is not None
        feats, _ = self.frame_features(waveform, lengths)
        return _align(self.kmeans(feats), num_frames)


@torch.no_grad()
def collect_frames(targets: nn.Module, dataset: Dataset, collate: Any = None, max_frames: int = 100_000,
                   batch_size: int = 32, seed: int = 0) -> Tensor:
    """Valid frame features ``[N, D]`` of ``targets.frame_features`` over ``dataset``: at most
    ``max_frames``, read clip by clip in a seeded random order until that many are in hand.

    Reading stops there, so the cost (time and memory) is bounded by ``max_frames``, not by the
    size of the training set: on a large corpus only a seeded random sample of its clips is read.
    When every clip fits, the frames come back in dataset order (whatever the seed).
    """
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise DataError("The training data is empty: k-means for HuBERT targets has nothing to fit.")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    loader = DataLoader(Subset(dataset, order), batch_size=batch_size, shuffle=False,
                        collate_fn=collate or pad_collate)
    per_clip: dict[int, Tensor] = {}
    have = 0
    for b, batch in enumerate(loader):
        feats, frames = targets.frame_features(batch["waveform"], batch.get("lengths"))
        for i, count in enumerate(frames.tolist()):  # set-up, not the training step: reads are fine
            per_clip[order[b * batch_size + i]] = feats[i, :count].float()
            have += count
        if have >= max_frames:
            break
    if len(per_clip) == n and have <= max_frames:  # all of it: keep the dataset's order
        return torch.cat([per_clip[i] for i in range(n)])
    return torch.cat(list(per_clip.values()))[:max_frames]


def load_teacher(run_dir: str | Path) -> Wav2Vec2Encoder:
    """The trained encoder of a finished ``ssl run`` directory (its ``encoder.pt``)."""
    from ssl_core.registry import get_registry

    path = Path(run_dir).expanduser() / "encoder.pt"
    if not path.exists():
        raise DataError(f"targets_from: {path} does not exist. Point it at a finished `ssl run` directory "
                        "(one with encoder.pt), e.g. an earlier HuBERT iteration-1 run.")
    from ssl_core.runner import load_encoder_file

    state = load_encoder_file(path)  # tensors and plain values only: a crafted file cannot run code
    spec = get_registry().get("encoder", state["encoder"], modality="audio")
    teacher = spec.build(**state["encoder_kwargs"])
    if not isinstance(teacher, Wav2Vec2Encoder):
        raise ConfigError(f"targets_from: {path} holds a '{state['encoder']}' encoder; HuBERT needs a wav2vec2-style one.")
    teacher.load_state_dict(state["state_dict"])
    return teacher


def resolve_target_dataset(target_data: Mapping[str, Any]) -> tuple[Dataset, Any]:
    """Build the (train dataset, collate) a ``target_data`` description names, via the registry."""
    from ssl_core.registry import get_registry

    try:
        name = target_data["dataset"]
    except (KeyError, TypeError):
        raise ConfigError(f"target_data must be a mapping with a 'dataset' name, got {target_data!r}") from None
    spec = get_registry().get("dataset", name, modality="audio")
    dm = spec.build(path=target_data.get("path"), **dict(target_data.get("dataset_kwargs") or {}))
    return dm.train, dm.collate


class HuBERT(Objective):
    """HuBERT: masked prediction of offline k-means cluster ids (Hsu et al., 2021).

    Defaults follow the paper's BASE pre-training (p=8%, span 10, final dim 256, logit
    temperature 0.1, alpha=1, feature penalty 10, CNN gradient x0.1, k=100 MFCC clusters in
    iteration 1 and k=500 on layer features afterwards).
    """

    def __init__(
        self,
        encoder: Wav2Vec2Encoder,
        augmenter: Augmenter | None = None,
        target_data: Mapping[str, Any] | None = None,
        target_dataset: Dataset | None = None,
        targets_from: str | None = None,
        target_layer: int | None = None,
        num_clusters: int | None = None,
        kmeans_max_frames: int = 100_000,
        kmeans_iters: int = 30,
        mask_prob: float = 0.08,
        mask_length: int = 10,
        min_masks: int = 2,
        final_dim: int = 256,
        logit_temp: float = 0.1,
        unmasked_weight: float = 0.0,
        feature_penalty_weight: float = 10.0,
        feature_grad_mult: float = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(encoder, Wav2Vec2Encoder):
            raise TypeError(f"hubert needs a wav2vec2-style encoder (e.g. 'wav2vec2_small'), got {type(encoder).__name__}.")
        self.encoder, self.augmenter = encoder, augmenter
        self.mask_prob, self.mask_length, self.min_masks = mask_prob, mask_length, min_masks
        self.logit_temp, self.unmasked_weight = logit_temp, unmasked_weight
        self.feature_penalty_weight, self.feature_grad_mult = feature_penalty_weight, feature_grad_mult

        if target_dataset is not None:
            dataset, collate = target_dataset, pad_collate
        elif target_data is not None:
            dataset, collate = resolve_target_dataset(target_data)
        else:
            raise ConfigError(
                "HuBERT fits its k-means targets on the training audio but got none: run it through "
                "`ssl run` (the dataset passes it), or pass target_dataset=... (Python) or "
                "--set objective_kwargs.target_data='{dataset: audiofolder, path: DIR}'."
            )
        if targets_from:
            teacher = load_teacher(targets_from)
            if teacher.hop != encoder.hop:
                raise ConfigError(f"The teacher in {targets_from} has a frame hop of {teacher.hop} samples; "
                                  f"the encoder's is {encoder.hop}. Their frames must line up.")
            layer = target_layer or max(1, teacher.num_layers // 2)
            targets: nn.Module = LayerTargets(teacher, layer)
            k = num_clusters or 500
            self.target_source = f"layer {layer} of {targets_from}"
        else:
            if target_layer is not None:
                raise ConfigError("target_layer needs targets_from=RUN_DIR (the model whose layer gives the targets).")
            targets = MFCCTargets(KMeans(torch.zeros(1, 39)))
            k = num_clusters or 100
            self.target_source = "MFCC"
        # k-means is fitted once, by rank 0 (launched_rank, known before the process group
        # exists); the other ranks hold placeholders that rank 0's centroids overwrite at the first
        # training step (see _receive_targets), so every rank trains on the same targets and
        # none repeats the fit
        self._targets_pending = D.env_world_size() > 1
        if launched_rank() == 0:
            frames = collect_frames(targets, dataset, collate, kmeans_max_frames, seed=seed)
            targets.kmeans = KMeans.fit(frames, k, kmeans_iters, seed)
        else:
            targets.kmeans = KMeans(torch.zeros(k, targets.feature_dim))
        self.targets = targets
        self.num_clusters = k
        self.mask_embedding = nn.Parameter(torch.rand(encoder.embed_dim))
        self.final_proj = nn.Linear(encoder.embed_dim, final_dim)
        self.label_embeddings = nn.Parameter(torch.rand(k, final_dim))

    def logits(self, x: Tensor) -> Tensor:
        """Cosine similarity / temperature between projected frames ``[N, D]`` and every cluster embedding."""
        proj = self.final_proj(x).float()
        return F.normalize(proj, dim=-1) @ F.normalize(self.label_embeddings.float(), dim=-1).T / self.logit_temp

    def _receive_targets(self) -> None:
        """Copy rank 0's k-means (centroids, mean, std) to every rank: one broadcast, at the first
        step (a collective: every rank of a launch reaches it at the same point)."""
        if not D.is_distributed():
            if launched_rank() != 0:
                raise RuntimeError(
                    f"HuBERT on rank {launched_rank()} has no k-means targets: rank 0 fits them and sends them "
                    "when training starts, which needs the process group. Train through the Trainer (ssl run), "
                    "or build the objective after torch.distributed.init_process_group.")
        else:
            import torch.distributed as dist

            for buf in self.targets.kmeans.buffers():
                dist.broadcast(buf, src=0)
        self._targets_pending = False

    def training_step(self, batch: Batch, step: StepInfo) -> dict[str, Tensor]:
        if self._targets_pending:
            self._receive_targets()
        if self.augmenter is not None:
            batch = self.augmenter(batch, step.generator)
        wave, lengths = batch["waveform"], batch.get("lengths")
        enc = self.encoder
        feats, frames = enc.extract(wave, lengths)
        t = feats.shape[1]
        valid = ~padding_mask(frames, t)
        # targets are data, not model: computed in full precision even under the trainer's autocast
        # (bf16 changed some k-means assignments)
        with torch.autocast(device_type=wave.device.type, enabled=False):
            labels = self.targets(wave, lengths, t)
        # losses are means over every rank's frames: ranks mask different numbers of frames
        feature_pen = D.global_mean_share(feats.float().pow(2).masked_fill(~valid[..., None], 0.0).sum(),
                                          valid.sum() * feats.shape[-1])
        feats = scale_grad(feats, self.feature_grad_mult)
        _, x = enc.project(feats)
        mask = span_mask(frames, t, self.mask_prob, self.mask_length, self.min_masks, step.generator)
        x = torch.where(mask[..., None], self.mask_embedding.to(x.dtype), x)
        context = enc.contextualize(x, frames)
        # every frame is scored and the masks weight the sums: selecting the masked frames
        # (context[mask]) would give a data-dependent shape, which makes the host wait for the device
        logits = self.logits(context)  # [B, T, K]
        ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view_as(labels)
        loss_m = D.global_mean_share((ce * mask).sum(), mask.sum())
        loss = loss_m + self.feature_penalty_weight * feature_pen
        hits = (logits.argmax(-1) == labels) & mask
        out = {"loss_masked": loss_m.detach(), "feature_pen": feature_pen.detach(),
               "acc_masked": hits.sum() / mask.sum(),  # NaN when nothing is masked, as a mean of nothing
               "mask_frac": masked_fraction(mask, valid)}
        unmasked = valid & ~mask
        if self.unmasked_weight > 0:  # every rank takes this branch (collective inside), even with no frames
            loss_u = D.global_mean_share((ce * unmasked).sum(), unmasked.sum())
            loss = loss + self.unmasked_weight * loss_u
            out["loss_unmasked"] = loss_u.detach()
        out["loss"] = loss
        return out
