"""Export -> open_clip's own loader gives the very same embeddings, and the encoder contract."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch

from ssl_clip.encoder import OpenCLIPEncoder, open_clip_encoder
from ssl_clip.export import CONFIG_FILE, WEIGHTS_FILE, exported_preprocess_cfg, export_open_clip, load_exported
from ssl_core.config import TrainConfig
from ssl_core.data import default_collate
from ssl_core.errors import ConfigError, DataError
from ssl_core.trainer import Trainer


@pytest.fixture(scope="module")
def trained(digit_data):
    """A tiny CLIP after a few real optimiser steps (so no weight is at its initial value)."""
    from ssl_clip.augment import clip_crop
    from ssl_clip.objective import CLIP

    torch.manual_seed(0)
    enc = open_clip_encoder(**digit_data.extras["encoder_kwargs"])
    obj = CLIP(enc, clip_crop())
    cfg = TrainConfig(steps=3, epochs=None, batch_size=32, lr=1e-3, progress=False, health_every=0, checkpoint_every=0)
    Trainer(obj, digit_data, cfg).fit()
    return enc.eval()


def test_round_trip_through_open_clip_gives_identical_embeddings(trained, digit_data, tmp_path) -> None:
    out = export_open_clip(trained, tmp_path / "open_clip")
    assert (out / WEIGHTS_FILE).is_file() and (out / CONFIG_FILE).is_file()
    model, tokenizer = load_exported(tmp_path)  # a run directory works as well as the folder
    assert type(model).__name__ == "CLIP" and not model.training
    batch = default_collate([digit_data.eval_test[i] for i in range(16)])
    pre = exported_preprocess_cfg(tmp_path)
    assert pre["size"] == trained.image_size == 16
    # what a user does with plain open_clip: grey -> RGB, scale, standardise with the saved stats
    x = batch["image"].float().div(255).expand(-1, 3, -1, -1)
    x = (x - torch.tensor(pre["mean"]).view(1, 3, 1, 1)) / torch.tensor(pre["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.equal(model.encode_image(x), trained.encode_image(batch["image"]))
        tokens = tokenizer(batch["caption"])
        assert tokens.shape == (16, trained.context_length)
        assert torch.equal(model.encode_text(tokens), trained.encode_text(batch["caption"]))
        assert torch.equal(model.logit_scale, trained.logit_scale)
    # the standard local-dir: loader of open_clip reads the same folder
    plain = open_clip.create_model(f"local-dir:{out}").eval()
    with torch.no_grad():
        assert torch.equal(plain.encode_image(x), model.encode_image(x))


def test_export_refuses_incomplete_folders(tmp_path) -> None:
    with pytest.raises(DataError, match="No exported open_clip model"):
        load_exported(tmp_path)


def test_encoder_contract_and_offline_configs(digit_data) -> None:
    enc = open_clip_encoder(**digit_data.extras["encoder_kwargs"])
    assert isinstance(enc, OpenCLIPEncoder) and enc.modality == "image-text" and enc.embed_dim == 64
    batch = default_collate([digit_data.train[i] for i in range(5)])
    with torch.no_grad():
        z = enc.embed(batch)
        t = enc.encode_text(batch["caption"], normalize=True)
    assert z.shape == (5, 64) and t.shape == (5, 64)
    assert torch.allclose(t.norm(dim=1), torch.ones(5), atol=1e-5)
    json.dumps(enc.export_config())  # serialisable
    with pytest.raises(ConfigError, match="no model config named 'ViT-Q-99'.*sslkit-clip-tiny"):
        open_clip_encoder(model="ViT-Q-99")
    hf = [m for m in open_clip.list_models() if (open_clip.get_model_config(m) or {}).get("text_cfg", {}).get("hf_tokenizer_name")]
    assert hf, "open_clip ships configs with Hugging Face tokenizers"
    with pytest.raises(ConfigError, match="must be downloaded"):
        open_clip_encoder(model=hf[0])


def test_open_clip_format_of_ssl_export_and_init_from_it(trained, digit_data, tmp_path, registry) -> None:
    from ssl_clip.export import OpenCLIPExporter
    from ssl_core.exporters import ExportContext
    from ssl_core.init_weights import init_encoder

    assert registry.get("exporter", "open_clip", modality="image-text").factory is OpenCLIPExporter
    ctx = ExportContext(config={"encoder": "open_clip", "objective": "clip", "modality": "image-text"}, data=digit_data,
                        results={"trained": {"zero_shot_top1": 0.5}})
    out = OpenCLIPExporter().export(trained, tmp_path / "oc", ctx)
    assert "library_name: open_clip" in (out / "README.md").read_text()
    plain = open_clip.create_model(f"local-dir:{out}").eval()
    batch = default_collate([digit_data.eval_test[i] for i in range(4)])
    pre = exported_preprocess_cfg(out)
    x = batch["image"].float().div(255).expand(-1, 3, -1, -1)
    x = (x - torch.tensor(pre["mean"]).view(1, 3, 1, 1)) / torch.tensor(pre["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.equal(plain.encode_image(x), trained.encode_image(batch["image"]))
    fresh = open_clip_encoder(**digit_data.extras["encoder_kwargs"])
    report = init_encoder(fresh, out, registry)  # open_clip's own weights file, found in the folder
    assert report.complete and report.mapping == "open_clip"
    with torch.no_grad():
        assert torch.equal(fresh.eval().encode_image(batch["image"]), trained.encode_image(batch["image"]))
