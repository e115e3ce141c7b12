"""A training step ready for GPUs, checked on CPU by counting.

A host-device synchronisation (reading a value on the host, boolean-mask indexing, building a
tensor from Python numbers on the device) is counted with :class:`ssl_core.host_sync.HostSyncCounter`
on a CPU: a step that does not log must make none. Also: non-finite steps are still skipped
and counted when nothing is read, ``precision: auto`` resolves as documented (the capability
queries mocked), fused optimisers, multi-tensor EMA, augmentation outside autocast, persistent
DataLoader workers.
"""

from __future__ import annotations

import multiprocessing

import pytest
import torch

from ssl_core.config import TrainConfig
from ssl_core.errors import NonFiniteLossError
from ssl_core.host_sync import HostSyncCounter
from ssl_core.interfaces import Objective, StepInfo
from ssl_core.optim import LARS, build_optimizer, skips_on_device
from ssl_core import trainer as trainer_mod
from ssl_core.trainer import Trainer, resolve_precision


class Regression(Objective):
    """``mean (encoder(x) - 3 x)^2``; NaN at the steps in ``bad_steps``."""

    def __init__(self, bad_steps: tuple[int, ...] = ()) -> None:
        super().__init__()
        from sslkit_testplugins.toy import MLPEncoder

        self.encoder = MLPEncoder(dropout=0.0)
        self.bad_steps = set(bad_steps)

    def training_step(self, batch, step: StepInfo):  # type: ignore[no-untyped-def]
        x = batch["x"].float()
        loss = (self.encoder(x).float() - 3 * x.repeat(1, 2)).pow(2).mean()
        if step.step in self.bad_steps:
            loss = loss * float("nan")
        return {"loss": loss, "scale": loss.detach() * 2}


@pytest.fixture(autouse=True)
def _deferred_path_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests check the accelerator's deferred host reads, run here on a CPU device."""
    monkeypatch.setattr(Trainer, "defer_host_reads_on_cpu", True)


def _data():  # type: ignore[no-untyped-def]
    from sslkit_testplugins.toy import gaussian_mixture

    return gaussian_mixture(n=256)


def _cfg(**kw) -> TrainConfig:  # type: ignore[no-untyped-def]
    base = dict(steps=8, batch_size=64, lr=0.05, optimizer="adamw", weight_decay=0.0, warmup_fraction=0.0,
                log_every=100, checkpoint_every=0, health_every=0, probe_every=0, progress=False,
                device="cpu", precision="fp32")
    base.update(kw)
    return TrainConfig(**base)


def _count_syncs_per_step(trainer: Trainer) -> list[int]:
    """Run ``trainer.fit()`` and return the host syncs each ``_train_step`` made."""
    counts: list[int] = []
    inner = trainer._train_step

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        with HostSyncCounter() as syncs:
            out = inner(*args, **kwargs)
        counts.append(syncs.total)
        return out

    trainer._train_step = counted  # type: ignore[method-assign]
    trainer.fit()
    return counts


def test_a_step_that_does_not_log_reads_nothing_to_the_host() -> None:
    torch.manual_seed(0)
    trainer = Trainer(Regression(), _data(), _cfg(steps=6, log_every=3))
    assert trainer.defers_host_reads
    counts = _count_syncs_per_step(trainer)
    # steps 1 (first), 3 and 6 (log_every=3, last) log; the others read nothing
    assert [c > 0 for c in counts] == [True, False, True, False, False, True], counts
    assert trainer.skipped_steps == 0


