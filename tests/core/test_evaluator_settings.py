"""Every evaluator setting changes the answer on data built so that it must.

The features are placed by hand (an identity encoder passes them through), so the right answer
for each setting is known in advance: kNN's ``exp(cos / T)`` weighting and its temperature,
few-shot's ``shots`` and episode averaging, and the linear probe's standardisation, weight decay
and fitted solution (checked against scikit-learn's logistic regression on the same objective).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ssl_core.data import TensorDictDataset
from ssl_core.evaluators import FewShotEvaluator, KNNEvaluator, LinearProbeEvaluator
from ssl_core.evaluators.few_shot import few_shot_accuracy
from ssl_core.evaluators.linear_probe import fit_linear_probe
from ssl_core.interfaces import DataModule, Encoder


class Identity(Encoder):
    """The features are the data."""

    modality = "toy"
    input_key = "x"

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.embed_dim = dim
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _data(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor) -> DataModule:
    tr, te = TensorDictDataset(x=xtr, label=ytr), TensorDictDataset(x=xte, label=yte)
    return DataModule(train=tr, eval_train=tr, eval_test=te, num_classes=int(max(ytr.max(), yte.max())) + 1)


def _at_cosine(c: float, phi: float) -> list[float]:
    """A unit vector in 3-d with cosine ``c`` to the x axis, turned by ``phi`` around it."""
    s = math.sqrt(1 - c * c)
    return [c, s * math.cos(phi), s * math.sin(phi)]


def _knn_data() -> DataModule:
    """A test point on the x axis whose 5 nearest neighbours are 2 of class 0 at cosine 0.99 and
    3 of class 1 at cosine 0.7; 4 more class-0 points lie far away (cosine -0.5).

    Weighted by ``exp(cos / 0.07)`` the two close points win (2 e^14.1 > 3 e^10); with uniform
    votes, or weights ``exp(cos / T)`` for T >= 1, the three class-1 points do.
    """
    close = [_at_cosine(0.99, p) for p in (0.0, math.pi)]
    middle = [_at_cosine(0.7, p) for p in (0.3, 0.3 + 2 * math.pi / 3, 0.3 + 4 * math.pi / 3)]
    far = [_at_cosine(-0.5, p) for p in (0.1, 1.7, 3.3, 4.9)]
    xtr = torch.tensor(close + middle + far)
    ytr = torch.tensor([0, 0, 1, 1, 1, 0, 0, 0, 0])
    return _data(xtr, ytr, torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([0]))


def test_knn_votes_are_weighted_by_exp_cosine_over_temperature() -> None:
    data, enc = _knn_data(), Identity(3)
    assert KNNEvaluator(k=5, temperature=0.07).evaluate(enc, data)["knn_top1"] == 1.0
    # a high temperature flattens the weights towards a majority vote: the 3 class-1 points win
    assert KNNEvaluator(k=5, temperature=1.0).evaluate(enc, data)["knn_top1"] == 0.0
    assert KNNEvaluator(k=5, temperature=10.0).evaluate(enc, data)["knn_top1"] == 0.0
    # k is honoured: the two nearest alone are class 0 at any temperature
    assert KNNEvaluator(k=2, temperature=10.0).evaluate(enc, data)["knn_top1"] == 1.0
    # the defaults (k=20, T=0.07) reach the far points too; they carry almost no weight
    assert KNNEvaluator().evaluate(enc, data)["knn_top1"] == 1.0
    # ...but with T = 10 they are 4 more class-0 votes of nearly equal weight: 6 against 3
    assert KNNEvaluator(k=20, temperature=10.0).evaluate(enc, data)["knn_top1"] == 1.0
    assert KNNEvaluator(k=6, temperature=10.0).evaluate(enc, data)["knn_top1"] == 0.0


def _unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_few_shot_prototypes_use_exactly_shots_examples_per_class() -> None:
    """Class 0 has examples at 0 and 90 degrees, class 1 one at 30 degrees. The test point at 45
    degrees is class 0: the 2-shot prototype of class 0 points exactly at it, but either 1-shot
    prototype (0 or 90 degrees) is further away than class 1's (15 degrees)."""
    xtr, ytr = torch.tensor([_unit(0), _unit(90), _unit(30)]), torch.tensor([0, 0, 1])
    xte, yte = torch.tensor([_unit(45), _unit(30)]), torch.tensor([0, 1])
    scores = FewShotEvaluator(shots=(1, 2), episodes=6).evaluate(Identity(2), _data(xtr, ytr, xte, yte))
    assert scores == {"fewshot_1shot": 0.5, "fewshot_2shot": 1.0}


