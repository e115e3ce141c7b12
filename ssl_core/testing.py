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

or all at once with :func:`check_objective`. :func:`check_distributed_equivalence` runs the
objective on two gloo processes and on one, and compares losses, gradients and state.
"""

from __future__ import annotations

import copy
import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch

from ssl_core.config import merge
from ssl_core.data import default_collate
from ssl_core.errors import SSLKitError
from ssl_core.interfaces import DataModule, Encoder, Objective, StepInfo
from ssl_core.registry import Registry, get_registry
from ssl_core.runner import build_data, build_encoder, build_objective, resolve_config

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
