"""A short CPU run of the clip recipe on the built-in Fashion-MNIST pairs beats a random model on
held-out zero-shot, retrieval and kNN."""

from __future__ import annotations

import json
import math

from ssl_core.runner import resolve_config, run_experiment


def test_short_run_beats_random_on_zero_shot_retrieval_and_knn(tmp_path, registry, fashion_root, reevaluate) -> None:
    # Fashion-MNIST (Debian's copy on CI; a stand-in idx folder of real digit images elsewhere):
    # 2,000 official-train pairs, 500 official-test pairs held out, 100 steps of 64
    cfg = resolve_config("clip", modality="image-text", registry=registry, overrides={
        "out": str(tmp_path / "run"),
        "dataset_kwargs": {"root": str(fashion_root), "train_size": 2000, "test_size": 500},
        "evaluators": ["clip_retrieval", "clip_zero_shot", "knn"],
        "train": {"epochs": None, "steps": 100, "batch_size": 64, "progress": False, "health_every": 0,
                  "checkpoint_every": 0},
    })
    outcome = run_experiment(cfg, registry=registry)
    losses = [r["loss"] for r in outcome.train.history]
    assert losses[-1] < losses[0] - 0.5 and losses[0] > math.log(64) - 0.2  # starts at chance, learns
    trained, random = outcome.metrics["trained"], outcome.metrics["random"]
    # measured on Fashion-MNIST: zero-shot 0.466 vs 0.098; R@10 0.156 / 0.203 vs 0.016 / 0.020;
    # kNN 0.552 vs 0.490 (500 test images: one accuracy's standard error is about 0.022)
    assert trained["zeroshot_top1"] > random["zeroshot_top1"] + 0.2, (trained, random)
    for key in ("i2t_r10", "t2i_r10"):
        assert trained[key] > random[key] + 0.07 and trained[key] > 3 * random[key], (key, trained, random)
    assert trained["knn_top1"] > random["knn_top1"] + 0.03, (trained, random)
    # the core's probes run on the exported image tower
    assert trained["knn_top1"] == reevaluate(tmp_path / "run")["knn_top1"], trained
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["trained"] == trained


def test_resumed_clip_run_matches_uninterrupted(tmp_path, digit_data) -> None:
    """Stop after step 4 (checkpoint at 3), resume into a differently initialised model: the loss
    curve and the final towers equal those of an uninterrupted run."""
    import pytest
    import torch

    from ssl_clip.augment import clip_crop
    from ssl_clip.encoder import open_clip_encoder
    from ssl_clip.objective import CLIP
    from ssl_core.config import TrainConfig
    from ssl_core.trainer import Trainer

    def build(seed: int) -> CLIP:
        torch.manual_seed(seed)
        return CLIP(open_clip_encoder(**digit_data.extras["encoder_kwargs"]), clip_crop())

    cfg = TrainConfig(steps=6, epochs=None, batch_size=32, lr=3e-3, progress=False, health_every=0,
                      checkpoint_every=3, log_every=1)
    a = build(0)
    Trainer(a, digit_data, cfg, tmp_path / "a").fit()

    class Stop(Exception):
        pass

    def stop_at_4(record):  # type: ignore[no-untyped-def]
        if record["step"] == 4:
            raise Stop

    b = build(0)
    with pytest.raises(Stop):
        Trainer(b, digit_data, cfg, tmp_path / "b", callbacks=[stop_at_4]).fit()
    c = build(123)
    Trainer(c, digit_data, cfg, tmp_path / "b").fit(resume=True)
    losses = lambda d: [json.loads(line)["loss"] for line in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert losses(tmp_path / "b") == losses(tmp_path / "a") and len(losses(tmp_path / "a")) == 6
    for (name, pa), pc in zip(a.state_dict().items(), c.state_dict().values()):
        assert torch.equal(pa, pc), name
