"""Conformance checks a plugin author runs on their own components.

Each check builds the component exactly as ``ssl run`` would (from its registry recipe, with
your small overrides) and verifies one contract. A failure raises :class:`ContractError` whose
message starts with the contract's name, e.g. ``contract 'frozen-teacher' failed for objective
'byol': ...``.

Use it from pytest in your own package::

    import pytest
    from ssl_core.testing import OBJECTIVE_CONTRACTS, check_objective_contract

    TINY = {"train": {"batch_size": 8}, "encoder_kwargs": {"widths": [8, 8, 8, 8]}}

    @pytest.mark.parametrize("contract", OBJECTIVE_CONTRACTS)
    def test_vicreg_conforms(contract):
        check_objective_contract("vicreg", contract, overrides=TINY)

or all at once with :func:`check_objective`. Encoders, augmenters, datasets and evaluators have
the same pair (``check_encoder``/``check_encoder_contract`` and so on, contracts listed in
``ENCODER_CONTRACTS`` etc.). :func:`check_distributed_equivalence` runs the objective on two gloo
processes and on one, and compares losses, gradients and state.
"""

from __future__ import annotations

import copy
import functools
import io
import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch

from ssl_core.config import merge
from ssl_core.data import default_collate
from ssl_core.errors import SSLKitError
from ssl_core.interfaces import DataModule, Encoder, Objective, StepInfo
from ssl_core.registry import Registry, get_registry
from ssl_core.runner import _accepted, build_data, build_encoder, build_objective, resolve_config

if TYPE_CHECKING:
    from ssl_core.equivalence import EquivalenceResult

OBJECTIVE_CONTRACTS = (
    "registry-metadata",
    "forward-backward",
    "finite-loss",
    "gradients-reach-encoder",
    "frozen-teacher",
    "state-dict-round-trip",
    "deterministic",
    "encoder-embed",
)


class ContractError(SSLKitError, AssertionError):
    """A component broke one of sslkit's contracts."""


@dataclass
class _Built:
    objective: Objective
    data: DataModule
    batch: dict[str, Any]


def _fail(contract: str, name: str, detail: str) -> ContractError:
    return ContractError(f"contract '{contract}' failed for objective '{name}': {detail}")


class ObjectiveHarness:
    """Builds one objective from its recipe (plus overrides) and a small batch of its data."""

    def __init__(self, name: str, overrides: Mapping[str, Any] | None = None, batch_size: int | None = None,
                 registry: Registry | None = None, data: DataModule | None = None) -> None:
        self.name = name
        self.registry = registry or get_registry()
        self.overrides = merge({"train": {"device": "cpu", "precision": "fp32"}}, dict(overrides or {}))
        self.cfg = resolve_config(name, overrides=self.overrides, registry=self.registry)
        self.batch_size = batch_size or min(self.cfg.train.batch_size, 8)
        self._data = data

    def data(self) -> DataModule:
        if self._data is None:
            self._data = build_data(self.cfg, self.registry)
        return self._data

    def build(self, seed: int = 0) -> _Built:
        """A fresh objective (seeded) and the first ``batch_size`` training samples as a batch."""
        data = self.data()
        cfg = copy.deepcopy(self.cfg)
        torch.manual_seed(seed)
        encoder = build_encoder(cfg, data, self.registry)
        objective = build_objective(cfg, encoder, data, self.registry)
        samples = [data.train[i] for i in range(self.batch_size)]
        batch = (data.collate or default_collate)(samples)
        return _Built(objective, data, batch)

    def step_info(self, step: int = 0, seed: int = 0) -> StepInfo:
        return StepInfo(step=step, total_steps=100, epoch=0, generator=torch.Generator().manual_seed(seed))

    def loss(self, built: _Built, seed: int = 0, step: int = 0) -> torch.Tensor:
        torch.manual_seed(seed)
        out = built.objective.training_step(built.batch, self.step_info(step, seed))
        if not isinstance(out, Mapping) or "loss" not in out:
            raise _fail("forward-backward", self.name, f"training_step must return a dict with 'loss', got {type(out).__name__}")
        return out["loss"]


def check_objective_contract(
    name: str, contract: str, overrides: Mapping[str, Any] | None = None, batch_size: int | None = None,
    registry: Registry | None = None, harness: ObjectiveHarness | None = None,
) -> None:
    """Verify one contract (see OBJECTIVE_CONTRACTS) for the registered objective ``name``."""
    h = harness or ObjectiveHarness(name, overrides, batch_size, registry)
    checks: dict[str, Callable[[ObjectiveHarness], None]] = {
        "registry-metadata": _check_metadata,
        "forward-backward": _check_forward_backward,
        "finite-loss": _check_finite,
        "gradients-reach-encoder": _check_grad_reaches_encoder,
        "frozen-teacher": _check_frozen,
        "state-dict-round-trip": _check_state_dict,
        "deterministic": _check_deterministic,
        "encoder-embed": _check_embed,
    }
    if contract not in checks:
        raise ValueError(f"Unknown contract '{contract}'; choose from {', '.join(OBJECTIVE_CONTRACTS)}")
    checks[contract](h)


def check_objective(name: str, overrides: Mapping[str, Any] | None = None, batch_size: int | None = None,
                    registry: Registry | None = None) -> None:
    """Verify every contract for objective ``name``; raises on the first broken one."""
    h = ObjectiveHarness(name, overrides, batch_size, registry)
    for contract in OBJECTIVE_CONTRACTS:
        check_objective_contract(name, contract, harness=h)


