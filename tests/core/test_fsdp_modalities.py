"""FSDP (``train.strategy=fsdp``, 2 gloo ranks) on objectives that reach into their encoders in
different ways. MLM computes logits from the tied token embedding. wav2vec 2.0 calls
`encoder.extract`/`project` instead of `forward`. CLIP uses open_clip's `encode_image`/`encode_text`
and a learned logit scale. The exported encoder must match a fresh single-process one in names
and shapes.

The three runs share one launch of two ranks, each rank calling ``run_experiment`` as ``ssl run``
does under torchrun; the launch itself (``ssl run --nproc-per-node 2 --strategy fsdp``) is tested
in tests/vision/test_fsdp_cli.py and tests/core/test_launch.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from ssl_core.equivalence import run_ranks

OBJECTIVES = ["mlm", "wav2vec2", "clip"]
SCRIPT = Path(__file__).with_name("_runs_script.py")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, pydoc_corpus: Path) -> Path:
    root = tmp_path_factory.mktemp("fsdp")
    train = {"steps": 3, "epochs": None, "batch_size": 16, "progress": False, "strategy": "fsdp",
             "fsdp_min_params": 1000}
    jobs = [{"objective": o, "save_fresh": True,
             "overrides": {"out": str(root / o), "evaluators": ["health"], "train": train}} for o in OBJECTIVES]
    # MLM on a small corpus: tokenizing WordNet, its default, costs ~25 s of CPU per rank
    jobs[0]["overrides"].update(dataset="textfiles", data=str(pydoc_corpus), dataset_kwargs={"mode": "mlm"})
    (root / "jobs.json").write_text(json.dumps(jobs))
    run_ranks([str(SCRIPT), str(root / "jobs.json")], nproc=2, timeout_s=600,
              env={"SSL_TEXT_CACHE": str(root / "text_cache")}, check=True)
    return root


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_objective_trains_sharded_and_exports_full_weights(objective: str, runs: Path) -> None:
    out = runs / objective
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) >= 2 and all(math.isfinite(v) for v in losses)
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["step"] == 3 and ckpt["optimizer_format"] == "by_name" and ckpt["world_size"] == 2
    fresh = torch.load(out / "fresh_encoder.pt", weights_only=False)
    exported = torch.load(out / "encoder.pt", weights_only=False)["state_dict"]
    assert set(exported) == set(fresh)
    for name, value in fresh.items():
        assert exported[name].shape == value.shape, name
    assert any(not torch.equal(exported[n], fresh[n]) for n in fresh if fresh[n].is_floating_point())
