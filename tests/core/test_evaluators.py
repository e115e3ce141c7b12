"""kNN, linear probe, few-shot and health evaluators on features with known structure."""

from __future__ import annotations

import torch
from torch import nn

from ssl_core.data import TensorDictDataset
from ssl_core.evaluators import (
    FewShotEvaluator, HealthEvaluator, KNNEvaluator, LinearProbeEvaluator, effective_rank, embedding_std,
)
from ssl_core.evaluators.knn import weighted_knn_predict
from ssl_core.interfaces import DataModule, Encoder


class Identity(Encoder):
    modality = "toy"
    input_key = "x"

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.embed_dim = dim
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):  # type: ignore[no-untyped-def]
        return x


def _data(separable: bool, n: int = 400, dim: int = 16, classes: int = 4) -> DataModule:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % classes
    centres = torch.randn(classes, dim, generator=g) * (4.0 if separable else 0.0)
    x = centres[y] + torch.randn(n, dim, generator=g)
    perm = torch.randperm(n, generator=g)
    a, b = perm[: n // 2], perm[n // 2:]
    tr, te = TensorDictDataset(x=x[a], label=y[a]), TensorDictDataset(x=x[b], label=y[b])
    return DataModule(train=tr, eval_train=tr, eval_test=te, num_classes=classes)


def test_probes_separate_structure_from_noise() -> None:
    enc = Identity(16)
    for evaluator, key in [(KNNEvaluator(), "knn_top1"), (LinearProbeEvaluator(), "linear_top1"),
                           (FewShotEvaluator(shots=(5,)), "fewshot_5shot")]:
        good = evaluator.evaluate(enc, _data(True))[key]
        chance = evaluator.evaluate(enc, _data(False))[key]
        assert good > 0.95, (key, good)
        assert chance < 0.45, (key, chance)


def test_knn_weights_votes_by_similarity() -> None:
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    # the single nearest neighbour is class 1, but two class-0 points are almost as close
    test = torch.tensor([[0.3, 0.6]])
    assert weighted_knn_predict(train, labels, test, k=3, temperature=1.0).item() == 0
    assert weighted_knn_predict(train, labels, test, k=1).item() == 1


def test_health_detects_collapse() -> None:
    g = torch.Generator().manual_seed(0)
    spread = torch.randn(512, 32, generator=g)
    collapsed = torch.ones(512, 32) + 1e-4 * torch.randn(512, 32, generator=g)
    assert embedding_std(spread) > 0.8 / 32**0.5
    assert embedding_std(collapsed) < 1e-3
    rank2 = torch.randn(512, 2, generator=g) @ torch.randn(2, 32, generator=g)
    assert 1.0 <= effective_rank(rank2) <= 2.05
    assert effective_rank(spread) > 25
    metrics = HealthEvaluator().evaluate(Identity(32), DataModule(train=TensorDictDataset(x=spread, label=torch.zeros(512))))
    assert metrics["effective_rank"] > 25


def test_evaluators_leave_encoder_mode_and_weights_alone() -> None:
    enc = Identity(16).train()
    before = enc.dummy.detach().clone()
    KNNEvaluator().evaluate(enc, _data(True))
    assert enc.training and torch.equal(enc.dummy, before)


def test_evaluators_of_one_run_share_feature_extraction() -> None:
    from ssl_core.config import RunConfig
    from ssl_core.runner import evaluate_encoder

    class Counting(Identity):
        calls = 0

        def forward(self, x):  # type: ignore[no-untyped-def]
            Counting.calls += x.shape[0]
            return x

    data, enc = _data(True), Counting(16)
    cfg = RunConfig(evaluators=["knn", "linear_probe", "few_shot"])
    shared = evaluate_encoder(enc, data, cfg)
    assert Counting.calls == 400  # each of the 400 rows embedded once for three evaluators
    Counting.calls = 0
    separate = {}
    for ev in (KNNEvaluator(), LinearProbeEvaluator(), FewShotEvaluator()):  # no sharing outside a run
        separate.update(ev.evaluate(enc, data))
    assert Counting.calls == 3 * 400
    assert shared == separate