# ------------------------------------------------------------------------------------ checks
def _check_metadata(h: ObjectiveHarness) -> None:
    spec = h.registry.get("objective", h.name)
    if not spec.summary:
        raise _fail("registry-metadata", h.name, "no summary: pass summary='...' to register()")
    if not spec.modality or spec.modality == "any":
        raise _fail("registry-metadata", h.name, "objectives must name their modality")
    for key, kind in (("encoder", "encoder"), ("dataset", "dataset"), ("augmenter", "augmenter")):
        value = getattr(h.cfg, key)
        if key != "augmenter" and not value:
            raise _fail("registry-metadata", h.name, f"the recipe names no {kind}: add recipe={{'{key}': ...}}")
        if value:
            try:
                h.registry.get(kind, value)
            except SSLKitError as exc:
                raise _fail("registry-metadata", h.name, f"recipe {key} '{value}' is not registered: {exc}") from exc
    built = h.build()
    enc = built.objective.encoder
    if not isinstance(enc, Encoder):
        raise _fail("registry-metadata", h.name, f"objective.encoder must be an ssl_core Encoder, got {type(enc).__name__}")
    if enc.modality != spec.modality:
        raise _fail("registry-metadata", h.name, f"encoder modality '{enc.modality}' != objective modality '{spec.modality}'")
    if not enc.embed_dim or enc.embed_dim <= 0:
        raise _fail("registry-metadata", h.name, "encoder.embed_dim must be a positive int")


def _check_forward_backward(h: ObjectiveHarness) -> None:
    built = h.build()
    built.objective.train()
    loss = h.loss(built)
    if loss.ndim != 0:
        raise _fail("forward-backward", h.name, f"loss must be a scalar, got shape {tuple(loss.shape)}")
    if not loss.requires_grad:
        raise _fail("forward-backward", h.name, "loss does not require grad: nothing would be trained")
    loss.backward()
    if not any(p.grad is not None for p in built.objective.parameters()):
        raise _fail("forward-backward", h.name, "backward produced no gradient on any parameter")


def _check_finite(h: ObjectiveHarness) -> None:
    built = h.build()
    for step in (0, 50, 99):  # schedules (temperatures, momentum) move with the step
        value = float(h.loss(built, step=step).detach())
        if not math.isfinite(value):
            raise _fail("finite-loss", h.name, f"loss is {value} at step {step} of 100 on a built-in batch")


def _check_grad_reaches_encoder(h: ObjectiveHarness) -> None:
    built = h.build()
    h.loss(built).backward()
    enc_params = [p for p in built.objective.encoder.parameters() if p.requires_grad]
    if not enc_params:
        raise _fail("gradients-reach-encoder", h.name, "the encoder has no trainable parameters")
    with_grad = [p for p in enc_params if p.grad is not None and p.grad.abs().sum() > 0]
    if not with_grad:
        raise _fail("gradients-reach-encoder", h.name, "no encoder parameter received a non-zero gradient")


def _check_frozen(h: ObjectiveHarness) -> None:
    built = h.build()
    obj = built.objective
    teacher_ids = {id(p) for m in obj.teacher_modules() for p in m.parameters()}
    for n, p in obj.named_parameters():
        if id(p) in teacher_ids and p.requires_grad:
            raise _fail("frozen-teacher", h.name, f"teacher parameter '{n}' has requires_grad=True: "
                        "call .requires_grad_(False) on teacher copies")
    frozen = {n: p for n, p in obj.named_parameters() if not p.requires_grad or id(p) in teacher_ids}
    before = {n: p.detach().clone() for n, p in frozen.items()}
    h.loss(built).backward()
    for n, p in frozen.items():
        if p.grad is not None:
            raise _fail("frozen-teacher", h.name, f"frozen parameter '{n}' received a gradient")
    groups = obj.param_groups(0.05)
    ids = {id(p) for g in groups for p in g["params"]}
    for n, p in frozen.items():
        if id(p) in ids:
            raise _fail("frozen-teacher", h.name, f"frozen parameter '{n}' is in the optimiser's param groups")
    for n, p in frozen.items():
        if not torch.equal(p.detach(), before[n]):
            raise _fail("frozen-teacher", h.name, f"frozen parameter '{n}' changed during forward/backward")


def _check_state_dict(h: ObjectiveHarness) -> None:
    a = h.build(seed=0)
    b = h.build(seed=1)
    buf = io.BytesIO()
    torch.save(a.objective.state_dict(), buf)
    buf.seek(0)
    try:
        b.objective.load_state_dict(torch.load(buf, weights_only=True))
    except Exception as exc:
        raise _fail("state-dict-round-trip", h.name, f"the state dict does not round-trip through torch.save and "
                    f"torch.load(weights_only=True) (keep only tensors and plain values in it): {exc}") from exc
    a.objective.eval()
    b.objective.eval()
    with torch.no_grad():
        la, lb = float(h.loss(a, seed=3)), float(h.loss(b, seed=3))
    if not math.isclose(la, lb, rel_tol=1e-5, abs_tol=1e-6):
        raise _fail("state-dict-round-trip", h.name,
                    f"loss after reload {lb} != before {la}: some state lives outside state_dict (register buffers)")


