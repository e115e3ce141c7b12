"""FSDP through `ssl run --nproc-per-node 2 --strategy fsdp` on objectives that reach into their
encoders in different ways. MLM computes logits from the tied token embedding. wav2vec 2.0 calls
`encoder.extract`/`project` instead of `forward`. CLIP uses open_clip's `encode_image`/`encode_text`
and a learned logit scale. The exported encoder must match a fresh single-process one in names
and shapes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ssl_core.runner import build_data, build_encoder, resolve_config


@pytest.mark.parametrize("objective", ["mlm", "wav2vec2", "clip"])
def test_objective_trains_sharded_and_exports_full_weights(objective: str, tmp_path: Path) -> None:
    out = tmp_path / objective
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    cmd = [sys.executable, "-m", "ssl_core.cli", "run", "-o", objective, "--nproc-per-node", "2",
           "--strategy", "fsdp", "--steps", "3", "--batch-size", "16", "--no-progress", "--out", str(out),
           "--set", "evaluators=[health]", "--set", "train.fsdp_min_params=1000"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) >= 2 and all(math.isfinite(v) for v in losses)
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["step"] == 3 and ckpt["optimizer_format"] == "by_name"
    cfg = resolve_config(objective)
    fresh = build_encoder(cfg, build_data(cfg)).state_dict()
    exported = torch.load(out / "encoder.pt", weights_only=False)["state_dict"]
    assert set(exported) == set(fresh)
    for name, value in fresh.items():
        assert exported[name].shape == value.shape, name
    assert any(not torch.equal(exported[n], fresh[n]) for n in fresh if fresh[n].is_floating_point())
