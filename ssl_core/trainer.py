"""The one training loop every objective runs through.

Event order of one optimiser step (the contract objectives and callbacks can rely on)::

    seed the step's generator from (seed, step) and the global RNG from (seed, step, rank)
    set LR and weight decay from their warm-up + cosine schedules
    for each of grad_accum micro-batches:
        move batch to device
        with autocast(precision):  out = objective.training_step(batch, step_info)
        backward(out["loss"] / grad_accum)          # gradients averaged over ranks on the last one
    agree over ranks on the mean loss and on a stop request (steps that log, checkpoint or stop;
        other steps read nothing to the host: see "Host reads" below)
    if the loss is not finite: apply nan_policy (skip: no update, buffers the forward changed
                               are restored from a copy taken before it; or stop)
    else: objective.on_before_optimizer_step(step_info)     # drop grads of frozen-for-now layers
          unscale (fp16) -> clip grad norm -> optimizer.step() -> zero_grad
          objective.on_after_optimizer_step(step_info)      # EMA / momentum teachers
    every log_every steps: send a metrics record to the loggers (metrics.jsonl, ...); every health_every: embedding health
    every checkpoint_every steps (and at the end, and on SIGTERM/SIGINT): atomic checkpoint,
                               never of a state holding NaN/inf

Host reads: on a step that neither logs, checkpoints nor stops, nothing is read from the device
to the host (on a GPU each read stalls the host until the device has finished). When the
optimiser can skip a step on the device (fused AdamW/SGD, LARS: ``found_inf``), a non-finite loss
there skips the update on the device and is counted on the device; the count (``skipped_steps``,
``max_bad_steps``) is read at the next step that logs. The objective's hooks still run on such a
step (an EMA teacher moves towards the unchanged student). Otherwise (another optimiser, fp16,
``nan_policy: stop``, several processes, a stop request) every step reads its loss as before.
On a CPU device a read waits for nothing, so there every step reads its loss: each skipped step
is logged on its own line and ``max_bad_steps`` stops the run at the exact step, as documented
in docs/training.md. (``Trainer.defer_host_reads_on_cpu = True`` runs the accelerator's
deferred path on a CPU, which is how the tests check it.)

Because data order depends only on (seed, epoch) and every random draw inside a step depends
only on (seed, step), a run resumed from a checkpoint repeats the uninterrupted run exactly.
The step's generator is the same on every rank and knows which rows of the global batch this
process holds (:class:`~ssl_core.randomness.StepGenerator`), so per-sample augmentations are
those a one-process run draws. Draws from the global RNG (dropout) stay different per rank.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch.utils.data import DataLoader

from ssl_core.allocator import tune_malloc
from ssl_core.checkpoint import atomic_torch_save, first_non_finite, load_checkpoint
from ssl_core.config import TrainConfig
from ssl_core.data import POSITION_KEY, WORKER_KEY, EpochSampler, ResumableStream, default_collate, move_to_device
from ssl_core.errors import ConfigError, DataError, NonFiniteLossError, WriteError
from ssl_core.evaluators.health import HealthEvaluator
from ssl_core.evaluators.knn import KNNEvaluator
from ssl_core.interfaces import DataModule, Objective, StepInfo
from ssl_core.loggers import Logger, LoggerGroup
from ssl_core.loggers.jsonl import JSONLLogger
from ssl_core.prefetch import DevicePrefetcher
from ssl_core.progress import TrainProgress
from ssl_core.optim import apply_schedules, build_optimizer, skips_on_device
from ssl_core.randomness import BatchShard, StepGenerator
from ssl_core.strategies import Strategy, make_strategy

CHECKPOINT_NAME = "last.pt"


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is '{name}' but no CUDA GPU is available. Use --device cpu or auto.")
    return device


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (x86 ``avx512_bf16`` or AMX ``amx_bf16``;
    Arm ``bf16``). Without it PyTorch emulates bf16 on CPU, which is no faster than fp32."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no evidence of native bf16
        return False
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    return False


def resolve_precision(name: str, device: torch.device, cpu_bf16: bool = False) -> torch.dtype | None:
    """The autocast dtype for ``name`` on ``device`` (``None`` means full fp32).

    ``auto``: bf16 on a CUDA GPU with native bf16 (``is_bf16_supported(including_emulation=False)``:
    never an emulated one); on a CPU, bf16 only when the CPU has native bf16
    (:func:`cpu_has_native_bf16`) and the encoder declares it pays (``cpu_bf16``, see
    :attr:`ssl_core.interfaces.Encoder.cpu_bf16`); fp32 everywhere else.
    """
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else None
        if device.type == "cpu" and cpu_bf16 and cpu_has_native_bf16():
            return torch.bfloat16
        return None
    if name == "fp32":
        return None
    if name == "bf16":
        return torch.bfloat16
    if name == "fp16":
        if device.type != "cuda":
            raise ConfigError("train.precision fp16 needs a CUDA device; use bf16 or fp32 on CPU.")
        return torch.float16
    raise ConfigError(f"Unknown train.precision '{name}'; choose auto, fp32, bf16 or fp16.")


def resolve_channels_last(name: str, encoder: torch.nn.Module) -> bool:
    """Whether ``train.memory_format`` ``name`` stores 4-d weights channels-last for ``encoder``:
    ``auto`` follows the encoder's measured preference (:attr:`ssl_core.interfaces.Encoder.channels_last`)."""
    if name == "auto":
        return bool(getattr(encoder, "channels_last", False))
    if name in ("channels_last", "contiguous"):
        return name == "channels_last"
    raise ConfigError(f"Unknown train.memory_format '{name}'; choose auto, channels_last or contiguous.")