def _check_deterministic(h: ObjectiveHarness) -> None:
    la = float(h.loss(h.build(seed=7), seed=11).detach())
    lb = float(h.loss(h.build(seed=7), seed=11).detach())
    if la != lb:
        raise _fail("deterministic", h.name,
                    f"two builds with the same seed gave losses {la} and {lb}: draw randomness only from "
                    "step.generator or the (per-step seeded) global RNG")


def _check_embed(h: ObjectiveHarness) -> None:
    built = h.build()
    enc = built.objective.encoder
    enc.eval()
    with torch.no_grad():
        z = enc.embed(built.batch)
    if z.shape != (h.batch_size, enc.embed_dim):
        raise _fail("encoder-embed", h.name, f"encoder.embed returned {tuple(z.shape)}, expected ({h.batch_size}, {enc.embed_dim})")
    if not torch.isfinite(z).all():
        raise _fail("encoder-embed", h.name, "encoder.embed returned non-finite values")


# ==================================================================================================
# Conformance of the other component kinds: encoders, augmenters, datasets, evaluators.
#
# Each check builds the component as `ssl run` would, inside a recipe (an objective whose recipe
# uses it, or one you name) so it sees real data of its modality. A failure raises ContractError
# "contract 'NAME' failed for <kind> '<name>': ...".
# ==================================================================================================

ENCODER_CONTRACTS = (
    "encoder-metadata",
    "encoder-embed",
    "encoder-gradients",
    "encoder-registered-state",
    "encoder-autocast",
    "encoder-state-dict-round-trip",
)
AUGMENTER_CONTRACTS = (
    "augmenter-deterministic",
    "augmenter-leaves-batch",
    "augmenter-generator-device",
    "augmenter-per-sample",
)
DATASET_CONTRACTS = (
    "dataset-batches",
    "dataset-labelled-splits",
    "dataset-deterministic",
)
EVALUATOR_CONTRACTS = (
    "evaluator-metrics",
    "evaluator-weights-unchanged",
    "evaluator-needs-labels",
)


def _kind_fail(contract: str, kind: str, name: str, detail: str) -> ContractError:
    return ContractError(f"contract '{contract}' failed for {kind} '{name}': {detail}")


def recipe_using(kind: str, name: str, registry: Registry | None = None) -> str:
    """The first objective (by name) whose recipe uses component ``name`` of ``kind``; raises a
    ContractError asking for ``objective=`` when none does."""
    registry = registry or get_registry()
    field_name = {"encoder": "encoder", "augmenter": "augmenter", "dataset": "dataset", "evaluator": "evaluators"}[kind]
    for spec in registry.list("objective"):
        used = spec.recipe.get(field_name)
        if used == name or (isinstance(used, (list, tuple)) and name in used):
            return spec.name
    raise ContractError(f"No installed objective's recipe uses {kind} '{name}': pass objective='...' (an objective "
                        f"of its modality) so the check can build it with real data.")


class ComponentHarness(ObjectiveHarness):
    """Builds one encoder or augmenter inside an objective's recipe (the component replaces the
    recipe's own), plus a small batch of that recipe's data."""

    def __init__(self, kind: str, name: str, objective: str | None = None, overrides: Mapping[str, Any] | None = None,
                 batch_size: int | None = None, registry: Registry | None = None) -> None:
        registry = registry or get_registry()
        self.kind, self.component = kind, name
        objective = objective or recipe_using(kind, name, registry)
        super().__init__(objective, merge({kind: name}, dict(overrides or {})), batch_size, registry)
        self.spec = self.registry.get(kind, name, modality=self.cfg.modality)

    def fail(self, contract: str, detail: str) -> ContractError:
        return _kind_fail(contract, self.kind, self.component, detail)

    def encoder(self, seed: int = 0) -> Encoder:
        torch.manual_seed(seed)
        return build_encoder(copy.deepcopy(self.cfg), self.data(), self.registry)

    def augmenter(self) -> Any:
        hints = _accepted(self.spec.factory, self.data().extras.get("augmenter_kwargs", {}))
        return self.spec.build(**{**hints, **self.cfg.augmenter_kwargs})

    def batch(self) -> dict[str, Any]:
        data = self.data()
        return (data.collate or default_collate)([data.train[i] for i in range(self.batch_size)])


def check_encoder_contract(name: str, contract: str, objective: str | None = None,
                           overrides: Mapping[str, Any] | None = None, batch_size: int | None = None,
                           registry: Registry | None = None, harness: ComponentHarness | None = None) -> None:
    """Verify one contract (see ENCODER_CONTRACTS) for the registered encoder ``name``, built in
    ``objective``'s recipe (default: the first recipe that uses it) with ``overrides``."""
    h = harness or ComponentHarness("encoder", name, objective, overrides, batch_size, registry)
    checks: dict[str, Callable[[ComponentHarness], None]] = {
        "encoder-metadata": _check_encoder_metadata,
        "encoder-embed": _check_encoder_embed,
        "encoder-gradients": _check_encoder_gradients,
        "encoder-registered-state": _check_encoder_registered_state,
        "encoder-autocast": _check_encoder_autocast,
        "encoder-state-dict-round-trip": _check_encoder_state_dict,
    }
    _run_check(checks, contract, ENCODER_CONTRACTS, h)


