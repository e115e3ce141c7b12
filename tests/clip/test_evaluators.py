"""Retrieval recall@K and zero-shot classification, checked against encoders with known answers."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torch.nn.functional as F

from ssl_clip.data import TensorPairDataset
from ssl_clip.evaluators import RetrievalEvaluator, ZeroShotEvaluator, recall_at_k
from ssl_core.errors import DataError
from ssl_core.interfaces import DataModule, Encoder


def _text_vec(text: str, dim: int = 32) -> torch.Tensor:
    seed = int(hashlib.sha1(text.encode()).hexdigest()[:8], 16)
    return torch.randn(dim, generator=torch.Generator().manual_seed(seed))


class OracleEncoder(Encoder):
    """Images carry the index of their caption in pixel (0, 0, 0); image features = that caption's.

    With ``shuffle`` the image side uses another caption's vector (a deliberately wrong model).
    """

    modality = "image-text"
    input_key = "image"
    embed_dim = 32

    def __init__(self, captions: list[str], shuffle: bool = False) -> None:
        super().__init__()
        self.captions = captions
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.shift = 7 if shuffle else 0

    def forward(self, x):  # type: ignore[no-untyped-def]
        idx = x[:, 0, 0, 0].long()
        return torch.stack([_text_vec(self.captions[(int(i) + self.shift) % len(self.captions)]) for i in idx])

    def encode_text(self, texts, normalize: bool = False):  # type: ignore[no-untyped-def]
        z = torch.stack([_text_vec(t) for t in texts])
        return F.normalize(z, dim=-1) if normalize else z


def _data(captions: list[str], labels: list[int], class_names: list[str] | None = None) -> DataModule:
    n = len(captions)
    images = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    ds = TensorPairDataset(images, captions, torch.tensor(labels))
    return DataModule(train=ds, eval_train=ds, eval_test=ds, class_names=class_names,
                      num_classes=None if class_names is None else len(class_names),
                      extras={"zero_shot_templates": ["{}"]})


def test_recall_at_k_on_a_known_matrix() -> None:
    sim = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8], [0.7, 0.6, 0.1]])
    pos = torch.eye(3, dtype=torch.bool)
    r = recall_at_k(sim, pos, (1, 2, 3))
    # row 0: rank 1; row 1: rank 2; row 2: rank 3
    assert r == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: pytest.approx(1.0)}


def test_retrieval_perfect_and_wrong_models() -> None:
    caps = [f"caption number {i}" for i in range(40)]
    data = _data(caps, [0] * 40)
    good = RetrievalEvaluator().evaluate(OracleEncoder(caps), data)
    assert good == {f"{d}_r{k}": 1.0 for d in ("i2t", "t2i") for k in (1, 5, 10)}
    bad = RetrievalEvaluator().evaluate(OracleEncoder(caps, shuffle=True), data)
    assert bad["i2t_r1"] == 0.0 and bad["t2i_r1"] == 0.0


def test_retrieval_treats_identical_captions_as_one() -> None:
    caps = ["a cat"] * 5 + ["a dog"] * 5
    data = _data(caps, [0] * 5 + [1] * 5)
    m = RetrievalEvaluator(ks=(1,)).evaluate(OracleEncoder(caps), data)
    assert m == {"i2t_r1": 1.0, "t2i_r1": 1.0}


def test_zero_shot_uses_class_names_and_templates() -> None:
    names = ["cat", "dog", "bird"]
    caps = [names[i % 3] for i in range(30)]
    labels = [i % 3 for i in range(30)]
    data = _data(caps, labels, names)
    assert ZeroShotEvaluator().evaluate(OracleEncoder(caps), data)["zeroshot_top1"] == 1.0
    # permuted class names: every image is "classified" as the wrong class
    wrong = _data(caps, labels, ["dog", "bird", "cat"])
    assert ZeroShotEvaluator().evaluate(OracleEncoder(caps), wrong)["zeroshot_top1"] == 0.0
    with pytest.raises(DataError, match="class names"):
        ZeroShotEvaluator().evaluate(OracleEncoder(caps), _data(caps, labels, None))
    with pytest.raises(DataError, match="must contain"):
        ZeroShotEvaluator(templates=["no slot"]).evaluate(OracleEncoder(caps), data)


def test_evaluators_refuse_an_image_only_encoder() -> None:
    class ImageOnly(Encoder):
        modality, input_key, embed_dim = "vision", "image", 4

        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):  # type: ignore[no-untyped-def]
            return torch.zeros(x.shape[0], 4)

    data = _data(["a", "b"], [0, 1], ["a", "b"])
    for ev in (RetrievalEvaluator(), ZeroShotEvaluator()):
        with pytest.raises(DataError, match="encode_text"):
            ev.evaluate(ImageOnly(), data)
