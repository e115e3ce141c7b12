"""kNN, linear probe, few-shot and health evaluators on features with known structure."""

from __future__ import annotations

import pytest
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


def _health_by_hand(z: torch.Tensor) -> dict[str, float]:
    """Chen & He's normalised std and Roy & Vetterli's effective rank, element by element."""
    import math

    import numpy as np

    rows = z.double().numpy()
    unit = [r / math.sqrt(sum(v * v for v in r)) for r in rows]
    n, d = len(unit), len(unit[0])
    stds = []
    for j in range(d):
        col = [u[j] for u in unit]
        m = sum(col) / n
        stds.append(math.sqrt(sum((c - m) ** 2 for c in col) / (n - 1)))  # unbiased, as torch.std
    means = [sum(r[j] for r in rows) / n for j in range(d)]
    centred = np.array([[r[j] - means[j] for j in range(d)] for r in rows])
    s = np.linalg.svd(centred, compute_uv=False)
    p = [v / s.sum() for v in s if v > 0]
    std = sum(stds) / d
    return {"embed_std": std, "embed_std_ratio": std * math.sqrt(d),
            "effective_rank": math.exp(-sum(v * math.log(v) for v in p))}


def test_health_metrics_match_their_formulas_and_do_not_depend_on_scale() -> None:
    from ssl_core.evaluators.health import health_metrics

    g = torch.Generator().manual_seed(4)
    z = torch.randn(7, 3, generator=g) * torch.tensor([3.0, 1.0, 0.2]) + torch.tensor([2.0, -1.0, 0.5])
    got, expected = health_metrics(z), _health_by_hand(z)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-4), key
    # effective rank is a property of the directions, not the size: a small copy has the same
    assert effective_rank(z * 0.01) == pytest.approx(expected["effective_rank"], rel=1e-4)


def test_effective_rank_of_a_point_is_0_and_of_a_line_exactly_1() -> None:
    point = torch.tensor([[1.0, 2.0, -0.5]]).repeat(5, 1)  # centred: exactly zero
    assert effective_rank(point) == 0.0
    # on a line through the mean, with exact zero singular values (which 0 log 0 must not turn to NaN)
    line = torch.tensor([[2.0, 0.0, 0.0], [-2.0, 0.0, 0.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    assert effective_rank(line) == pytest.approx(1.0, abs=1e-6)


class _Stream(torch.utils.data.IterableDataset):
    """An unlabelled stream with no length: rows in a fixed order."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __iter__(self):  # type: ignore[no-untyped-def]
        for row in self.x:
            yield {"x": row}


def test_health_reads_the_first_max_samples_of_a_stream_in_batches() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(9, 4, generator=g)
    data = DataModule(train=_Stream(x))
    got = HealthEvaluator(max_samples=7, batch_size=3).evaluate(Identity(4), data)  # batches of 3, 3, 1
    assert got == pytest.approx(_health_by_hand(x[:7]), rel=1e-4)


def test_health_default_max_samples_is_512_rows_of_the_test_split() -> None:
    """Rows 0-510 lie on one axis, row 511 and row 512 on two others: 511, 512 and 513 rows have
    effective rank 1, about 2 and about 3, so only the first 512 give the evaluator's answer."""
    x = torch.zeros(600, 3)
    x[:511, 0] = torch.linspace(-1, 1, 511)
    x[511, 1], x[512:, 2] = 5.0, 5.0
    train = TensorDictDataset(x=torch.randn(600, 3))  # not read: the test split is
    data = DataModule(train=train, eval_test=TensorDictDataset(x=x, label=torch.zeros(600)))
    got = HealthEvaluator().evaluate(Identity(3), data)["effective_rank"]
    assert got == pytest.approx(effective_rank(x[:512]), rel=1e-5)
    assert effective_rank(x[:511]) == pytest.approx(1.0, abs=1e-4)
    assert abs(effective_rank(x[:513]) - got) > 0.1 and abs(got - 1.0) > 0.1


def test_health_runs_without_labels_and_records_no_graph() -> None:
    """Health needs no labels (the runner runs it on unlabelled data, where probes are skipped),
    and evaluation builds no autograd graph (it would hold every batch's activations)."""
    from ssl_core.config import RunConfig
    from ssl_core.runner import evaluate_encoder

    class GradCheck(Identity):
        grad_seen: list[bool] = []

        def forward(self, x):  # type: ignore[no-untyped-def]
            GradCheck.grad_seen.append(torch.is_grad_enabled())
            return x * self.dummy.exp()

    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(6))
    data = DataModule(train=TensorDictDataset(x=x))  # no labels, no evaluation splits
    enc = GradCheck(6)
    metrics = evaluate_encoder(enc, data, RunConfig(evaluators=["health", "knn"]))
    assert set(metrics) == {"embed_std", "embed_std_ratio", "effective_rank"}  # kNN skipped
    assert GradCheck.grad_seen and not any(GradCheck.grad_seen)