def check_encoder(name: str, objective: str | None = None, overrides: Mapping[str, Any] | None = None,
                  batch_size: int | None = None, registry: Registry | None = None) -> None:
    """Verify every encoder contract; raises on the first broken one."""
    h = ComponentHarness("encoder", name, objective, overrides, batch_size, registry)
    for contract in ENCODER_CONTRACTS:
        check_encoder_contract(name, contract, harness=h)


def check_augmenter_contract(name: str, contract: str, objective: str | None = None,
                             overrides: Mapping[str, Any] | None = None, batch_size: int | None = None,
                             registry: Registry | None = None, harness: ComponentHarness | None = None) -> None:
    """Verify one contract (see AUGMENTER_CONTRACTS) for the registered augmenter ``name``."""
    h = harness or ComponentHarness("augmenter", name, objective, overrides, batch_size, registry)
    checks: dict[str, Callable[[ComponentHarness], None]] = {
        "augmenter-deterministic": _check_augmenter_deterministic,
        "augmenter-leaves-batch": _check_augmenter_leaves_batch,
        "augmenter-generator-device": _check_augmenter_generator_device,
        "augmenter-per-sample": _check_augmenter_per_sample,
    }
    _run_check(checks, contract, AUGMENTER_CONTRACTS, h)


def check_augmenter(name: str, objective: str | None = None, overrides: Mapping[str, Any] | None = None,
                    batch_size: int | None = None, registry: Registry | None = None) -> None:
    """Verify every augmenter contract; raises on the first broken one."""
    h = ComponentHarness("augmenter", name, objective, overrides, batch_size, registry)
    for contract in AUGMENTER_CONTRACTS:
        check_augmenter_contract(name, contract, harness=h)


def _run_check(checks: Mapping[str, Callable[[Any], None]], contract: str, known: tuple[str, ...], h: Any) -> None:
    if contract not in checks:
        raise ValueError(f"Unknown contract '{contract}'; choose from {', '.join(known)}")
    checks[contract](h)


# ------------------------------------------------------------------------------------ encoder checks
def _embed(h: ComponentHarness, enc: Encoder, batch: Mapping[str, Any]) -> torch.Tensor:
    try:
        return enc.embed(dict(batch))
    except Exception as exc:
        raise h.fail("encoder-embed", f"embed(batch) raised {type(exc).__name__}: {exc} (batch fields "
                     f"{sorted(batch)}; embed reads batch['{enc.input_key}'] unless overridden)") from exc


def _check_encoder_metadata(h: ComponentHarness) -> None:
    enc = h.encoder()
    if not isinstance(enc, Encoder):
        raise h.fail("encoder-metadata", f"the factory must return an ssl_core Encoder, got {type(enc).__name__}")
    if enc.modality != h.spec.modality:
        raise h.fail("encoder-metadata", f"encoder.modality is '{enc.modality}' but it is registered as "
                     f"'{h.spec.modality}': set the class attribute modality = '{h.spec.modality}'")
    if not isinstance(enc.embed_dim, int) or enc.embed_dim <= 0:
        raise h.fail("encoder-metadata", f"encoder.embed_dim must be a positive int, got {enc.embed_dim!r}")
    if not h.spec.summary:
        raise h.fail("encoder-metadata", "no summary: pass summary='...' to register()")


def _check_encoder_embed(h: ComponentHarness) -> None:
    enc, batch = h.encoder(), h.batch()
    enc.eval()
    with torch.no_grad():
        z, again = _embed(h, enc, batch), _embed(h, enc, batch)
    if tuple(z.shape) != (h.batch_size, enc.embed_dim):
        raise h.fail("encoder-embed", f"embed returned shape {tuple(z.shape)}, expected ({h.batch_size}, {enc.embed_dim})")
    if not z.is_floating_point() or not torch.isfinite(z).all():
        raise h.fail("encoder-embed", f"embed must return finite floating-point values, got dtype {z.dtype}")
    if not torch.equal(z, again):
        raise h.fail("encoder-embed", "two eval-mode embeddings of the same batch differ: evaluation must be "
                     "deterministic (no dropout or sampling in eval mode)")


def _check_encoder_gradients(h: ComponentHarness) -> None:
    enc = h.encoder()
    enc.train()
    z = _embed(h, enc, h.batch())
    if not z.requires_grad:
        raise h.fail("encoder-gradients", "embed's output does not require grad in train mode: no objective could "
                     "train this encoder (is forward wrapped in torch.no_grad or .detach()?)")
    z.float().pow(2).mean().backward()
    trainable = [(n, p) for n, p in enc.named_parameters() if p.requires_grad]
    if not trainable:
        raise h.fail("encoder-gradients", "the encoder has no trainable parameters")
    if not any(p.grad is not None and p.grad.abs().sum() > 0 for _, p in trainable):
        raise h.fail("encoder-gradients", "no parameter received a non-zero gradient from embed's output")


def _check_encoder_registered_state(h: ComponentHarness) -> None:
    enc = h.encoder()
    for mod_name, module in enc.named_modules():
        for attr, value in vars(module).items():
            if isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter):
                where = f"{mod_name}.{attr}" if mod_name else attr
                raise h.fail("encoder-registered-state", f"tensor attribute '{where}' is neither a parameter nor a "
                             "buffer: .to(device), .to(dtype) and state_dict leave it behind (on a GPU it stays on "
                             "the CPU). Use self.register_buffer(...)")
    moved = copy.deepcopy(enc).to(torch.float64)
    left = [n for n, t in [*moved.named_parameters(), *moved.named_buffers()] if t.is_floating_point()
            and t.dtype != torch.float64]
    if left:
        raise h.fail("encoder-registered-state", f".to(torch.float64) left {left[:3]} in another dtype")