def test_few_shot_averages_over_episodes_of_random_draws() -> None:
    """Class 0's examples are at 40 and -90 degrees; a 1-shot episode that draws the first gets the
    test point at 45 degrees right (class 1 sits at 0 degrees), one that draws the second gets it
    wrong, so the mean over episodes lies strictly between 0 and 1 and is reproducible."""
    xtr, ytr = torch.tensor([_unit(40), _unit(-90), _unit(0)]), torch.tensor([0, 0, 1])
    xte, yte = torch.tensor([_unit(45)]), torch.tensor([0])
    acc = few_shot_accuracy(xtr, ytr, xte, yte, shots=1, episodes=40, seed=0)
    assert 0.25 < acc < 0.75
    assert acc == few_shot_accuracy(xtr, ytr, xte, yte, shots=1, episodes=40, seed=0)
    assert few_shot_accuracy(xtr, ytr, xte, yte, shots=2, episodes=5) == 0.0  # mean of 40 and -90 loses to 0
    picked = [few_shot_accuracy(xtr, ytr, xte, yte, shots=1, episodes=1, seed=s) for s in range(20)]
    assert set(picked) == {0.0, 1.0}  # each episode draws again


def _probe_problem(n: int, seed: int, tiny_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """3 classes told apart by feature 0 (at ``tiny_scale``) amid 4 large, label-free features."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    informative = (y.float() - 1.0 + 0.25 * torch.randn(n, generator=g)) * tiny_scale
    nuisance = 5.0 * torch.randn(n, 4, generator=g)
    return torch.cat([informative[:, None], nuisance], dim=1), y


def test_linear_probe_solves_the_regularised_logistic_regression() -> None:
    """``mean CE + wd ||W||^2`` on standardised features is scikit-learn's multinomial logistic
    regression with ``C = 1 / (2 wd N)`` (intercept not penalised): same probabilities."""
    from sklearn.linear_model import LogisticRegression

    x, y = _probe_problem(150, seed=0)
    wd = 0.01
    w, b, mean, std = fit_linear_probe(x, y, 3, epochs=500, weight_decay=wd)
    torch.testing.assert_close(mean, x.mean(0))
    torch.testing.assert_close(std, x.std(0))
    xs = ((x - mean) / std).double().numpy()
    ref = LogisticRegression(C=1.0 / (2 * wd * len(y)), tol=1e-10, max_iter=10_000).fit(xs, y.numpy())
    ours = torch.softmax(torch.from_numpy(xs).float() @ w + b, dim=1)
    torch.testing.assert_close(ours, torch.from_numpy(ref.predict_proba(xs)).float(), atol=2e-3, rtol=0)


def test_linear_probe_standardises_features() -> None:
    """The class lives in a feature 200x smaller than the noise: after standardisation a linear
    probe separates it, while kNN, which sees the raw geometry, is at chance."""
    xtr, ytr = _probe_problem(300, seed=1, tiny_scale=5e-3)
    xte, yte = _probe_problem(300, seed=2, tiny_scale=5e-3)
    data, enc = _data(xtr, ytr, xte, yte), Identity(5)
    assert LinearProbeEvaluator().evaluate(enc, data)["linear_top1"] > 0.9
    assert KNNEvaluator().evaluate(enc, data)["knn_top1"] < 0.5


def test_linear_probe_weight_decay_is_honoured() -> None:
    """Training data 4:1 imbalanced, test data balanced, one informative feature. A light weight
    decay separates the classes; a heavy one shrinks the weights until only the (unpenalised)
    bias speaks and every test point gets the majority class: 50%."""
    def problem(counts: tuple[int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        y = torch.cat([torch.full((c,), i) for i, c in enumerate(counts)])
        informative = 2 * y.float() - 1 + 0.5 * torch.randn(len(y), generator=g)
        return torch.cat([informative[:, None], torch.randn(len(y), 3, generator=g)], dim=1), y

    data, enc = _data(*problem((240, 60), 0), *problem((100, 100), 1)), Identity(4)
    assert LinearProbeEvaluator(weight_decay=1e-4).evaluate(enc, data)["linear_top1"] > 0.9
    assert LinearProbeEvaluator(weight_decay=10.0).evaluate(enc, data)["linear_top1"] == 0.5


@pytest.mark.parametrize("build,key", [(KNNEvaluator, "knn_top1"), (LinearProbeEvaluator, "linear_top1"),
                                       (lambda: FewShotEvaluator(shots=(5,)), "fewshot_5shot")])
def test_probes_are_at_chance_on_label_free_features(build, key) -> None:  # type: ignore[no-untyped-def]
    """The other side of the bounds in test_evaluators.py: with labels independent of the
    features no evaluator reaches far above 1/4 (400 samples, 4 classes)."""
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(400, 16, generator=g), torch.randint(0, 4, (400,), generator=g)
    acc = build().evaluate(Identity(16), _data(x[:200], y[:200], x[200:], y[200:]))[key]
    assert 0.1 < acc < 0.4, (key, acc)


def _loop_knn(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, k: int, t: float, classes: int) -> list[int]:
    """Wu et al. 2018 one test row at a time: cosine to every training row, the k most similar
    vote ``exp(cos / t)`` for their class."""
    preds = []
    for q in xte:
        cos = [float(q @ x) / float(q.norm() * x.norm()) for x in xtr]
        top = sorted(range(len(cos)), key=lambda i: -cos[i])[:k]
        votes = [0.0] * classes
        for i in top:
            votes[int(ytr[i])] += math.exp(cos[i] / t)
        preds.append(max(range(classes), key=lambda c: votes[c]))
    return preds


def test_knn_predict_matches_a_loop_on_unnormalised_rows_in_chunks_with_the_dino_defaults() -> None:
    from ssl_core.evaluators.knn import weighted_knn_predict

    g = torch.Generator().manual_seed(7)
    xtr = torch.randn(40, 6, generator=g) * torch.rand(40, 1, generator=g) * 10  # norms differ by row
    ytr = torch.randint(0, 4, (40,), generator=g)
    xte = torch.randn(9, 6, generator=g) * torch.rand(9, 1, generator=g) * 10
    expected = _loop_knn(xtr, ytr, xte, k=20, t=0.07, classes=4)
    assert weighted_knn_predict(xtr, ytr, xte).tolist() == expected  # defaults k=20, T=0.07
    assert weighted_knn_predict(xtr, ytr, xte, chunk=2).tolist() == expected  # 5 chunks, last one short
    assert weighted_knn_predict(xtr, ytr, xte, k=3, temperature=0.5, num_classes=4).tolist() == _loop_knn(
        xtr, ytr, xte, k=3, t=0.5, classes=4)
    knn = KNNEvaluator()
    assert (knn.k, knn.temperature) == (20, 0.07)  # the protocol of Wu et al. and DINO


def test_knn_infers_the_classes_when_the_data_does_not_say() -> None:
    g = torch.Generator().manual_seed(8)
    xtr, ytr = torch.randn(30, 5, generator=g), torch.arange(30) % 3
    xte = xtr[:6] + 0.01 * torch.randn(6, 5, generator=g)
    tr, te = TensorDictDataset(x=xtr, label=ytr), TensorDictDataset(x=xte, label=ytr[:6])
    data = DataModule(train=tr, eval_train=tr, eval_test=te, num_classes=None)
    assert KNNEvaluator(k=1).evaluate(Identity(5), data)["knn_top1"] == 1.0


def test_knn_default_k_is_20_the_20th_neighbour_decides() -> None:
    """21 training rows at decreasing cosines to the test row (weights within 2% of each other at
    T = 1), labelled 0, 1, 0, 1, ... for the first 18, then 1, 0, 1: the 19 nearest vote 10:9
    for class 1, the 20 nearest 10:10 with class 0 nearer on average (class 0), the 21 nearest
    11:10 for class 1. So only k = 20 answers 0."""
    from ssl_core.evaluators.knn import weighted_knn_predict

    angles = torch.acos(0.95 - 0.001 * torch.arange(1, 22, dtype=torch.float64))
    xtr = torch.stack([angles.cos(), angles.sin()], dim=1).float()
    ytr = torch.tensor([i % 2 for i in range(18)] + [1, 0, 1])
    xte = torch.tensor([[1.0, 0.0]])
    for k, expected in [(19, 1), (20, 0), (21, 1)]:
        assert _loop_knn(xtr, ytr, xte, k=k, t=1.0, classes=2) == [expected]
        assert weighted_knn_predict(xtr, ytr, xte, k=k, temperature=1.0).tolist() == [expected]
    assert weighted_knn_predict(xtr, ytr, xte, temperature=1.0).tolist() == [0]  # the default k


def test_few_shot_compares_cosines_to_unit_prototypes_and_keeps_the_default_shots() -> None:
    # rows of very different lengths and directions: only cosines to unit prototypes (each
    # feature normalised over its own row) put every test row with its class
    xtr = torch.tensor([[1.0, 0.5], [1.0, 0.3], [1.0, 50.0], [2.0, 60.0]])
    ytr = torch.tensor([0, 0, 1, 1])
    xte = torch.tensor([[1.0, 0.6], [0.2, 1.0], [30.0, 3.0]])
    yte = torch.tensor([0, 1, 0])
    assert few_shot_accuracy(xtr, ytr, xte, yte, shots=2, episodes=1) == 1.0
    fs = FewShotEvaluator()
    assert (fs.shots, fs.episodes) == ((1, 5), 20)


def test_linear_probe_keeps_a_constant_feature_finite() -> None:
    """A feature with no spread (std 0) is divided by the 1e-6 floor, not by 0: no NaN, and the
    informative feature still separates the classes."""
    y = torch.arange(40) % 2
    x = torch.stack([2 * y.float() - 1 + 0.1 * torch.randn(40, generator=torch.Generator().manual_seed(0)),
                     torch.full((40,), 3.0)], dim=1)
    w, b, mean, std = fit_linear_probe(x, y, 2, epochs=50)
    assert float(std[1]) == pytest.approx(1e-6)
    assert torch.isfinite(w).all() and torch.isfinite(b).all()
    assert torch.equal((((x - mean) / std) @ w + b).argmax(1), y)


def _overlapping_classes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """3 classes that overlap (so the regularised optimum is finite and well conditioned), on 3
    features with an offset and very different scales, so standardising them matters."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centres = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    x = centres[y] + 0.8 * torch.randn(n, 3, generator=g)
    return x * torch.tensor([0.01, 3.0, 40.0]) + torch.tensor([5.0, -2.0, 100.0]), y


@pytest.mark.parametrize("weight_decay", [None, 0.05])
def test_linear_probe_fit_is_the_stationary_point_of_mean_cross_entropy_plus_l2(weight_decay) -> None:  # type: ignore[no-untyped-def]
    """At the minimum of ``mean_i CE(z_i W + b, y_i) + wd ||W||^2`` on z = (x - mean) / std (the
    objective is strictly convex) both gradients vanish, written out by hand:
    ``Z^T (P - Y) / N + 2 wd W = 0`` and ``sum_i (P - Y)_i / N = 0`` (the bias is not penalised).
    ``None`` runs the defaults (wd = 1e-4, 200 L-BFGS iterations). Fast stand-in for the
    scikit-learn comparison above."""
    x, y = _overlapping_classes(60, seed=4)
    wd = 1e-4 if weight_decay is None else weight_decay
    kwargs = {} if weight_decay is None else {"weight_decay": weight_decay}
    w, b, mean, std = fit_linear_probe(x, y, 3, **kwargs)
    z = ((x - x.mean(0)) / x.std(0)).double()
    torch.testing.assert_close(mean, x.mean(0))
    torch.testing.assert_close(std, x.std(0))
    p = torch.softmax(z @ w.double() + b.double(), dim=1)
    residual = (p - torch.eye(3, dtype=torch.float64)[y]) / len(y)
    # L-BFGS stops when the loss changes by < 1e-9: gradients ~1e-4 remain; a wrong objective
    # (sign, scale, penalty, standardisation) leaves gradients of 1e-2 and more
    assert float((z.T @ residual + 2 * wd * w.double()).abs().max()) < 1e-3
    assert float(residual.sum(0).abs().max()) < 1e-3
    assert float(w.abs().max()) > 0.5  # a real fit, not the start


def test_linear_probe_starts_from_small_seeded_weights() -> None:
    """On all-zero features (standardised to 0 by the 1e-6 floor) and no weight decay, W gets no
    gradient, so it stays at its start, N(0, 0.01^2) from seed 0; the bias alone learns the class
    frequencies: softmax(b) = (1/2, 1/3, 1/6)."""
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    w, b, _, _ = fit_linear_probe(torch.zeros(6, 4), y, 3, weight_decay=0.0)
    torch.testing.assert_close(w, torch.randn(4, 3, generator=torch.Generator().manual_seed(0)) * 0.01)
    torch.testing.assert_close(torch.softmax(b, 0), torch.tensor([1 / 2, 1 / 3, 1 / 6]), atol=1e-3, rtol=0)


def test_linear_probe_standardises_test_rows_with_the_training_statistics_and_infers_the_classes() -> None:
    """Features far from 0 with spreads from 0.01 to 40, and a data module that does not name its
    classes: the probe must standardise the test rows by the training mean and std and count 3
    classes from the labels to reach the accuracy a hand-built classifier gets on these rows."""
    xtr, ytr = _overlapping_classes(90, seed=5)
    xte, yte = _overlapping_classes(60, seed=6)
    tr, te = TensorDictDataset(x=xtr, label=ytr), TensorDictDataset(x=xte, label=yte)
    data = DataModule(train=tr, eval_train=tr, eval_test=te, num_classes=None)
    scale, offset = torch.tensor([0.01, 3.0, 40.0]), torch.tensor([5.0, -2.0, 100.0])
    nearest_centre = ((xte - offset) / scale).argmax(1)  # the Bayes rule of the generator
    bayes = float((nearest_centre == yte).float().mean())
    acc = LinearProbeEvaluator().evaluate(Identity(3), data)["linear_top1"]
    assert bayes > 0.7 and acc >= bayes - 0.1, (acc, bayes)


def test_linear_probe_defaults() -> None:
    """The documented protocol: 200 L-BFGS iterations from step 0.1, weight decay 1e-4, seed 0."""
    import inspect

    probe = LinearProbeEvaluator()
    assert (probe.epochs, probe.weight_decay) == (200, 1e-4)
    defaults = {k: p.default for k, p in inspect.signature(fit_linear_probe).parameters.items()
                if p.default is not inspect.Parameter.empty}
    assert defaults == {"epochs": 200, "lr": 0.1, "weight_decay": 1e-4, "seed": 0}