def thinned_probe_data(data: DataModule, max_samples: int | None) -> DataModule:
    """``data`` with each labelled split thinned to at most ``max_samples`` evenly spaced items
    (every class keeps its share when a split is ordered by class); unchanged for ``None`` or
    splits that are small enough or have no length."""
    if not max_samples:
        return data

    def thin(ds: Any) -> Any:
        try:
            n = len(ds)
        except TypeError:
            return ds
        if n <= max_samples:
            return ds
        idx = torch.linspace(0, n - 1, max_samples).round().long().unique().tolist()
        return torch.utils.data.Subset(ds, idx)

    return dataclasses.replace(data, eval_train=thin(data.eval_train), eval_test=thin(data.eval_test))


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The seed of one step's random draws: ``rank=0`` for the step's generator (shared by all
    ranks), the process's rank for the global RNG (dropout differs between ranks)."""
    return (seed * 1_000_003 + step * 7_919 + rank * 104_729 + 17) % (2**62)


@dataclass
class TrainResult:
    """What a finished (or resumed-and-finished) fit returns."""

    steps: int
    total_steps: int
    final_loss: float
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_time_s: float = 0.0
    samples_per_s: float = 0.0
    skipped_steps: int = 0


class _StopRequest:
    """Turns SIGTERM/SIGINT into a flag checked between steps (checkpoint, then exit)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopRequest":
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # a second signal: give up immediately
            raise TrainingAborted(signum)
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _loader_worker_init(worker_id: int) -> None:
    """Let DataLoader workers ignore SIGTERM.

    SLURM, ``kill -TERM -PGID`` and container runtimes send SIGTERM to every process of the
    job. A worker killed by it makes the main process raise "DataLoader worker is killed"
    before it can write its checkpoint. Workers still exit when the loader shuts them down,
    or when the main process is gone. (PyTorch workers already ignore SIGINT.)
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class TrainingInterrupted(Exception):
    """Raised after a SIGTERM/SIGINT once the checkpoint is safely written."""