def _check_encoder_autocast(h: ComponentHarness) -> None:
    enc, batch = h.encoder(), h.batch()
    enc.eval()
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            z = enc.embed(dict(batch))
    except Exception as exc:
        raise h.fail("encoder-autocast", f"embed under bf16 autocast (train.precision=bf16) raised "
                     f"{type(exc).__name__}: {exc}") from exc
    if tuple(z.shape) != (h.batch_size, enc.embed_dim) or not torch.isfinite(z.float()).all():
        raise h.fail("encoder-autocast", f"embed under bf16 autocast returned shape {tuple(z.shape)} or non-finite "
                     "values")


def _check_encoder_state_dict(h: ComponentHarness) -> None:
    a, b = h.encoder(seed=0), h.encoder(seed=1)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    try:
        b.load_state_dict(torch.load(buf, weights_only=True))
    except Exception as exc:
        raise h.fail("encoder-state-dict-round-trip", f"load_state_dict failed: {exc}") from exc
    a.eval()
    b.eval()
    batch = h.batch()
    with torch.no_grad():
        za, zb = _embed(h, a, batch), _embed(h, b, batch)
    if not torch.allclose(za, zb, rtol=1e-5, atol=1e-6):
        raise h.fail("encoder-state-dict-round-trip", "an encoder loaded from another's state_dict embeds "
                     "differently: some state lives outside state_dict (register buffers)")


# ------------------------------------------------------------------------------------ augmenter checks
def _same(a: Any, b: Any) -> bool:
    """Structural equality of views: tensors compared exactly, containers element-wise."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and bool(torch.equal(a, b)))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _check_augmenter_deterministic(h: ComponentHarness) -> None:
    aug, batch = h.augmenter(), h.batch()
    torch.manual_seed(1)
    first = aug(dict(batch), torch.Generator().manual_seed(5))
    torch.manual_seed(2)  # a different global RNG state must not matter
    second = aug(dict(batch), torch.Generator().manual_seed(5))
    if not _same(first, second):
        raise h.fail("augmenter-deterministic", "the same generator seed gave different views when the global RNG "
                     "differed: draw every random number from the generator you are given")


def _check_augmenter_leaves_batch(h: ComponentHarness) -> None:
    aug, batch = h.augmenter(), h.batch()
    before = copy.deepcopy(batch)
    aug(batch, torch.Generator().manual_seed(0))
    if not _same(batch, before):
        raise h.fail("augmenter-leaves-batch", "the augmenter changed the batch it was given in place; build new "
                     "tensors (the same batch is also used for logging and other objectives)")


class _DrawAudit(torch.overrides.TorchFunctionMode):
    """Records random draws that would fail or break determinism on a non-CPU training device.

    The trainer's ``StepInfo.generator`` lives on the training device. On a GPU, a factory draw
    such as ``torch.rand(shape, generator=g)`` without ``device=`` makes a CPU tensor from a CUDA
    generator and raises, although it passes on CPU. This mode treats the generator as if it were
    on another device: such draws, and draws that take no generator at all, are recorded.
    """

    _FACTORIES = {torch.rand, torch.randn, torch.randint, torch.randperm}
    _RANDOM = _FACTORIES | {
        torch.bernoulli, torch.multinomial, torch.normal, torch.poisson, torch.rand_like, torch.randn_like,
        torch.randint_like, torch.Tensor.uniform_, torch.Tensor.normal_, torch.Tensor.bernoulli_,
        torch.Tensor.random_, torch.Tensor.exponential_, torch.Tensor.geometric_, torch.Tensor.cauchy_,
        torch.Tensor.log_normal_, torch.Tensor.multinomial, torch.Tensor.bernoulli,
        torch.nn.functional.dropout,
    }

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device
        self.without_device: list[str] = []
        self.without_generator: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func in self._RANDOM:
            owner = "Tensor" if getattr(func, "__objclass__", None) is not None else getattr(func, "__module__", "torch")
            name = f"{owner}.{getattr(func, '__name__', func)}"
            factory = func in self._FACTORIES or (func is torch.normal and not any(
                isinstance(a, torch.Tensor) for a in [*args, *kwargs.values()]))
            if kwargs.get("generator") is None:
                self.without_generator.append(name)
            elif factory and (kwargs.get("device") is None or torch.device(kwargs["device"]) != self.device):
                self.without_device.append(name)
        return func(*args, **kwargs)


def _check_augmenter_generator_device(h: ComponentHarness) -> None:
    aug, batch = h.augmenter(), h.batch()
    device = next((v.device for v in batch.values() if isinstance(v, torch.Tensor)), torch.device("cpu"))
    audit = _DrawAudit(device)
    with audit:
        aug(dict(batch), torch.Generator().manual_seed(0))
    if audit.without_device:
        raise h.fail("augmenter-generator-device", f"{sorted(set(audit.without_device))} drew from the generator "
                     "without device=: the generator lives on the training device, so on a GPU this raises. Pass "
                     "device=<the batch tensor>.device")
    if audit.without_generator:
        raise h.fail("augmenter-generator-device", f"{sorted(set(audit.without_generator))} drew from the global RNG: "
                     "pass generator=<the generator argument> so views are reproducible and resume exactly")


def _rows(value: Any, offset: int, size: int, total: int) -> Any:
    """Rows ``offset:offset+size`` of each sample-major part of ``value`` (a batch or views).

    A tensor whose first dimension is ``k * total`` is read as ``k`` copies of the batch
    (``x.repeat(k, ...)``, multi-crop) and keeps those rows of each copy; a list of ``total``
    plain values (captions) is sliced; containers of tensors are walked; anything else is kept.
    """
    if isinstance(value, torch.Tensor):
        if value.dim() == 0 or value.shape[0] % total:
            return value
        k = value.shape[0] // total
        return value.reshape(k, total, *value.shape[1:])[:, offset:offset + size].reshape(k * size, *value.shape[1:])
    if isinstance(value, Mapping):
        return {key: _rows(v, offset, size, total) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) == total and not any(isinstance(v, (torch.Tensor, Mapping, list, tuple)) for v in value):
            return type(value)(value[offset:offset + size])
        return type(value)(_rows(v, offset, size, total) for v in value)
    return value


def _close(a: Any, b: Any) -> bool:
    """Like :func:`_same`, but floating-point tensors may differ by rounding (a smaller batch can
    take another kernel path)."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.is_floating_point():
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.allclose(a, b, rtol=1e-5, atol=1e-6))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return _same(a, b)


