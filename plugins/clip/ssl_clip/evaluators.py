"""Image-text evaluators: zero-shot classification and cross-modal retrieval recall@K.

Both receive only the encoder and the DataModule, so the encoder must expose ``encode_text``
besides ``embed`` (image features), as :class:`ssl_clip.encoder.OpenCLIPEncoder` does.

- Zero-shot (Radford et al., 2021, Sec. 3.1.4): each class gets a text classifier weight, the
  normalised mean of the embeddings of its name in several prompt templates ("a photo of a
  {}."); an image is assigned the class whose weight is most cosine-similar.
- Retrieval (the Flickr30k/MS-COCO protocol of Karpathy & Fei-Fei, 2015, used by CLIP Sec. 3.1.5):
  recall@K over held-out pairs, image->text and text->image. Identical caption strings are one
  caption (their embeddings are identical, so ranking them apart would be arbitrary); a query
  counts as a hit when any of its true partners is among the top K.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ssl_core.data import default_collate, move_to_device
from ssl_core.errors import DataError
from ssl_core.interfaces import DataModule, Encoder, Evaluator
from ssl_clip.data import GENERIC_ZERO_SHOT_TEMPLATES


def _check_text_tower(encoder: Encoder, evaluator: str) -> None:
    if not callable(getattr(encoder, "encode_text", None)):
        raise DataError(
            f"The {evaluator} evaluator needs an image-text encoder with encode_text() (e.g. 'open_clip'); "
            f"got {type(encoder).__name__} (modality '{encoder.modality}'). Drop it from the evaluators list."
        )


def _device(encoder: Encoder) -> torch.device:
    return next(encoder.parameters()).device


@torch.no_grad()
def embed_pairs(encoder: Encoder, dataset: Dataset, data: DataModule, batch_size: int = 256,
                max_pairs: int | None = None) -> tuple[Tensor, list[str], Tensor | None]:
    """L2-normalised image features ``[N, D]``, the captions, and labels (or ``None``) of ``dataset``."""
    n = len(dataset)  # type: ignore[arg-type]
    if max_pairs is not None and n > max_pairs:
        dataset = torch.utils.data.Subset(dataset, range(max_pairs))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=data.collate or default_collate)
    device = _device(encoder)
    feats, captions, labels = [], [], []
    for batch in loader:
        if "caption" not in batch:
            raise DataError(f"Evaluation batches have no 'caption' field (keys {sorted(batch)}); retrieval needs "
                            "image-caption pairs.")
        batch = move_to_device(batch, device)
        feats.append(F.normalize(encoder.embed(batch).float(), dim=-1).cpu())
        captions += list(batch["caption"])
        if data.label_key in batch:
            labels.append(torch.as_tensor(batch[data.label_key]).cpu())
    return torch.cat(feats), captions, (torch.cat(labels).long() if labels else None)


@torch.no_grad()
def embed_texts(encoder: Any, texts: Sequence[str], batch_size: int = 256) -> Tensor:
    """L2-normalised text features ``[len(texts), D]``."""
    out = [encoder.encode_text(list(texts[i:i + batch_size]), normalize=True).float().cpu()
           for i in range(0, len(texts), batch_size)]
    return torch.cat(out) if out else torch.zeros(0)


def recall_at_k(sim: Tensor, positives: Tensor, ks: Sequence[int]) -> dict[int, float]:
    """Fraction of queries (rows of ``sim``) with a positive (``positives`` row, bool) in their top K."""
    order = sim.argsort(dim=1, descending=True)
    hits_sorted = positives.gather(1, order)
    out = {}
    for k in ks:
        out[k] = hits_sorted[:, :min(k, sim.shape[1])].any(dim=1).float().mean().item()
    return out


class RetrievalEvaluator(Evaluator):
    """Image->text and text->image recall@K on the held-out pairs (``data.eval_test``)."""

    name = "clip_retrieval"
    needs_labels = False  # held-out pairs are enough: runs on unlabelled CSVs/shards too
    required_keys = ("caption",)

    def __init__(self, ks: Sequence[int] = (1, 5, 10), batch_size: int = 256, max_pairs: int | None = 5000) -> None:
        self.ks, self.batch_size, self.max_pairs = tuple(int(k) for k in ks), batch_size, max_pairs

    def evaluate(self, encoder: Encoder, data: DataModule) -> Mapping[str, float]:
        _check_text_tower(encoder, "retrieval")
        dataset = data.eval_test if data.eval_test is not None else data.extras.get("retrieval_split")
        if dataset is None or len(dataset) == 0:  # type: ignore[arg-type]
            raise DataError("Retrieval needs held-out image-caption pairs (data.eval_test); this dataset has none. "
                            "Raise dataset_kwargs.test_fraction or drop 'clip_retrieval' from evaluators.")
        was_training = encoder.training
        encoder.eval()
        try:
            img, captions, _ = embed_pairs(encoder, dataset, data, self.batch_size, self.max_pairs)
            unique = list(dict.fromkeys(captions))
            index = {c: i for i, c in enumerate(unique)}
            txt = embed_texts(encoder, unique, self.batch_size)
        finally:
            encoder.train(was_training)
        cap_id = torch.tensor([index[c] for c in captions])
        positives = cap_id[:, None] == torch.arange(len(unique))[None, :]  # [images, unique captions]
        sim = img @ txt.T
        metrics: dict[str, float] = {}
        for k, v in recall_at_k(sim, positives, self.ks).items():
            metrics[f"i2t_r{k}"] = v
        for k, v in recall_at_k(sim.T, positives.T, self.ks).items():
            metrics[f"t2i_r{k}"] = v
        return metrics


class ZeroShotEvaluator(Evaluator):
    """Zero-shot top-1 (and top-5) accuracy on ``data.eval_test`` from class-name prompts."""

    name = "clip_zero_shot"

    def __init__(self, templates: Sequence[str] | None = None, batch_size: int = 256) -> None:
        self.templates = list(templates) if templates else None
        self.batch_size = batch_size

    @torch.no_grad()
    def classifier(self, encoder: Any, class_names: Sequence[str], templates: Sequence[str]) -> Tensor:
        """Class weights ``[C, D]``: normalised mean of each class's normalised prompt embeddings."""
        weights = []
        for name in class_names:
            prompts = [t.format(name) for t in templates]
            emb = embed_texts(encoder, prompts, self.batch_size)
            weights.append(F.normalize(emb.mean(0), dim=0))
        return torch.stack(weights)

    def evaluate(self, encoder: Encoder, data: DataModule) -> Mapping[str, float]:
        _check_text_tower(encoder, "zero-shot")
        if not data.class_names:
            raise DataError("Zero-shot classification needs class names (DataModule.class_names); this dataset has "
                            "none. Add a label column / KEY.cls members, or drop 'clip_zero_shot' from evaluators.")
        if data.eval_test is None:
            raise DataError("Zero-shot classification needs a labelled held-out split (data.eval_test).")
        templates = self.templates or data.extras.get("zero_shot_templates") or GENERIC_ZERO_SHOT_TEMPLATES
        bad = [t for t in templates if "{}" not in t]
        if bad:
            raise DataError(f"Zero-shot templates must contain '{{}}' where the class name goes; got {bad}.")
        was_training = encoder.training
        encoder.eval()
        try:
            img, _, labels = embed_pairs(encoder, data.eval_test, data, self.batch_size, None)
            weights = self.classifier(encoder, data.class_names, templates)
        finally:
            encoder.train(was_training)
        if labels is None:
            raise DataError(f"Zero-shot classification needs labels ('{data.label_key}') in data.eval_test.")
        logits = img @ weights.T
        metrics = {"zeroshot_top1": (logits.argmax(1) == labels).float().mean().item()}
        if len(data.class_names) > 5:
            top5 = logits.topk(5, dim=1).indices
            metrics["zeroshot_top5"] = (top5 == labels[:, None]).any(1).float().mean().item()
        return metrics
