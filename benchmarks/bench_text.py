"""Text training throughput: sslkit's Trainer vs a plain hand-written PyTorch loop.

For each objective (masked LM, causal LM) both loops train the same architecture (the recipe's
default encoder, built from the same seed) on the same built-in data with the same batch size,
loss, optimiser (AdamW) and gradient clipping. The plain loop is what one would write by hand:
a shuffled DataLoader, forward, cross-entropy, backward, clip, step. Throughput is measured after
warm-up steps; the two loops alternate over several rounds; the table shows the median tokens/s
of each and the median of the per-round ratios (each round's pair ran under similar load).

    python benchmarks/bench_text.py [--steps 12] [--rounds 3] [--batch-size 32]

Prints a table and writes benchmarks/results/text.json. Tokens/s counts every position of every
block (padding included, there is almost none in packed blocks).
"""

from __future__ import annotations

import os

# On a shared CPU, OpenMP threads that spin while waiting slow torch down by orders of magnitude.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from ssl_core.runner import build_data, build_encoder, build_objective, resolve_config  # noqa: E402
from ssl_core.trainer import Trainer  # noqa: E402
from ssl_text.masking import IGNORE_INDEX  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "text.json"


def trainer_tokens_per_s(cfg, steps: int, warmup: int) -> float:  # type: ignore[no-untyped-def]
    """Train ``steps`` steps through sslkit's Trainer; tokens/s over the steps after ``warmup``."""
    data = build_data(cfg)
    torch.manual_seed(cfg.train.seed)
    encoder = build_encoder(cfg, data)
    objective = build_objective(cfg, encoder, data)
    train_cfg = cfg.train
    train_cfg.steps, train_cfg.epochs = steps, None
    train_cfg.log_every, train_cfg.health_every, train_cfg.checkpoint_every, train_cfg.progress = 1, 0, 0, False
    times: list[float] = []
    trainer = Trainer(objective, data, train_cfg, run_dir=None, callbacks=[lambda r: times.append(time.perf_counter())])
    trainer.fit()
    tokens = train_cfg.batch_size * data.extras["encoder_kwargs"]["max_len"]
    return (steps - warmup) * tokens / (times[-1] - times[warmup - 1])


def plain_tokens_per_s(cfg, steps: int, warmup: int) -> float:  # type: ignore[no-untyped-def]
    """The same model, data, batch, loss and optimiser in a hand-written loop."""
    data = build_data(cfg)
    torch.manual_seed(cfg.train.seed)
    model = build_encoder(cfg, data)
    masking = None
    if cfg.objective == "mlm":
        from ssl_text.masking import BertMasking

        masking = BertMasking(**data.extras["augmenter_kwargs"])
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.train.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.train.lr,
                            betas=tuple(cfg.train.betas))
    loader = DataLoader(data.train, batch_size=cfg.train.batch_size, shuffle=True, drop_last=True,
                        collate_fn=data.collate)
    g = torch.Generator().manual_seed(0)
    model.train()
    stamps = []
    it = iter(loader)
    for _ in range(steps):
        batch = next(it)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        if masking is not None:
            corrupted, labels = masking(batch, g)
            h = model.forward_features(corrupted, mask)
            sel = labels != IGNORE_INDEX
            loss = F.cross_entropy(model.lm_logits(h[sel]), labels[sel])
        else:
            h = model.forward_features(ids, mask)[:, :-1]
            valid = mask[:, 1:].bool()
            loss = F.cross_entropy(model.lm_logits(h[valid]), ids[:, 1:][valid])
        loss.backward()
        if cfg.train.clip_grad:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_grad)
        opt.step()
        opt.zero_grad(set_to_none=True)
        stamps.append(time.perf_counter())
    tokens = cfg.train.batch_size * data.extras["encoder_kwargs"]["max_len"]
    return (steps - warmup) * tokens / (stamps[-1] - stamps[warmup - 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=12, help="steps per measurement (after 2 warm-up steps)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating trainer/plain rounds (median reported)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    warmup = 2
    rows = []
    for objective in ("mlm", "clm"):
        overrides = {"train": {"progress": False, "device": "cpu"}}
        if args.batch_size:
            overrides["train"]["batch_size"] = args.batch_size
        cfg = resolve_config(objective, "text", overrides=overrides)
        res: dict[str, list[float]] = {"trainer": [], "plain": []}
        for _ in range(args.rounds):
            res["trainer"].append(trainer_tokens_per_s(resolve_config(objective, "text", overrides=overrides),
                                                       args.steps + warmup, warmup))
            res["plain"].append(plain_tokens_per_s(cfg, args.steps + warmup, warmup))
        t, p = statistics.median(res["trainer"]), statistics.median(res["plain"])
        paired = statistics.median(a / b for a, b in zip(res["trainer"], res["plain"]))
        rows.append({
            "objective": objective, "encoder": cfg.encoder,
            "encoder_kwargs": {k: v for k, v in cfg.encoder_kwargs.items() if k != "special_ids"},
            "batch_size": cfg.train.batch_size, "block_size": cfg.dataset_kwargs.get("block_size", 128),
            "trainer_tokens_per_s": t, "plain_tokens_per_s": p, "trainer_over_plain": paired,
            "trainer_runs": res["trainer"], "plain_runs": res["plain"],
        })
    header = f"{'objective':9s}  {'trainer tok/s':>13s}  {'plain tok/s':>11s}  {'trainer/plain':>13s}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['objective']:9s}  {r['trainer_tokens_per_s']:13.0f}  {r['plain_tokens_per_s']:11.0f}  "
              f"{r['trainer_over_plain']:13.2f}")
    meta = {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "platform": platform.platform(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average": os.getloadavg(), "steps_per_measurement": args.steps, "warmup_steps": warmup,
        "rounds": args.rounds, "device": "cpu",
        "note": "Shared 2-core machine: other jobs ran alongside, so absolute numbers are noisy; "
                "trainer and plain runs alternate so both see similar load.",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