def _check_augmenter_per_sample(h: ComponentHarness) -> None:
    """The views of a sample must not depend on which process holds it: augment the whole batch
    on one process, then each half as one of two processes would (a StepGenerator that knows its
    rows), and compare each half's views with those rows of the whole batch's."""
    from ssl_core.randomness import BatchShard, StepGenerator

    aug, batch, total = h.augmenter(), h.batch(), h.batch_size
    if total < 2:
        raise h.fail("augmenter-per-sample", "needs a batch of at least 2 samples (batch_size overrides)")

    def views(offset: int, size: int) -> Any:
        generator = StepGenerator("cpu", BatchShard(offset, size, total))
        generator.manual_seed(11)
        return aug(_rows(batch, offset, size, total), generator)

    whole, half = views(0, total), total // 2
    for offset, size in ((0, half), (half, total - half)):
        if not _close(views(offset, size), _rows(whole, offset, size, total)):
            raise h.fail("augmenter-per-sample", f"samples {offset}..{offset + size - 1} got other views when a second "
                         "process held them than on one process: under DDP each rank would repeat rank 0's draws. "
                         "Draw with ssl_core.randomness.sample_rand/sample_randn (per-sample values) or sample_keys + "
                         "keyed_uniform (a data-dependent count per sample)")


# ------------------------------------------------------------------------------------ dataset checks
def check_dataset_contract(name: str, contract: str, path: str | None = None,
                           dataset_kwargs: Mapping[str, Any] | None = None, registry: Registry | None = None,
                           built: DataModule | None = None) -> None:
    """Verify one contract (see DATASET_CONTRACTS) for the registered dataset ``name``, built as
    ``factory(path=path, **dataset_kwargs)``; pass ``built`` to reuse an instance."""
    registry = registry or get_registry()
    spec = registry.get("dataset", name)
    kwargs = dict(dataset_kwargs or {})

    def build() -> DataModule:
        return spec.build(path=path, **kwargs)

    checks: dict[str, Callable[[], None]] = {
        "dataset-batches": lambda: _check_dataset_batches(name, built or build()),
        "dataset-labelled-splits": lambda: _check_dataset_labels(name, built or build()),
        "dataset-deterministic": lambda: _check_dataset_deterministic(name, built or build(), build),
    }
    if contract not in checks:
        raise ValueError(f"Unknown contract '{contract}'; choose from {', '.join(DATASET_CONTRACTS)}")
    checks[contract]()


def check_dataset(name: str, path: str | None = None, dataset_kwargs: Mapping[str, Any] | None = None,
                  registry: Registry | None = None) -> None:
    """Verify every dataset contract; raises on the first broken one."""
    registry = registry or get_registry()
    built = registry.get("dataset", name).build(path=path, **dict(dataset_kwargs or {}))
    for contract in DATASET_CONTRACTS:
        check_dataset_contract(name, contract, path, dataset_kwargs, registry, built)


def _sized(ds: Any) -> int | None:
    try:
        return len(ds)
    except TypeError:
        return None


def _first_samples(ds: Any, n: int) -> list[Any]:
    size = _sized(ds)
    if size is None:  # a stream: take the first n
        return list(itertools.islice(iter(ds), n))
    return [ds[i] for i in range(min(n, size))]


def _check_dataset_batches(name: str, data: DataModule) -> None:
    fail = functools.partial(_kind_fail, "dataset-batches", "dataset", name)
    if not isinstance(data, DataModule):
        raise fail(f"the factory must return an ssl_core DataModule, got {type(data).__name__}")
    if _sized(data.train) == 0:
        raise fail("the training split is empty")
    samples = _first_samples(data.train, 4)
    if not samples or not all(isinstance(s, Mapping) for s in samples):
        raise fail(f"training samples must be dicts of fields, got {type(samples[0]).__name__ if samples else 'none'}")
    batch = (data.collate or default_collate)(samples)
    if not isinstance(batch, Mapping) or not any(isinstance(v, torch.Tensor) for v in batch.values()):
        raise fail("collate(samples) must return a dict holding at least one tensor")


