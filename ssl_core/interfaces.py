"""The four contracts every sslkit component follows: Encoder, Augmenter, Objective, Evaluator.

A plugin supplies classes that follow these contracts and registers factories for them through
the hooks in :mod:`ssl_core.hookspecs`. The core never imports a plugin's classes by name: it
only calls the factories the registry hands it, so a third-party package is a first-class citizen.

Batches are plain ``dict[str, Tensor]``. Each modality documents its keys (``"image"`` and
``"label"`` for vision, ``"input_ids"``/``"attention_mask"`` for text, ``"waveform"``/
``"lengths"`` for audio, ...). The trainer moves every tensor in the dict to the device.
"""

from __future__ import annotations

import abc
import contextlib
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from ssl_core.randomness import BatchShard

Batch = dict[str, Any]
"""A batch: a mapping from field name to tensor (or list, e.g. raw captions)."""


@dataclass
class StepInfo:
    """What an objective knows about where it is in training.

    ``progress`` runs from 0.0 at the first step to 1.0 at the last, so objectives can compute
    their own schedules (EMA momentum, teacher temperature) without knowing the run length.
    ``generator`` is seeded from the run seed and the step number only (the same on every rank),
    so augmentations drawn from it are identical in a resumed run and an uninterrupted one. Under
    the Trainer it is a :class:`~ssl_core.randomness.StepGenerator` that knows this process's
    rows of the global batch (:attr:`shard`); draw per-sample parameters with
    :func:`ssl_core.randomness.sample_rand` (or :func:`~ssl_core.randomness.sample_keys`) and
    every sample gets the same views whatever the number of processes.
    """

    step: int
    total_steps: int
    epoch: int
    generator: torch.Generator
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def shard(self) -> "BatchShard | None":
        """This process's rows of the global micro-batch (offset, size, total), or ``None`` when
        the generator carries none (a plain ``torch.Generator``: the batch is all there is)."""
        return getattr(self.generator, "shard", None)

    @property
    def progress(self) -> float:
        """Fraction of training done, in [0, 1]."""
        if self.total_steps <= 1:
            return 1.0
        return min(1.0, self.step / (self.total_steps - 1))


class Encoder(nn.Module, abc.ABC):
    """Maps a batch of one modality to representations.

    Subclasses set ``modality`` (e.g. ``"vision"``) and ``embed_dim`` (the size of the pooled
    representation) and implement :meth:`forward`, which objectives call on their views.
    :meth:`embed` is what evaluators call on a raw, un-augmented batch dict; the default
    implementation reads ``batch[self.input_key]`` and calls :meth:`forward`.
    """

    modality: str = ""
    input_key: str = "input"
    embed_dim: int = 0
    cpu_bf16: bool = False
    """Set to True when bf16 autocast was measured faster than fp32 for this encoder family on a
    CPU with native bf16 (avx512_bf16/AMX), at the same final accuracy within the run-to-run
    spread: ``precision: auto`` then picks bf16 on such CPUs. Never on CPUs that only emulate it."""
    channels_last: bool = False
    """Set to True when this encoder's convolutions were measured faster on channels-last (NHWC)
    data: ``train.memory_format: auto`` then stores the objective's 4-d weights channels-last, and
    the convolutions carry that layout through the network."""

    @abc.abstractmethod
    def forward(self, x: Any) -> Tensor:
        """Return pooled representations ``[B, embed_dim]``."""

    def forward_features(self, x: Any) -> Tensor:
        """Return token/patch/frame features ``[B, T, D]`` (only for methods that need them)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose token features")

    def embed(self, batch: Batch) -> Tensor:
        """Pooled representations of a raw evaluation batch (no augmentation)."""
        return self(batch[self.input_key])


class Augmenter(abc.ABC):
    """Turns one raw batch into the views or masks an objective needs.

    Runs on the training device on whole batches, with per-sample random parameters drawn from
    the ``generator`` it is given (never from global state), so a run is reproducible and a
    resumed run sees exactly the views an uninterrupted one would.

    Augmentation runs outside autocast and outside ``torch.compile``: a subclass's ``__call__`` is
    wrapped so that, inside the trainer's bf16/fp16 autocast, its convolutions (blur) and matrix
    products (colour) still run in the precision of the input (a transform of the training data,
    not part of the model), and so that ``train.compile`` compiles the model and its heads but runs
    the augmentation eagerly (its per-sample generator draws would otherwise break SimCLR's graph
    9 times a step; with the wrapper the model, heads and loss compile into one graph).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        call = cls.__dict__.get("__call__")
        if call is not None and not getattr(call, "__outside_autocast__", False):
            cls.__call__ = outside_autocast(call)  # type: ignore[method-assign]

    @abc.abstractmethod
    def __call__(self, batch: Batch, generator: torch.Generator) -> Any:
        """Return the views/masks for this batch."""