class TrainingAborted(BaseException):
    """A second SIGTERM/SIGINT while the first was being handled: training stops at once.

    Raised from the signal handler, wherever the step is; a ``BaseException`` (like
    ``KeyboardInterrupt``) so that no ``except Exception`` on the way swallows it, but not a
    ``KeyboardInterrupt``, which the CLI framework would turn into a bare exit code. Checkpoints
    are written atomically, so the last one on disk is whole; the command line prints this
    message and exits with status ``128 + signum``.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        name = signal.Signals(signum).name
        super().__init__(
            f"Stopped at once by a second {name}, without a new checkpoint. The last checkpoint written "
            "(checkpoints/last.pt) is complete; continue from it with --resume."
        )

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class Trainer:
    """Trains one :class:`~ssl_core.interfaces.Objective` on a :class:`DataModule`.

    ``run_dir`` receives ``metrics.jsonl`` and ``checkpoints/last.pt``; with ``run_dir=None``
    nothing is written (handy in notebooks and tests). How the objective is spread over
    processes (one process, DDP, FSDP) is the :attr:`strategy`'s business
    (:mod:`ssl_core.strategies`); the loop is the same for all of them. By default the strategy
    follows torchrun's environment and ``config.strategy``; pass one to choose it yourself.
    ``loggers`` replaces the default ``metrics.jsonl`` writer with the given
    :class:`~ssl_core.loggers.Logger` objects (the caller closes them).
    """

    #: run the deferred host-read path (see the module docstring) on a CPU device too; off by
    #: default because on a CPU reading the loss costs nothing and exact per-step skips are kept
    defer_host_reads_on_cpu: bool = False

    def __init__(
        self,
        objective: Objective,
        data: DataModule,
        config: TrainConfig,
        run_dir: str | Path | None = None,
        callbacks: list[Callable[[dict[str, Any]], None]] | None = None,
        loggers: list[Logger] | None = None,
        strategy: Strategy | None = None,
    ) -> None:
        self.objective = objective
        self.data = data
        self.cfg = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.callbacks = list(callbacks or [])
        tune_malloc()  # keep step buffers in the process (ssl_core.allocator); SSLKIT_MALLOC_TUNING=0 opts out
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        # joins the process group when launched by torchrun with WORLD_SIZE > 1
        self.strategy: Strategy = strategy or make_strategy(config, resolve_device(config.device))
        self.device = self.strategy.device
        self.rank, self.world_size = self.strategy.rank, self.strategy.world_size
        self.is_main = self.strategy.is_main
        # None: metrics.jsonl in run_dir, opened and closed by fit(); a list (the runner's, built
        # from --logger) stays open after fit() for the evaluation results. Only rank 0 logs.
        self.loggers = loggers
        self.amp_dtype = resolve_precision(config.precision, self.device,
                                           cpu_bf16=bool(getattr(objective.encoder, "cpu_bf16", False)))
        # FSDP shards only contiguous parameters: auto keeps the default layout there
        sharded = self.strategy.name == "fsdp"
        if sharded and config.memory_format == "channels_last":
            raise ConfigError("train.memory_format channels_last cannot be combined with FSDP (train.strategy fsdp), "
                              "which shards only contiguous parameters. Use memory_format auto or contiguous.")
        self.channels_last = resolve_channels_last(config.memory_format, objective.encoder) and not sharded
        if self.channels_last:  # before the strategy moves, wraps or shards the parameters
            objective.to(memory_format=torch.channels_last)
        if config.batch_size % (config.grad_accum * self.world_size):
            raise ConfigError(
                f"train.batch_size ({config.batch_size}) is the global batch and must be divisible by "
                f"grad_accum x processes ({config.grad_accum} x {self.world_size})."
            )
        self.micro_batch = config.batch_size // config.grad_accum // self.world_size
        _check_contrast_batch(objective, self.micro_batch, self.world_size, config)
        self.stream = data.train if isinstance(data.train, ResumableStream) else None
        # where each rank's stream workers are (raw items read), saved in checkpoints
        self.stream_epoch = 0
        self.stream_positions: dict[int, int] = {}
        self.stream_next_worker = 0  # whose batch the loader's round-robin owes us next
        if self.stream is not None:
            self.sampler = None
            self.steps_per_epoch = self._stream_steps_per_epoch()
            if config.steps is None and self.steps_per_epoch is None:
                raise ConfigError(
                    "The training data is a stream of unknown length, so train.epochs cannot be turned into "
                    "steps. Set train.steps (--steps N), or give the dataset samples_per_epoch."
                )
        else:
            n = len(data.train)  # type: ignore[arg-type]
            if n == 0:
                raise DataError("The training dataset is empty. Check the data path and file formats.")
            self.sampler = EpochSampler(n, config.seed, self.micro_batch, self.rank, self.world_size)
            self.steps_per_epoch = self.sampler.batches_per_epoch() // config.grad_accum
            if self.steps_per_epoch == 0:
                raise DataError(
                    f"train.batch_size ({config.batch_size}) is larger than the training data "
                    f"({n} samples). Use --batch-size {max(1, n // 2)} or less, or add data."
                )
        self.total_steps = config.steps if config.steps is not None else config.epochs * self.steps_per_epoch  # type: ignore[operator]
        # moves, wraps or shards the objective: sharding swaps parameters, so before the optimiser
        self.strategy.setup(objective)
        self.optimizer = build_optimizer(self.objective.param_groups(config.weight_decay), config,
                                         fused=None if self.strategy.sharded_module is None else False)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        # steps that do not log may run without host reads (see the module docstring)
        self.defers_host_reads = (skips_on_device(self.optimizer) and not self.scaler.is_enabled()
                                  and config.nan_policy == "skip" and self.world_size == 1
                                  and (self.device.type != "cpu" or self.defer_host_reads_on_cpu))
        self._device_bad: dict[str, torch.Tensor] | None = None  # non-finite counts not yet read
        self._train_loader: DataLoader | None = None
        assert self.strategy.step_fn is not None
        self.step_fn: Callable[..., dict[str, torch.Tensor]] = self.strategy.step_fn
        if config.compile:
            self.step_fn = torch.compile(self.step_fn)  # type: ignore[assignment]
        # this process's rows of each global micro-batch (the sampler deals contiguous blocks)
        shard = BatchShard(offset=self.rank * self.micro_batch, size=self.micro_batch,
                           total=self.world_size * self.micro_batch)
        self.generator = StepGenerator(self.device, shard)
        self.step = 0
        self.skipped_steps = 0
        self._bad_in_a_row = 0
        self._saved_step: int | None = None  # step of the last checkpoint written or loaded
        self._health = HealthEvaluator(max_samples=256)
        self._probe = KNNEvaluator()
        self._probe_data: DataModule | None = None  # the labelled splits thinned to cfg.probe_samples

    @property
    def fsdp(self) -> torch.nn.Module | None:
        """The FSDP root module when the strategy shards parameters, else ``None``."""
        return self.strategy.sharded_module

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / "checkpoints" / CHECKPOINT_NAME

    def save_checkpoint(self) -> None:
        """Write a resumable checkpoint atomically (the previous one survives a crash mid-write).

        Only rank 0 writes; the other ranks wait for it so a resume never reads a stale file.
        """
        if self.checkpoint_path is None:
            return
        # collectives first, on every rank: FSDP gathers full tensors, streams gather positions
        model_state = self.full_objective_state()
        optim_state = self.strategy.optimizer_state(self.optimizer)
        stream_state = self._gather_stream_state() if self.stream is not None else None
        bad = first_non_finite({"objective": model_state, "optimizer": optim_state})
        # every rank must agree (collective), or the others would wait in the barrier
        if self.strategy.any_rank(bad is not None) and bad is None:
            bad = "a tensor on another rank"
        if bad is not None:
            raise NonFiniteLossError(
                f"Not writing the checkpoint of step {self.step}: {bad} holds NaN or inf values (training "
                f"diverged). {self._kept_checkpoint()} Lower --lr, set train.clip_grad, or use precision fp32, "
                "then --resume."
            )
        if not self.is_main:
            self.strategy.barrier()
            self._saved_step = self.step
            return
        state = {
            "step": self.step,
            "total_steps": self.total_steps,
            "objective": model_state,
            "optimizer": optim_state,
            "optimizer_format": self.strategy.optimizer_format,
            "scaler": self.scaler.state_dict(),
            "skipped_steps": self.skipped_steps,
            "torch_version": str(torch.__version__),  # a plain str: loads with weights_only=True
            "world_size": self.world_size,
            "stream": stream_state,
        }
        try:
            atomic_torch_save(state, self.checkpoint_path)
        except WriteError as exc:
            raise WriteError(f"Checkpoint of step {self.step} not written. {exc} {self._kept_checkpoint()} "
                             "Continue with --resume once there is room.") from exc.__cause__
        self._saved_step = self.step
        self.strategy.barrier()

    def _kept_checkpoint(self) -> str:
        """Which checkpoint a user can resume from, for error messages."""
        if self._saved_step is None:
            return "No checkpoint of this run was written yet."
        return f"The checkpoint of step {self._saved_step} ({self.checkpoint_path}) is kept."

    def _gather_stream_state(self) -> dict[str, Any]:
        """Every rank's stream worker positions (collective when distributed)."""
        mine = {"positions": dict(self.stream_positions), "next_worker": self.stream_next_worker}
        every = self.strategy.gather_objects(mine)
        return {"epoch": self.stream_epoch, "ranks": every, "num_workers": self.cfg.num_workers}

    def full_objective_state(self) -> dict[str, torch.Tensor]:
        """The objective's full state dict: gathered from the shards under FSDP (a collective every
        rank must call; only rank 0 receives the tensors), else the objective's own."""
        return self.strategy.model_state(self.objective)

    def load_checkpoint(self, path: str | Path | None = None) -> int:
        """Restore objective, optimiser and step from a checkpoint; return the step reached."""
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None or not path.exists():
            raise DataError(f"No checkpoint to resume from at {path}. Start without --resume.")
        state = load_checkpoint(path, map_location=self.strategy.checkpoint_map_location)
        self.check_resume_step(int(state["step"]), path)
        saved_format, wanted = state.get("optimizer_format", "torch"), self.strategy.optimizer_format
        if saved_format != wanted:
            kind = {"by_name": "FSDP", "torch": "single-process or DDP"}
            raise ConfigError(
                f"{path} was written by a {kind[saved_format]} run and cannot resume as a {kind[wanted]} run "
                f"(the optimiser state is stored differently). Resume with the same train.strategy, or start a "
                f"new run from its weights (ssl eval / export)."
            )
        self.strategy.load_state(self.objective, self.optimizer, state["objective"], state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.stream is not None:
            self._restore_stream_state(state.get("stream"), path)
        self.step = int(state["step"])
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self._saved_step = self.step
        return self.step

    def check_resume_step(self, step: int, path: Path) -> None:
        """Refuse a resume whose checkpoint is already past this run's total steps."""
        if step > self.total_steps:
            raise ConfigError(
                f"{path} is at step {step}, past this run's {self.total_steps} total steps: a run cannot "
                f"go back. Resume with --steps {step + 1} or more to train longer, or start a new run."
            )

    def _restore_stream_state(self, saved: dict[str, Any] | None, path: Path) -> None:
        if not saved:
            raise DataError(f"{path} holds no stream position (it was not written by a streaming run).")
        if len(saved["ranks"]) != self.world_size or saved["num_workers"] != self.cfg.num_workers:
            raise ConfigError(
                f"{path} was written while streaming with {len(saved['ranks'])} process(es) x "
                f"{saved['num_workers']} DataLoader worker(s); this run has {self.world_size} x {self.cfg.num_workers}. "
                "Resume with the same --nproc-per-node and train.num_workers so every shard continues where it stopped."
            )
        self.stream_epoch = int(saved["epoch"])
        mine = saved["ranks"][self.rank]
        self.stream_positions = {int(k): int(v) for k, v in mine["positions"].items()}
        self.stream_next_worker = int(mine["next_worker"])

    def _stream_steps_per_epoch(self) -> int | None:
        try:
            n = len(self.data.train)  # type: ignore[arg-type]
        except TypeError:
            return None
        steps = n // self.cfg.batch_size
        if steps == 0:
            raise DataError(f"train.batch_size ({self.cfg.batch_size}) is larger than the stream's "
                            f"samples_per_epoch ({n}). Lower --batch-size.")
        return steps

    # ------------------------------------------------------------------ the loop
    def _loader(self, dataset: Any, sampler: Any = None, collate: Any = None, persistent: bool = False) -> DataLoader:
        return DataLoader(
            dataset, batch_size=self.micro_batch, sampler=sampler,
            collate_fn=collate or self.data.collate or default_collate, num_workers=self.cfg.num_workers,
            pin_memory=self.device.type == "cuda", drop_last=True,
            generator=torch.Generator(),  # keeps the global RNG untouched by loader seeding
            persistent_workers=persistent and self.cfg.num_workers > 0, worker_init_fn=_loader_worker_init,
        )

    def _stream_batches(self) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Micro-batches from a :class:`ResumableStream`; an epoch ends when any rank runs dry."""
        assert self.stream is not None
        accum = self.cfg.grad_accum
        collate = StreamCollate(self.data.collate or default_collate)
        while self.step < self.total_steps:
            self.stream.set_state(self.stream_epoch, self.rank, self.world_size, self.stream_positions,
                                  first_worker=self.stream_next_worker)
            it = iter(self._loader(self.stream, collate=collate))
            steps_this_epoch = 0
            while self.step < self.total_steps:
                micro: list[dict[str, Any]] = []
                try:
                    for _ in range(accum):
                        micro.append(next(it))
                except StopIteration:
                    pass
                # ranks' shards differ in length: all move on together
                dry = self.strategy.any_rank(len(micro) < accum)
                if dry:
                    if steps_this_epoch == 0 and not self.stream_positions:
                        raise DataError(
                            f"The stream gave less than one batch ({self.micro_batch} samples per process) in epoch "
                            f"{self.stream_epoch}. Check the shards, or lower --batch-size."
                        )
                    self.stream_epoch += 1
                    self.stream_positions, self.stream_next_worker = {}, 0  # a fresh loader starts at worker 0
                    break
                for batch in micro:
                    worker, position = batch.pop(WORKER_KEY), batch.pop(POSITION_KEY)
                    self.stream_positions[worker] = position
                    self.stream_next_worker = (worker + 1) % max(1, self.cfg.num_workers)
                steps_this_epoch += 1
                yield self.stream_epoch, micro

    def _batches(self) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Yield (epoch, micro-batches of one step) from the current step onwards."""
        if self.stream is not None:
            yield from self._stream_batches()
            return
        yield from DevicePrefetcher(self._map_batches(), self.device)

    def _map_batches(self) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Micro-batches of map-style data. The step is counted here, not read from ``self.step``,
        because :class:`DevicePrefetcher` reads one step ahead of the loop. One DataLoader serves
        every epoch, so its workers (``persistent_workers``) start once per run, not per epoch:
        the sampler, which runs in this process, is told the epoch before each pass."""
        accum = self.cfg.grad_accum
        step = self.step
        if self._train_loader is None:
            self._train_loader = self._loader(self.data.train, sampler=self.sampler, persistent=True)
        while step < self.total_steps:
            epoch = step // self.steps_per_epoch
            self.sampler.epoch = epoch
            self.sampler.start = (step % self.steps_per_epoch) * accum * self.micro_batch
            it = iter(self._train_loader)
            while step < self.total_steps and step // self.steps_per_epoch == epoch:
                try:
                    micro = [next(it) for _ in range(accum)]
                except StopIteration:
                    break
                yield epoch, micro
                step += 1

    def _stop_loader_workers(self) -> None:
        """End the persistent DataLoader workers when :meth:`fit` returns or raises.

        They ignore SIGTERM (see :func:`_loader_worker_init`), so if they were still alive when
        the interpreter exits, ``multiprocessing``'s exit handler would SIGTERM them and then wait
        for them forever: a script holding its ``Trainer`` in a global would never exit."""
        loader, self._train_loader = self._train_loader, None
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None:
            shutdown = getattr(iterator, "_shutdown_workers", None)  # private to PyTorch; see the test
            if shutdown is not None:
                shutdown()
            loader._iterator = None  # type: ignore[union-attr]

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def fit(self, resume: bool = False) -> TrainResult:
        """Train to ``total_steps``; with ``resume=True`` continue from the last checkpoint."""
        owned = self.loggers is None
        if not self.is_main:
            metrics = LoggerGroup()
        elif owned:
            metrics = LoggerGroup([JSONLLogger(self.run_dir)] if self.run_dir else [])
        else:
            metrics = LoggerGroup(self.loggers)
        if resume:
            self.load_checkpoint()
            metrics.resume(self.step)
        history: list[dict[str, Any]] = []
        start_step, t_start = self.step, time.perf_counter()
        t_log, samples_since_log = t_start, 0
        last_loss = math.nan
        bar = TrainProgress(self.total_steps, self.step, enabled=self.cfg.progress and self.is_main)
        self.objective.train()
        try:
            with _StopRequest() as stop:
                for epoch, micro in self._batches():
                    info = StepInfo(self.step, self.total_steps, epoch, self.generator, self.device)
                    reads = self._reads_host(start_step, stop.signum is not None)
                    loss, logs, stop_everywhere = self._train_step(micro, info, stop.signum is not None, reads)
                    samples_since_log += self.cfg.batch_size
                    last_loss = loss
                    self.step += 1
                    bar.update(1)
                    done = self.step == self.total_steps
                    if self._log_due(start_step, done, stop_everywhere) or "skipped" in logs:
                        now = time.perf_counter()
                        record = {"step": self.step, "epoch": epoch, "loss": loss, **logs,
                                  "samples_per_s": samples_since_log / max(now - t_log, 1e-9),
                                  "time_s": now - t_start, **self._in_loop_evaluation(done)}
                        # the one place a metrics record leaves the loop
                        metrics.log_metrics(record)
                        history.append(record)
                        for cb in self.callbacks:
                            cb(record)
                        bar.logged(self.step, loss, record["samples_per_s"], record["time_s"])
                        t_log, samples_since_log = now, 0
                    if self._due(self.cfg.checkpoint_every) or done or stop_everywhere:
                        self.save_checkpoint()
                    if stop_everywhere:
                        raise TrainingInterrupted(
                            f"Stopped by signal {stop.signum or 'on another rank'} at step {self.step}; checkpoint saved. "
                            "Continue with --resume."
                        )
        finally:
            bar.close()
            self._stop_loader_workers()
            if owned:
                metrics.close()
        wall = time.perf_counter() - t_start
        steps_run = self.step - start_step
        return TrainResult(
            steps=self.step, total_steps=self.total_steps, final_loss=last_loss, history=history,
            wall_time_s=wall, samples_per_s=steps_run * self.cfg.batch_size / max(wall, 1e-9),
            skipped_steps=self.skipped_steps,
        )

    def _due(self, every: int, step: int | None = None) -> bool:
        return bool(every and (self.step if step is None else step) % every == 0)

    def _reads_host(self, start_step: int, stop_requested: bool) -> bool:
        """Whether the coming step reads its loss to the host: always, unless
        :attr:`defers_host_reads`; then only when it logs, checkpoints or stops."""
        if not self.defers_host_reads or stop_requested:
            return True
        after = self.step + 1
        return (after == self.total_steps or after == start_step + 1 or self._due(self.cfg.checkpoint_every, after)
                or any(self._due(every, after) for every in (self.cfg.log_every, self.cfg.probe_every,
                                                               self.cfg.health_every)))

    def _log_due(self, start_step: int, done: bool, stopping: bool) -> bool:
        """Log every ``log_every`` steps, the first and last step, on a stop, and with any evaluation
        (and, in :meth:`fit`, every skipped step, so the messages' step numbers are in metrics.jsonl)."""
        cfg = self.cfg
        return (self._due(cfg.log_every) or done or self.step == start_step + 1 or stopping
                or self._due(cfg.probe_every) or self._due(cfg.health_every))

    def _in_loop_evaluation(self, done: bool) -> dict[str, float]:
        """Embedding health and kNN probe results when due (rank 0; not when weights are sharded)."""
        cfg, out = self.cfg, {}
        if not (self.is_main and self.strategy.evaluates_in_loop):
            return out
        encoder = self.objective.encoder
        if cfg.health_every and (self._due(cfg.health_every) or done):
            out.update({f"health/{k}": v for k, v in self._health.evaluate(encoder, self.data).items()})
        if cfg.probe_every and self.data.eval_train is not None and (self._due(cfg.probe_every) or done):
            if self._probe_data is None:
                self._probe_data = thinned_probe_data(self.data, cfg.probe_samples)
            out.update({f"probe/{k}": v for k, v in self._probe.evaluate(encoder, self._probe_data).items()})
        return out

    def _train_step(
        self, micro: list[dict[str, Any]], info: StepInfo, stop_requested: bool = False, read_host: bool = True
    ) -> tuple[Any, dict[str, Any], bool]:
        """One optimiser step; returns (global mean loss, logged scalars, stop on every rank).

        With ``read_host=False`` (only when :attr:`defers_host_reads`) the loss and scalars are
        returned as device tensors and nothing is read to the host."""
        cfg = self.cfg
        self.generator.manual_seed(step_seed(cfg.seed, info.step))  # the same on every rank
        # dropout and other global draws repeat exactly on resume, and differ between ranks
        torch.manual_seed(step_seed(cfg.seed, info.step, self.rank))
        lr, wd = apply_schedules(self.optimizer, cfg, info.step, self.total_steps)
        total_loss = torch.zeros((), device=self.device)
        logs: dict[str, torch.Tensor] = {}
        # the forward updates buffers (BatchNorm statistics, DINO's centre) before the loss is
        # known to be finite: keep a copy to put back if the step is skipped
        buffers = _snapshot_buffers(self.objective) if cfg.nan_policy == "skip" else []
        for i, batch in enumerate(micro):
            batch = move_to_device(batch, self.device, non_blocking=True)
            # gradients are all-reduced once per step, on the last micro-batch
            with self.strategy.gradient_sync(i == len(micro) - 1):
                with self._autocast():
                    out = self.step_fn(batch, info)
                loss = out["loss"] / cfg.grad_accum
                self.scaler.scale(loss).backward()
            total_loss += loss.detach().float()
            for k, v in out.items():
                if k != "loss" and isinstance(v, torch.Tensor) and v.numel() == 1:
                    logs[k] = logs.get(k, 0) + v.detach().float() / cfg.grad_accum
        self.strategy.after_backward()
        if not read_host:
            return self._update_on_device(total_loss, info, lr, wd, logs, buffers)
        self._read_device_bad()
        # every rank must agree on skipping a non-finite step and on stopping
        loss_value, stop = self.strategy.agree(total_loss, stop_requested)
        if not math.isfinite(loss_value):
            _restore_buffers(buffers)
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped_steps += 1
            self._bad_in_a_row += 1
            if cfg.nan_policy == "stop" or self._bad_in_a_row > cfg.max_bad_steps:
                last = info.step + 1  # metrics.jsonl numbers a step by the count done after it
                first = last - self._bad_in_a_row + 1
                where = f"step {last}" if first == last else f"steps {first}-{last} ({self._bad_in_a_row} in a row)"
                why = ("nan_policy=stop" if cfg.nan_policy == "stop"
                       else f"nan_policy=skip tolerates max_bad_steps={cfg.max_bad_steps} in a row")
                raise NonFiniteLossError(
                    f"Loss was {loss_value} at {where} (step numbers as in metrics.jsonl); {why}. "
                    f"{self._kept_checkpoint()} Lower --lr, set train.clip_grad, or use precision fp32, then --resume."
                )
            return loss_value, {"lr": lr, "weight_decay": wd, "skipped": 1.0}, stop
        self._bad_in_a_row = 0
        self._optimizer_update(info)
        return loss_value, {"lr": lr, "weight_decay": wd, **{k: float(v) for k, v in logs.items()}}, stop

    def _optimizer_update(self, info: StepInfo) -> None:
        """Clip, step, zero the gradients, run the objective's hooks (fp16: through the scaler)."""
        self.objective.on_before_optimizer_step(info)
        if self.cfg.clip_grad:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.objective.parameters(), self.cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.objective.on_after_optimizer_step(info)

    def _update_on_device(self, total_loss: torch.Tensor, info: StepInfo, lr: float, wd: float,
                          logs: dict[str, torch.Tensor], buffers: list[tuple[torch.nn.Module, str, torch.Tensor]],
                          ) -> tuple[torch.Tensor, dict[str, Any], bool]:
        """The update of a step that reads nothing to the host: a non-finite loss sets the
        optimiser's ``found_inf``, which skips the update on the device, puts back the buffers the
        forward changed (selected on the device), and is counted there."""
        bad = (~torch.isfinite(total_loss)).float()
        _restore_buffers_where(buffers, bad > 0)
        if self._device_bad is None:
            run = torch.full((), float(self._bad_in_a_row), device=self.device)
            zero = torch.zeros((), device=self.device)
            self._device_bad = {"total": zero, "run": run, "worst": zero.clone()}
        counts = self._device_bad
        counts["total"] = counts["total"] + bad
        counts["run"] = (counts["run"] + 1) * bad  # consecutive non-finite steps, 0 after a good one
        counts["worst"] = torch.maximum(counts["worst"], counts["run"])
        self.optimizer.found_inf = bad  # type: ignore[attr-defined]
        try:
            self._optimizer_update(info)
        finally:
            del self.optimizer.found_inf  # type: ignore[attr-defined]
        return total_loss, {"lr": lr, "weight_decay": wd, **logs}, False

    def _read_device_bad(self) -> None:
        """Read the non-finite counts of the steps that did not read the host (one copy), and
        apply ``max_bad_steps`` to them."""
        if self._device_bad is None:
            return
        counts, self._device_bad = self._device_bad, None
        total, run, worst = (int(v) for v in torch.stack([counts["total"], counts["run"], counts["worst"]]).tolist())
        self.skipped_steps += total
        self._bad_in_a_row = run
        if worst > self.cfg.max_bad_steps:
            raise NonFiniteLossError(
                f"The loss was not finite in {worst} steps in a row before step {self.step} (nan_policy=skip, "
                f"max_bad_steps={self.cfg.max_bad_steps}); those updates were skipped. {self._kept_checkpoint()} "
                "Lower --lr, set train.clip_grad, or use precision fp32, then --resume."
            )


@torch.no_grad()
def _restore_buffers_where(saved: list[tuple[torch.nn.Module, str, torch.Tensor]], skip: torch.Tensor) -> None:
    """Put the saved values back where the 0-dim bool ``skip`` is true, decided on the device."""
    for m, name, value in saved:
        current = getattr(m, name)
        current.copy_(torch.where(skip, value, current))


def _snapshot_buffers(module: torch.nn.Module) -> list[tuple[torch.nn.Module, str, torch.Tensor]]:
    """(module, name, copy) of every buffer of ``module``, to undo a skipped step's forward."""
    return [(m, name, b.detach().clone()) for m in module.modules() for name, b in m._buffers.items() if b is not None]


@torch.no_grad()
def _restore_buffers(saved: list[tuple[torch.nn.Module, str, torch.Tensor]]) -> None:
    """Copy the saved values back in place (DDP keeps references to the buffer tensors)."""
    for m, name, value in saved:
        getattr(m, name).copy_(value)


def _check_contrast_batch(objective: Objective, micro_batch: int, world_size: int, cfg: TrainConfig) -> None:
    """Objectives with in-batch negatives declare ``min_batch_size``; a smaller batch has nothing
    to contrast against, so its loss would be constant and nothing would be learnt."""
    need = int(getattr(objective, "min_batch_size", 1) or 1)
    contrast = micro_batch * world_size  # negatives are gathered across ranks, per micro-batch
    if contrast < need:
        accum = f" / train.grad_accum {cfg.grad_accum}" if cfg.grad_accum > 1 else ""
        raise ConfigError(
            f"{type(objective).__name__} contrasts each sample with the others in its batch and needs at least "
            f"{need} samples per micro-batch; this run has {contrast} (--batch-size {cfg.batch_size}{accum}). "
            f"Use --batch-size {need * cfg.grad_accum} or more (the method works best with hundreds)."
        )


class StreamCollate:
    """Collates stream samples with the dataset's collate, keeping the worker id and position aside.

    A batch from an iterable dataset comes from one worker, so one id and the largest position
    describe where that worker is. A class, not a closure, so DataLoader workers can pickle it.
    """

    def __init__(self, inner: Callable[[list[Any]], dict[str, Any]]) -> None:
        self.inner = inner

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        worker = int(samples[0][WORKER_KEY])
        position = max(int(s[POSITION_KEY]) for s in samples)
        batch = self.inner([{k: v for k, v in s.items() if k not in (WORKER_KEY, POSITION_KEY)} for s in samples])
        batch[WORKER_KEY], batch[POSITION_KEY] = worker, position
        return batch