def _labels_of(ds: Any, key: str, limit: int = 2000) -> list[int]:
    size = _sized(ds) or 0
    idx = sorted({int(i) for i in torch.linspace(0, size - 1, min(size, limit)).round().tolist()}) if size else []
    out = []
    for i in idx:
        value = ds[i].get(key) if isinstance(ds[i], Mapping) else None
        out.append(value if value is None else int(torch.as_tensor(value)))
    return out  # type: ignore[return-value]


def _check_dataset_labels(name: str, data: DataModule) -> None:
    fail = functools.partial(_kind_fail, "dataset-labelled-splits", "dataset", name)
    if (data.eval_train is None) != (data.eval_test is None):
        raise fail("set both eval_train and eval_test (labelled probe splits) or neither")
    if data.eval_train is None:
        return  # unlabelled data: probes are skipped, nothing more to check
    if not _sized(data.eval_train) or not _sized(data.eval_test):
        raise fail("eval_train and eval_test must be non-empty when given")
    if data.num_classes is None or data.num_classes < 2:
        raise fail(f"labelled splits need num_classes >= 2, got {data.num_classes}")
    if data.class_names is not None and len(data.class_names) != data.num_classes:
        raise fail(f"{len(data.class_names)} class_names for num_classes={data.num_classes}")
    train, test = _labels_of(data.eval_train, data.label_key), _labels_of(data.eval_test, data.label_key)
    if any(v is None for v in train + test):
        raise fail(f"some eval samples have no '{data.label_key}' field")
    bad = sorted({v for v in train + test if not 0 <= v < data.num_classes})
    if bad:
        raise fail(f"labels {bad[:5]} are outside 0..{data.num_classes - 1}")
    unseen = sorted(set(test) - set(train))
    if unseen:
        raise fail(f"classes {unseen[:5]} appear in eval_test but never in eval_train: a probe cannot learn them")


def _check_dataset_deterministic(name: str, data: DataModule, build: Callable[[], DataModule]) -> None:
    again = build()
    for split in ("train", "eval_train", "eval_test"):
        a, b = getattr(data, split), getattr(again, split)
        if (a is None) != (b is None) or (a is not None and _sized(a) != _sized(b)):
            raise _kind_fail("dataset-deterministic", "dataset", name, f"two builds gave different '{split}' splits")
        if a is not None and not _same(_first_samples(a, 3), _first_samples(b, 3)):
            raise _kind_fail("dataset-deterministic", "dataset", name, f"two builds with the same settings gave "
                             f"different '{split}' samples: seed every shuffle and split")


# ------------------------------------------------------------------------------------ evaluator checks
class _WithoutField(torch.utils.data.Dataset):
    """A view of a dataset whose samples lack one field (labels, for the needs-labels check)."""

    def __init__(self, ds: Any, key: str) -> None:
        self.ds, self.key = ds, key

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {k: v for k, v in self.ds[i].items() if k != self.key}


def _evenly(ds: Any, n: int) -> Any:
    size = _sized(ds)
    if ds is None or size is None or size <= n:
        return ds
    return torch.utils.data.Subset(ds, torch.linspace(0, size - 1, n).round().long().unique().tolist())


class EvaluatorHarness(ObjectiveHarness):
    """An evaluator with a randomly initialised encoder and (a slice of) the data of an objective's
    recipe: ``max_samples`` evenly spaced samples per evaluation split keep the checks fast."""

    def __init__(self, name: str, objective: str | None = None, overrides: Mapping[str, Any] | None = None,
                 eval_kwargs: Mapping[str, Any] | None = None, max_samples: int = 128,
                 registry: Registry | None = None) -> None:
        registry = registry or get_registry()
        self.component = name
        super().__init__(objective or recipe_using("evaluator", name, registry), overrides, None, registry)
        self.spec = self.registry.get("evaluator", name)
        self.eval_kwargs = dict(eval_kwargs if eval_kwargs is not None else self.cfg.eval_kwargs.get(name, {}))
        self.max_samples = max_samples

    def fail(self, contract: str, detail: str) -> ContractError:
        return _kind_fail(contract, "evaluator", self.component, detail)

    def small_data(self, labels: bool = True) -> DataModule:
        data = copy.copy(self.data())
        data.eval_train = _evenly(data.eval_train, self.max_samples)
        data.eval_test = _evenly(data.eval_test, self.max_samples)
        if not labels:
            data.eval_train = None if data.eval_train is None else _WithoutField(data.eval_train, data.label_key)
            data.eval_test = None if data.eval_test is None else _WithoutField(data.eval_test, data.label_key)
            data.num_classes, data.class_names = None, None
        return data

    def encoder(self) -> Encoder:
        torch.manual_seed(0)
        return build_encoder(copy.deepcopy(self.cfg), self.data(), self.registry)

    def evaluate(self, contract: str, encoder: Encoder, data: DataModule) -> Mapping[str, float]:
        evaluator = self.spec.build(**self.eval_kwargs)
        try:
            return evaluator.evaluate(encoder, data)
        except SSLKitError:
            raise
        except Exception as exc:
            raise self.fail(contract, f"evaluate raised {type(exc).__name__}: {exc}") from exc