def outside_autocast(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``fn`` so it runs with autocast turned off (on CPU and CUDA) when it is on, and is
    never traced by ``torch.compile`` (it runs eagerly inside a compiled step)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        on = [d for d in ("cpu", "cuda") if torch.is_autocast_enabled(d)]
        if not on:
            return fn(*args, **kwargs)
        with contextlib.ExitStack() as stack:
            for d in on:
                stack.enter_context(torch.autocast(device_type=d, enabled=False))
            return fn(*args, **kwargs)

    wrapper = torch.compiler.disable(wrapper, recursive=True)
    wrapper.__outside_autocast__ = True  # type: ignore[attr-defined]
    return wrapper


class Objective(nn.Module, abc.ABC):
    """A self-supervised method: owns its heads, any teacher copy, and its loss.

    The trainer calls :meth:`training_step` once per micro-batch under autocast, back-propagates
    ``result["loss"]``, steps the optimiser, then calls :meth:`on_after_optimizer_step` (the place
    for EMA/momentum teacher updates). ``encoder`` is the network being trained; it is what gets
    evaluated and exported.
    """

    encoder: Encoder
    min_batch_size: int = 1
    """Fewest samples a micro-batch (gathered over all ranks) must hold. Methods that contrast each
    sample with the rest of its batch set 2 or more; the Trainer refuses smaller batches before
    training starts, instead of training on a loss with nothing to contrast."""

    @abc.abstractmethod
    def training_step(self, batch: Batch, step: StepInfo) -> dict[str, Tensor]:
        """Compute the loss on one batch. Must return ``{"loss": scalar, ...logged scalars}``."""

    def on_before_optimizer_step(self, step: StepInfo) -> None:
        """Called once per step after the gradients are accumulated and averaged over ranks, and
        before clipping and the optimiser step (not on a skipped non-finite step). The place to
        drop gradients of parameters frozen for a while (DINO's last layer: set ``p.grad = None``)
        while they still take part in the backward, as DDP requires."""

    def on_after_optimizer_step(self, step: StepInfo) -> None:
        """Called after every optimiser step (EMA updates, prototype normalisation, ...)."""

    def on_train_end(self, run_dir: "Path | None", data: "DataModule") -> None:
        """Called once after training (before evaluation); write method-specific artifacts
        (e.g. MAE reconstructions as a PNG) into ``run_dir`` when it is not ``None``."""

    def encoder_for_evaluation(self) -> "Encoder":
        """The encoder exported to ``encoder.pt`` and probed after training: ``self.encoder``
        unless a method says otherwise. DINO (Caron et al., 2021) evaluates its EMA teacher."""
        return self.encoder  # type: ignore[return-value]

    def teacher_modules(self) -> list[nn.Module]:
        """Modules updated only in :meth:`on_after_optimizer_step` (EMA teachers, momentum
        encoders). They must have ``requires_grad=False``; the conformance suite checks that they
        receive no gradient and stay out of the optimiser."""
        return []

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Optimiser parameter groups: no weight decay on biases and normalisation weights.

        Parameters of frozen modules (``requires_grad=False``, e.g. EMA teachers) are left out.
        Groups may carry ``"lr_scale"`` (multiplies the scheduled LR) and ``"apply_wd"``.
        """
        decay, no_decay = [], []
        for _, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim <= 1 else decay).append(p)
        groups = []
        if decay:
            groups.append({"params": decay, "weight_decay": weight_decay, "apply_wd": True})
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0, "apply_wd": False})
        return groups


@dataclass
class DataModule:
    """A modality's data, as the trainer and evaluators need it.

    ``train`` yields sample dicts for self-supervised training (labels, if any, are ignored).
    ``eval_train``/``eval_test`` are labelled, un-augmented splits for probes; ``None`` when the
    data has no labels. ``collate`` turns a list of samples into a batch dict (``None`` means
    the default stacking collate).
    """

    train: torch.utils.data.Dataset
    eval_train: torch.utils.data.Dataset | None = None
    eval_test: torch.utils.data.Dataset | None = None
    collate: Callable[[list[Any]], Batch] | None = None
    label_key: str = "label"
    num_classes: int | None = None
    class_names: list[str] | None = None
    description: str = ""
    extras: dict[str, Any] = field(default_factory=dict)


class Evaluator(abc.ABC):
    """Scores a trained encoder: ``evaluate(encoder, data) -> {metric: value}``.

    Evaluators must not change the encoder's weights; they are called with the encoder in eval
    mode under ``torch.no_grad()`` for feature extraction.
    """

    name: str = ""
    needs_labels: bool = True
    """False for evaluators that work on unlabelled data (health, retrieval on held-out pairs)."""
    required_keys: tuple[str, ...] = ()
    """Sample fields the evaluator reads itself, besides what ``encoder.embed`` reads (e.g.
    ``("image",)`` to draw pictures). The runner checks them against the data before training,
    as it checks the evaluator's registered modality, so a mismatch fails before any step."""
    out_dir: "Path | None" = None
    """Set by the runner to the run directory before :meth:`evaluate`; evaluators that write
    pictures (nearest-neighbour grids, ...) put them there. ``None`` means write nothing."""

    @abc.abstractmethod
    def evaluate(self, encoder: Encoder, data: DataModule) -> Mapping[str, float]:
        """Return metric name -> value."""
