"""Audio throughput: the sslkit Trainer against a plain hand-written PyTorch loop.

Both paths train the same objective (wav2vec 2.0 and/or HuBERT on the same encoder preset) on
the same built-in spoken-word batches with the same optimiser, LR schedule and gradient
clipping; the plain loop is what a user would write by hand (DataLoader -> training_step ->
backward -> clip -> AdamW step). The difference is the Trainer's own overhead (per-step seeding,
schedules, device moves, logging, NaN checks).

Throughput is reported as audio-seconds per second: the valid (un-padded, cropped) audio each
step trains on, divided by wall time. Each measurement first runs ``--warmup`` untimed steps;
the Trainer and plain runs alternate ``--repeats`` times and the best of each is kept, which
damps noise from other processes on a shared machine.

    python benchmarks/bench_audio.py                      # CPU defaults: small preset, 20 steps
    python benchmarks/bench_audio.py --size base --batch-size 8 --steps 50 --device cuda

Prints a table and writes benchmarks/results/audio.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from ssl_core.config import TrainConfig
from ssl_core.data import EpochSampler, move_to_device
from ssl_core.interfaces import DataModule, StepInfo
from ssl_core.optim import apply_schedules, build_optimizer
from ssl_core.trainer import Trainer, resolve_device, step_seed

RESULTS = Path(__file__).parent / "results" / "audio.json"


class AudioMeter:
    """Wraps a collate function and adds up the audio seconds (after the crop) it hands out."""

    def __init__(self, collate: Any, crop_samples: int, sample_rate: int = 16_000) -> None:
        self.collate, self.crop, self.sr = collate, crop_samples, sample_rate
        self.seconds = 0.0
        self.clips = 0

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collate(samples)
        self.seconds += float(batch["lengths"].clamp(max=self.crop).sum()) / self.sr
        self.clips += len(samples)
        return batch


def build(objective: str, size: str, data: DataModule) -> Any:
    """The objective with its registered recipe kwargs, on a fresh ``size`` encoder."""
    from ssl_core.registry import get_registry

    reg = get_registry()
    spec = reg.get("objective", objective, modality="audio")
    recipe = spec.recipe
    torch.manual_seed(0)
    encoder = reg.get("encoder", recipe["encoder"]).build(size=size)
    aug_kwargs = {**data.extras.get("augmenter_kwargs", {})}
    augmenter = reg.get("augmenter", recipe["augmenter"]).build(**aug_kwargs)
    kwargs = dict(recipe.get("objective_kwargs", {}))
    if objective == "hubert":
        kwargs["target_dataset"] = data.train
    return spec.factory(encoder=encoder, augmenter=augmenter, **kwargs)


def train_config(args: argparse.Namespace, steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, epochs=None, batch_size=args.batch_size, lr=1e-3, weight_decay=0.01,
                       warmup_fraction=0.08, betas=[0.9, 0.98], clip_grad=10.0, device=args.device,
                       precision=args.precision, log_every=10, checkpoint_every=0, health_every=0,
                       progress=False, seed=0)


def run_trainer(args: argparse.Namespace, data: DataModule, meter: AudioMeter) -> dict[str, float]:
    objective = build(args.objective_name, args.size, data)
    if args.warmup:
        Trainer(objective, data, train_config(args, args.warmup)).fit()
    meter.seconds, meter.clips = 0.0, 0
    trainer = Trainer(objective, data, train_config(args, args.steps))
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    result = trainer.fit()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "audio_s": meter.seconds, "clips": meter.clips, "final_loss": result.final_loss}


def run_plain(args: argparse.Namespace, data: DataModule, meter: AudioMeter) -> dict[str, float]:
    """The hand-written loop: same objective, optimiser groups, schedule and clipping."""
    device = resolve_device(args.device)
    objective = build(args.objective_name, args.size, data).to(device)
    cfg = train_config(args, args.steps)
    optimizer = build_optimizer(objective.param_groups(cfg.weight_decay), cfg)
    gen = torch.Generator(device=device)
    amp = torch.bfloat16 if args.precision == "bf16" else None

    def loop(steps: int) -> float:
        # the same sampler as the Trainer's, so both paths train on the very same batches
        sampler = EpochSampler(len(data.train), cfg.seed, cfg.batch_size)  # type: ignore[arg-type]
        loader = torch.utils.data.DataLoader(data.train, batch_size=cfg.batch_size, sampler=sampler,
                                             drop_last=True, collate_fn=data.collate)
        it, loss = iter(loader), torch.zeros(())
        objective.train()
        for step in range(steps):
            try:
                batch = next(it)
            except StopIteration:
                sampler.epoch += 1
                it = iter(loader)
                batch = next(it)
            gen.manual_seed(step_seed(0, step))
            apply_schedules(optimizer, cfg, step, steps)
            batch = move_to_device(batch, device)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = objective.training_step(batch, StepInfo(step, steps, 0, gen, device))["loss"]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(objective.parameters(), cfg.clip_grad)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    if args.warmup:
        loop(args.warmup)
    meter.seconds, meter.clips = 0.0, 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    final = loop(args.steps)
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "audio_s": meter.seconds, "clips": meter.clips, "final_loss": final}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objectives", default="wav2vec2,hubert", help="comma-separated: wav2vec2, hubert")
    parser.add_argument("--size", default="small", help="encoder preset: tiny, small, base, large")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before each measurement")
    parser.add_argument("--repeats", type=int, default=2, help="alternating Trainer/plain rounds (best kept)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from ssl_audio.data import spoken_words

    data = spoken_words()
    crop = int(data.extras["augmenter_kwargs"]["crop_seconds"] * 16_000)
    meter = AudioMeter(data.collate, crop)
    data.collate = meter
    load_before = os.getloadavg()
    rows = []
    for name in args.objectives.split(","):
        args.objective_name = name.strip()
        best: dict[str, dict[str, float]] = {}
        for _ in range(args.repeats):
            for path, fn in (("trainer", run_trainer), ("plain", run_plain)):
                r = fn(args, data, meter)
                r["audio_s_per_s"] = r["audio_s"] / r["wall_s"]
                r["clips_per_s"] = r["clips"] / r["wall_s"]
                if path not in best or r["audio_s_per_s"] > best[path]["audio_s_per_s"]:
                    best[path] = r
        overhead = 100.0 * (best["plain"]["audio_s_per_s"] / best["trainer"]["audio_s_per_s"] - 1.0)
        rows.append({"objective": args.objective_name, "trainer": best["trainer"], "plain": best["plain"],
                     "trainer_overhead_pct": overhead})

    device = resolve_device(args.device)
    report = {
        "benchmark": "audio-seconds/s, sslkit Trainer vs plain PyTorch loop (same objective, batches, optimiser)",
        "data": data.description, "encoder_size": args.size, "batch_size": args.batch_size,
        "timed_steps": args.steps, "warmup_steps": args.warmup, "repeats": args.repeats,
        "crop_seconds": crop / 16_000, "precision": args.precision,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)",
        "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "results": rows,
    }
    print(f"\n{'objective':<10} {'path':<8} {'audio-s/s':>10} {'clips/s':>8} {'wall s':>8} {'audio s':>8} {'loss':>8}")
    for row in rows:
        for path in ("trainer", "plain"):
            r = row[path]
            print(f"{row['objective']:<10} {path:<8} {r['audio_s_per_s']:>10.2f} {r['clips_per_s']:>8.2f} "
                  f"{r['wall_s']:>8.2f} {r['audio_s']:>8.1f} {r['final_loss']:>8.3f}")
        print(f"{'':<10} Trainer overhead vs plain loop: {row['trainer_overhead_pct']:+.1f}%")
    print(f"(device {report['device']}, {report['threads']} threads, load average before/after "
          f"{load_before[0]:.1f}/{report['load_average_after'][0]:.1f})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