def test_on_a_cpu_device_every_step_reads_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU a read waits for nothing: the default keeps exact per-step skips and logging."""
    monkeypatch.setattr(Trainer, "defer_host_reads_on_cpu", False)
    torch.manual_seed(0)
    trainer = Trainer(Regression(), _data(), _cfg(steps=4, log_every=3))
    assert not trainer.defers_host_reads


def test_the_counter_sees_the_reads_it_should() -> None:
    """The counter itself: each kind of host read is counted (a check that could not fail would
    make the test above worthless)."""
    x = torch.arange(6.0)
    with HostSyncCounter() as syncs:
        x.sum().item()
        float(x[0])
        x.tolist()
        x[x > 2]
        bool(x.any())
        torch.tensor([1.0], device=x.device)
        x.nonzero()
    assert syncs.calls == {"item": 1, "__float__": 1, "tolist": 1, "mask-index": 1, "__bool__": 1,
                           "tensor(device=)": 1, "nonzero": 1}, syncs.calls
    assert torch.arange(3).sum().item() == 3  # restored on exit


def test_non_finite_steps_are_skipped_on_the_device_and_counted_when_read() -> None:
    """With nothing read per step, a NaN loss still skips its update: the weights end exactly as
    in a run that reads every step (log_every=1), and skipped_steps counts the bad steps."""
    results = []
    for log_every in (1, 100):
        torch.manual_seed(0)
        obj = Regression(bad_steps=(2, 3, 5))
        trainer = Trainer(obj, _data(), _cfg(log_every=log_every))
        trainer.fit()
        results.append((trainer.skipped_steps, [p.detach().clone() for p in obj.parameters()]))
    (skipped_every, w_every), (skipped_deferred, w_deferred) = results
    assert skipped_every == skipped_deferred == 3
    for a, b in zip(w_every, w_deferred):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert torch.isfinite(b).all()


def test_too_many_bad_steps_in_a_row_stop_the_run_when_read() -> None:
    torch.manual_seed(0)
    trainer = Trainer(Regression(bad_steps=(2, 3, 4)), _data(), _cfg(max_bad_steps=2))
    assert trainer.defers_host_reads
    with pytest.raises(NonFiniteLossError, match="3 steps in a row"):
        trainer.fit()
    assert all(torch.isfinite(p).all() for p in trainer.objective.parameters())


def test_host_reads_every_step_where_the_optimiser_cannot_skip_on_the_device() -> None:
    torch.manual_seed(0)
    t = Trainer(Regression(), _data(), _cfg(nan_policy="stop"))
    assert not t.defers_host_reads  # stop at the first bad step: read it


# --------------------------------------------------------------------------- optimisers
def test_adamw_and_sgd_are_fused_where_torch_has_the_kernels_and_skip_on_found_inf() -> None:
    cfg = _cfg()
    w = torch.nn.Parameter(torch.randn(4, 4))
    opt = build_optimizer([{"params": [w]}], cfg)
    assert opt.defaults["fused"] and skips_on_device(opt)
    w.grad = torch.ones_like(w)
    before = w.detach().clone()
    opt.found_inf = torch.ones(())
    opt.step()
    assert torch.equal(w, before)
    del opt.found_inf
    opt.step()
    assert not torch.equal(w, before)
    assert not build_optimizer([{"params": [w]}], cfg, fused=False).defaults.get("fused")


def test_lars_skips_a_step_on_found_inf_and_keeps_its_momentum() -> None:
    w = torch.nn.Parameter(torch.randn(8))
    opt = LARS([w], lr=0.1, momentum=0.9)
    assert skips_on_device(opt)
    w.grad = torch.ones(8)
    opt.step()
    state = (w.detach().clone(), opt.state[w]["momentum_buffer"].clone())
    w.grad = torch.full((8,), float("nan"))
    opt.found_inf = torch.ones(())
    opt.step()
    assert torch.equal(w, state[0]) and torch.equal(opt.state[w]["momentum_buffer"], state[1])
    w.grad = torch.ones(8)
    opt.found_inf = torch.zeros(())
    opt.step()
    del opt.found_inf
    reference = LARS([torch.nn.Parameter(state[0].clone())], lr=0.1, momentum=0.9)
    p = reference.param_groups[0]["params"][0]
    reference.state[p]["momentum_buffer"] = state[1].clone()
    p.grad = torch.ones(8)
    reference.step()
    torch.testing.assert_close(w.detach(), p.detach())


def test_ema_update_with_multi_tensor_kernels_matches_the_formula() -> None:
    from ssl_vision.ema import ema_update, make_teacher

    student = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    teacher = make_teacher(student)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
        student[1].running_mean.add_(2.0)
        student[1].num_batches_tracked.add_(5)
    expected = {k: 0.9 * v + 0.1 * student.state_dict()[k] for k, v in teacher.state_dict().items()
                if v.is_floating_point()}
    ema_update(teacher, student, 0.9)
    for k, v in expected.items():
        torch.testing.assert_close(teacher.state_dict()[k], v)
    assert int(teacher[1].num_batches_tracked) == 5


# --------------------------------------------------------------------------- precision
def test_auto_precision_never_picks_emulated_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(trainer_mod, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", cpu, cpu_bf16=True) is None  # emulated bf16: fp32
    monkeypatch.setattr(trainer_mod, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", cpu, cpu_bf16=True) is torch.bfloat16
    assert resolve_precision("auto", cpu, cpu_bf16=False) is None  # encoder family not measured faster
    asked: list[bool] = []

    def bf16_supported(including_emulation: bool = True) -> bool:
        asked.append(including_emulation)
        return including_emulation  # a GPU that only emulates bf16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", bf16_supported)
    assert resolve_precision("auto", cuda) is None and asked == [False]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_precision("auto", cuda) is torch.bfloat16


def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    real_read = Path.read_text

    def cpuinfo(flags: str):  # type: ignore[no-untyped-def]
        def read(self, *a, **k):  # type: ignore[no-untyped-def]
            return f"processor\t: 0\nflags\t\t: {flags}\n" if str(self) == "/proc/cpuinfo" else real_read(self, *a, **k)
        return read

    monkeypatch.setattr(Path, "read_text", cpuinfo("fpu sse avx2 avx512f"))
    assert not trainer_mod.cpu_has_native_bf16()
    monkeypatch.setattr(Path, "read_text", cpuinfo("fpu avx512f avx512_bf16"))
    assert trainer_mod.cpu_has_native_bf16()
    monkeypatch.setattr(Path, "read_text", cpuinfo("fpu amx_bf16 amx_tile"))
    assert trainer_mod.cpu_has_native_bf16()


def test_auto_is_fp32_on_this_cpu_unless_it_has_native_bf16() -> None:
    flags = open("/proc/cpuinfo").read()
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    from sslkit_testplugins.toy import MLPEncoder

    assert resolve_precision("auto", torch.device("cpu"), cpu_bf16=True) is (torch.bfloat16 if native else None)
    trainer = Trainer(Regression(), _data(), _cfg(precision="auto"))
    assert trainer.amp_dtype is None and not MLPEncoder.cpu_bf16


# --------------------------------------------------------------------------- plugins' hot paths
def test_vision_augmentation_and_contrastive_steps_make_no_host_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl_text.model
    from ssl_core.testing import ObjectiveHarness
    from ssl_vision.augment import TwoViewAugmenter, byol_views

    # the text model looks at its masks only where reads are free; here, as on a GPU, it must not
    monkeypatch.setattr(ssl_text.model, "reads_are_free", lambda device: False)

    images = torch.rand(8, 3, 20, 20)
    g = torch.Generator().manual_seed(0)
    for make in (TwoViewAugmenter, byol_views):
        aug = make(image_size=16)
        aug({"image": images}, g)  # first call builds the colour constants
        with HostSyncCounter() as syncs:
            aug({"image": images}, g)
        assert syncs.total == 0, syncs.where
    for name in ("simclr", "byol", "dino", "mae", "mlm", "clm", "clip"):
        h = ObjectiveHarness(name)
        built = h.build()
        info = h.step_info(step=1)
        built.objective.training_step(built.batch, info)
        with HostSyncCounter() as syncs:
            built.objective.training_step(built.batch, info)["loss"].backward()
            built.objective.on_after_optimizer_step(info)
        assert syncs.total == 0, (name, syncs.where)


def test_augmentation_runs_outside_autocast() -> None:
    from ssl_vision.augment import TwoViewAugmenter

    images = torch.rand(4, 3, 20, 20)
    aug = TwoViewAugmenter(image_size=16)
    plain = aug({"image": images}, torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = aug({"image": images}, torch.Generator().manual_seed(1))
    for a, b in zip(plain, inside):
        assert b.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# --------------------------------------------------------------------------- data loading
def test_dataloader_workers_persist_across_epochs() -> None:
    torch.manual_seed(0)
    trainer = Trainer(Regression(), _data(), _cfg(steps=8, batch_size=64, num_workers=1))  # 4 steps per epoch
    made: list[object] = []
    make = trainer._loader

    def counted(*a, **k):  # type: ignore[no-untyped-def]
        loader = make(*a, **k)
        made.append(loader)
        return loader

    trainer._loader = counted  # type: ignore[method-assign]
    result = trainer.fit()
    assert result.steps == 8 and len(made) == 1 and made[0].persistent_workers
    # ...and end with the run: workers ignore SIGTERM, so one still alive at interpreter exit
    # makes multiprocessing's exit handler wait forever (a script with a global Trainer hung;
    # here `trainer` is kept alive by the reference cycle through `counted`, as such a global is)
    assert not [p for p in multiprocessing.active_children() if p.is_alive()]
    assert trainer.fit().steps == 8 and len(made) == 2  # a later fit starts fresh workers
    assert not multiprocessing.active_children()


# --------------------------------------------------------------------------- allocator
def test_malloc_tuning_applies_once_and_honours_the_opt_out(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from ssl_core import allocator

    calls: list[tuple[int, int]] = []

    def mallopt(param: int, value: int) -> int:
        calls.append((param, value))
        return 1

    class FakeLibc:  # ctypes sets argtypes/restype on the function object
        pass

    fake = FakeLibc()
    fake.mallopt = mallopt  # type: ignore[attr-defined]
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: fake)
    monkeypatch.setattr(sys, "platform", "linux")
    for var in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "LD_PRELOAD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(allocator.OPT_OUT, "0")
    monkeypatch.setattr(allocator, "_applied", None)
    assert allocator.tune_malloc() is False and calls == []
    monkeypatch.delenv(allocator.OPT_OUT)
    monkeypatch.setattr(allocator, "_applied", None)
    assert allocator.tune_malloc() is True
    assert calls == [(-4, 0), (-1, 2**31 - 1)]  # M_MMAP_MAX = 0, M_TRIM_THRESHOLD = largest int
    assert allocator.tune_malloc() is True and len(calls) == 2  # once per process
    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")
    assert allocator.tune_malloc() is False and len(calls) == 2


def test_compile_traces_the_model_and_leaves_the_augmentation_eager() -> None:
    """``train.compile``: the augmentation's per-sample generator draws broke the compiled step
    into 10 graphs (9 breaks) on SimCLR; the Augmenter base class keeps it out of the trace, so
    the model and heads compile into one graph."""
    import inspect

    import torch._dynamo

    from ssl_core.testing import ObjectiveHarness

    built = ObjectiveHarness("simclr").build()
    info = ObjectiveHarness("simclr").step_info(step=1)
    calls = []
    aug = built.objective.augmenter
    original = type(aug).__call__

    def step(batch):  # type: ignore[no-untyped-def]
        return built.objective.training_step(batch, info)["loss"]

    torch._dynamo.reset()
    try:
        # the bare augmentation, without the base class's wrapper, must break the graph (so the
        # check below can fail)
        bare = inspect.unwrap(original)
        type(aug).__call__ = lambda self, *a, **k: calls.append(1) or bare(self, *a, **k)  # type: ignore[method-assign]
        unwrapped = torch._dynamo.explain(step)(built.batch)
    finally:
        type(aug).__call__ = original  # type: ignore[method-assign]
    torch._dynamo.reset()
    explained = torch._dynamo.explain(step)(built.batch)
    torch._dynamo.reset()
    assert calls and unwrapped.graph_break_count > 0
    assert explained.graph_count == 1 and explained.graph_break_count == 0, explained.break_reasons


def test_memory_format_auto_follows_the_encoder_and_changes_layout_not_results() -> None:
    """``train.memory_format``: ``auto`` stores the ResNets' conv weights channels-last (measured
    faster, benchmarks/bench_compile.py) and leaves other encoders alone; the loss is the same."""
    from ssl_core.errors import ConfigError
    from ssl_core.testing import ObjectiveHarness
    from ssl_core.trainer import resolve_channels_last

    harness = ObjectiveHarness("simclr")

    def conv_layouts(objective: Objective) -> set[bool]:
        # 3x3 convolutions over several channels: the layouts differ only where no size is 1
        return {m.weight.is_contiguous(memory_format=torch.channels_last) for m in objective.modules()
                if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1 and m.kernel_size != (1, 1)}

    assert resolve_channels_last("auto", harness.build().objective.encoder) is True
    assert resolve_channels_last("auto", Regression().encoder) is False
    with pytest.raises(ConfigError, match="memory_format"):
        resolve_channels_last("nhwc", Regression().encoder)
    losses = {}
    for fmt, expected in (("auto", {True}), ("contiguous", {False}), ("channels_last", {True})):
        built = harness.build(seed=0)
        Trainer(built.objective, built.data, _cfg(steps=1, batch_size=8, memory_format=fmt))
        assert conv_layouts(built.objective) == expected, fmt
        losses[fmt] = float(built.objective.training_step(built.batch, harness.step_info(step=1))["loss"].detach())
    assert abs(losses["auto"] - losses["contiguous"]) < 1e-4 * abs(losses["contiguous"]), losses


def test_audio_steps_read_nothing_from_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """HuBERT and wav2vec 2.0 score every frame and weight the sums by the mask (no
    ``context[mask]``; wav2vec 2.0 draws distractors by rank through a sort and a gather, no
    ``nonzero``), and the encoder builds its padding mask without looking where reads are not
    free. The one ``item`` allowed is torchaudio's layer-drop draw, ``torch.rand(1).item()``: a
    CPU tensor, no device wait."""
    import ssl_audio.encoders
    from ssl_core.testing import ObjectiveHarness

    monkeypatch.setattr(ssl_audio.encoders, "reads_are_free", lambda device: False)
    for name in ("hubert", "wav2vec2"):
        h = ObjectiveHarness(name, {"encoder_kwargs": {"size": "tiny"}})
        built = h.build()
        info = h.step_info(step=1)
        built.objective.training_step(built.batch, info)
        with HostSyncCounter() as syncs:
            built.objective.training_step(built.batch, info)["loss"].backward()
        layers = len(built.objective.encoder.model.encoder.transformer.layers)
        assert set(syncs.calls) <= {"item"} and syncs.calls["item"] <= layers, (name, syncs.where)