def check_evaluator_contract(name: str, contract: str, objective: str | None = None,
                             overrides: Mapping[str, Any] | None = None, eval_kwargs: Mapping[str, Any] | None = None,
                             max_samples: int = 128, registry: Registry | None = None,
                             harness: EvaluatorHarness | None = None) -> None:
    """Verify one contract (see EVALUATOR_CONTRACTS) for the registered evaluator ``name`` on
    ``objective``'s recipe data (default: the first recipe that lists it) and a random encoder."""
    h = harness or EvaluatorHarness(name, objective, overrides, eval_kwargs, max_samples, registry)
    checks: dict[str, Callable[[EvaluatorHarness], None]] = {
        "evaluator-metrics": _check_evaluator_metrics,
        "evaluator-weights-unchanged": _check_evaluator_weights,
        "evaluator-needs-labels": _check_evaluator_labels,
    }
    _run_check(checks, contract, EVALUATOR_CONTRACTS, h)


def check_evaluator(name: str, objective: str | None = None, overrides: Mapping[str, Any] | None = None,
                    eval_kwargs: Mapping[str, Any] | None = None, max_samples: int = 128,
                    registry: Registry | None = None) -> None:
    """Verify every evaluator contract; raises on the first broken one."""
    h = EvaluatorHarness(name, objective, overrides, eval_kwargs, max_samples, registry)
    for contract in EVALUATOR_CONTRACTS:
        check_evaluator_contract(name, contract, harness=h)


def _check_evaluator_metrics(h: EvaluatorHarness) -> None:
    out = h.evaluate("evaluator-metrics", h.encoder(), h.small_data())
    if not isinstance(out, Mapping) or not out:
        raise h.fail("evaluator-metrics", f"evaluate must return a non-empty {{metric: value}} dict, got {out!r}")
    for key, value in out.items():
        if not isinstance(key, str):
            raise h.fail("evaluator-metrics", f"metric names must be strings, got {key!r}")
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise h.fail("evaluator-metrics", f"metric '{key}' is not a number: {value!r}") from exc
        if not math.isfinite(number):
            raise h.fail("evaluator-metrics", f"metric '{key}' is {number}")


def _check_evaluator_weights(h: EvaluatorHarness) -> None:
    enc = h.encoder()
    enc.train()  # an evaluator that forgets eval() would update BatchNorm statistics
    before = {k: v.detach().clone() for k, v in enc.state_dict().items()}
    h.evaluate("evaluator-weights-unchanged", enc, h.small_data())
    changed = [k for k, v in enc.state_dict().items() if not torch.equal(v, before[k])]
    if changed:
        raise h.fail("evaluator-weights-unchanged", f"evaluate changed the encoder's {changed[:3]}: evaluators must "
                     "not train the encoder (use encoder.eval() and torch.no_grad(), and restore the mode)")


def _check_evaluator_labels(h: EvaluatorHarness) -> None:
    evaluator = h.spec.build(**h.eval_kwargs)
    data = h.small_data(labels=False)
    try:
        evaluator.evaluate(h.encoder(), data)
    except SSLKitError as exc:
        if not evaluator.needs_labels:
            raise h.fail("evaluator-needs-labels", f"needs_labels is False but it failed on samples without "
                         f"'{data.label_key}': {exc}. Set needs_labels = True if it needs them") from exc
        return  # a clear error, as it should be (the runner skips it on unlabelled data)
    except Exception as exc:
        raise h.fail("evaluator-needs-labels", f"on samples without '{data.label_key}' it raised "
                     f"{type(exc).__name__}: {exc}. Raise ssl_core.errors.DataError with a message instead, or set "
                     "needs_labels = False and work without labels") from exc
    if evaluator.needs_labels:
        raise h.fail("evaluator-needs-labels", "needs_labels is True but it ran on samples without labels; set "
                     "needs_labels = False so it also runs on unlabelled data")


# ------------------------------------------------------------------------ distributed equivalence
DISTRIBUTED_CONTRACT = "distributed-equivalence"
"""Checked by :func:`check_distributed_equivalence` (it starts processes, so it is not in
``OBJECTIVE_CONTRACTS``)."""


def check_distributed_equivalence(
    name: str, overrides: Mapping[str, Any] | None = None, batch_size: int = 8, nproc: int = 2,
    steps: int = 2, trainer_steps: int = 3, timeout_s: float = 1200.0,
) -> "EquivalenceResult":
    """Verify that objective ``name`` on ``nproc`` gloo processes at global batch ``batch_size``
    takes the same steps as on one process at that batch (see :mod:`ssl_core.equivalence`).

    Compared: each step's loss (``LOSS_RTOL``), every gradient (``GRAD_RTOL``), the final state
    dict including buffers (``STATE_RTOL``), and the first loss of a short Trainer run with the
    recipe's own settings (which must also finish under DDP). It fails when a loss uses only the
    local batch (negatives, centres, variances, token means), when augmentations are drawn per
    rank instead of per sample, or when DDP cannot run the objective. Draws from the global RNG
    inside the network (dropout) differ between ranks by design: pass overrides that set dropout
    to 0. Runs on CPU; the objective must be registered through an installed plugin, since the
    check starts fresh processes. Returns the measurements.
    """
    from ssl_core.equivalence import EquivalenceCase, run_equivalence

    case = EquivalenceCase(name, dict(overrides or {}), batch_size, steps, trainer_steps=trainer_steps)
    result = run_equivalence([case], nproc=nproc, timeout_s=timeout_s)[0]
    problems = result.problems()
    if problems:
        raise ContractError(f"contract '{DISTRIBUTED_CONTRACT}' failed for objective '{name}': " + "; ".join(problems))
    return result
