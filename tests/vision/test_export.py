"""Vision exports load strictly in torchvision / timm and reproduce the encoder's features;
--init reads those libraries' state dicts back. Tolerance: atol 1e-5 on float32 embeddings
(measured difference: exactly 0 on CPU, the same kernels run in the same order)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import load_file

from ssl_core.config import save_yaml
from ssl_core.errors import ConfigError, UnknownComponentError
from ssl_core.exporters import ExportContext
from ssl_core.exporters.run import export_run, formats_for
from ssl_core.init_weights import init_encoder
from ssl_core.runner import ENCODER_FILE, CONFIG_FILE, EVAL_FILE, build_encoder, export_encoder, resolve_config
from ssl_vision.encoders import resnet18, resnet50, resnet_small
from ssl_vision.export import TimmExporter, TorchvisionExporter, build_timm_model, build_torchvision_model
from ssl_vision.vit import vit_nano

ATOL = 1e-5


def _trained_like(encoder: torch.nn.Module) -> torch.nn.Module:
    """Perturb every tensor (BatchNorm statistics included) so no value is at its initialisation."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in encoder.state_dict().items():
            if not t.is_floating_point() or name.startswith("normalize."):
                continue
            if t.ndim == 1:  # BatchNorm weights, biases, running means and (positive) variances
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            else:
                t.add_(0.05 * torch.randn(t.shape, generator=g))
    return encoder.eval()


def _standardise(encoder, x: torch.Tensor) -> torch.Tensor:
    return (x - encoder.normalize.mean) / encoder.normalize.std


@pytest.fixture(scope="module")
def ctx(digits_data) -> ExportContext:
    return ExportContext(config={"encoder": "resnet18", "objective": "simclr", "modality": "vision"}, data=digits_data,
                         results={"trained": {"knn_top1": 0.9}, "random": {"knn_top1": 0.5}})


def test_resnet18_small_stem_loads_strictly_in_plain_torchvision(tmp_path, ctx) -> None:
    enc = _trained_like(resnet18(in_channels=1))
    out = TorchvisionExporter().export(enc, tmp_path / "tv", ctx)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["stem"]["small_input"] and cfg["stem"]["maxpool"] == "identity"
    # what a user does with torchvision alone, following config.json
    model = torchvision.models.resnet18(weights=None)
    model.fc = torch.nn.Identity()
    c = cfg["stem"]["conv1"]
    model.conv1 = torch.nn.Conv2d(c["in_channels"], c["out_channels"], c["kernel_size"], c["stride"], c["padding"], bias=False)
    model.maxpool = torch.nn.Identity()
    model.load_state_dict(load_file(out / "model.safetensors"), strict=True)
    x = torch.rand(6, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(_standardise(enc, x)), enc(x), atol=ATOL, rtol=0)
    card = (out / "README.md").read_text()
    assert "library_name: torchvision" in card and "| knn_top1 | 0.9000 | 0.5000 |" in card and "Small-input stem" in card


def test_resnet50_imagenet_stem_is_torchvisions_and_timms_own_model(tmp_path, ctx) -> None:
    enc = _trained_like(resnet50(small_input=False))
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        want = enc(x)
    TorchvisionExporter().export(enc, tmp_path / "tv", ctx)
    tv = torchvision.models.resnet50(weights=None)
    tv.fc = torch.nn.Identity()  # no stem change: the architecture is torchvision's as it is
    tv.load_state_dict(load_file(tmp_path / "tv" / "model.safetensors"), strict=True)
    TimmExporter().export(enc, tmp_path / "timm", ctx)
    tm = timm.create_model("resnet50", pretrained=False, num_classes=0)  # timm's registered model, by name
    tm.load_state_dict(load_file(tmp_path / "timm" / "model.safetensors"), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(tv.eval()(_standardise(enc, x)), want, atol=ATOL, rtol=0)
        torch.testing.assert_close(tm.eval()(_standardise(enc, x)), want, atol=ATOL, rtol=0)
    assert build_torchvision_model(tmp_path / "tv") is not None and build_timm_model(tmp_path / "timm") is not None


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_vit_becomes_a_timm_vision_transformer_with_the_same_features(tmp_path, ctx, pool) -> None:
    enc = vit_nano(in_channels=1, pool=pool)
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(0.02 * torch.randn_like(p))
    enc.eval()
    out = TimmExporter().export(enc, tmp_path / "vit", ctx)
    cfg = json.loads((out / "config.json").read_text())
    model = timm.models.VisionTransformer(**{**cfg["builder_kwargs"], "img_size": tuple(cfg["builder_kwargs"]["img_size"])})
    model.load_state_dict(load_file(out / "model.safetensors"), strict=True)
    x = torch.rand(5, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(_standardise(enc, x)), enc(x), atol=ATOL, rtol=0)
        # token features too, class token first
        torch.testing.assert_close(model.forward_features(_standardise(enc, x)), enc.forward_features(x), atol=ATOL, rtol=0)


def test_narrow_resnet_small_is_refused_with_the_fix_and_portable_widths_export(tmp_path, ctx) -> None:
    assert "widths" in TimmExporter().supports(resnet_small()) and "timm" in TorchvisionExporter().supports(resnet_small())
    enc = _trained_like(resnet_small(in_channels=1, widths=(64, 128, 256, 512), blocks=(1, 2, 1, 1)))
    model = build_timm_model(TimmExporter().export(enc, tmp_path / "small", ctx)).eval()
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(_standardise(enc, x)), enc(x), atol=ATOL, rtol=0)


def test_init_from_a_torchvision_state_dict_strict_and_partial(tmp_path, registry) -> None:
    tv = torchvision.models.resnet18(weights=None)  # an ImageNet-shaped checkpoint, 7x7 stem and fc
    torch.save(tv.state_dict(), tmp_path / "resnet18.pth")
    same = resnet18(small_input=False)
    report = init_encoder(same, tmp_path / "resnet18.pth", registry)
    assert report.complete and report.ignored == ["fc.bias", "fc.weight"] and report.mapping == "timm/torchvision"
    torch.testing.assert_close(same.trunk[4][0].conv1.weight, tv.layer1[0].conv1.weight, atol=0, rtol=0)
    small = resnet18()  # 3x3 small-input stem: conv1 cannot take 7x7 weights
    before = small.trunk[0].weight.clone()
    with pytest.raises(ConfigError, match=r"shape differs.*conv1.weight|trunk.0.weight") as err:
        init_encoder(small, tmp_path / "resnet18.pth", registry)
    assert "--init-partial" in str(err.value)
    report = init_encoder(small, tmp_path / "resnet18.pth", registry, allow_partial=True)
    assert [m[0] for m in report.mismatched] == ["trunk.0.weight"] and not report.missing
    assert torch.equal(small.trunk[0].weight, before)  # left as initialised
    torch.testing.assert_close(small.trunk[7][1].conv2.weight, tv.layer4[1].conv2.weight, atol=0, rtol=0)


def test_init_from_a_timm_export_and_pickles_are_refused(tmp_path, ctx, registry) -> None:
    src = vit_nano(in_channels=1)
    TimmExporter().export(src, tmp_path / "vit", ctx)
    dst = vit_nano(in_channels=1)
    report = init_encoder(dst, tmp_path / "vit", registry)  # the export folder itself
    assert report.complete and report.ignored == ["pos_embed"] and report.mapping == "timm"
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    torch.save({"state_dict": {"w": torch.ones(1)}, "hook": Path("x")}, tmp_path / "pickled.pt")  # not weights-only
    from ssl_core.errors import DataError

    with pytest.raises(DataError, match="weights_only=True"):
        init_encoder(dst, tmp_path / "pickled.pt", registry)


def test_ssl_export_command_on_a_run_directory(tmp_path, registry) -> None:
    from typer.testing import CliRunner

    from ssl_core.cli.app import app

    run = tmp_path / "run"
    cfg = resolve_config("simclr", "vision", overrides={"encoder": "resnet18", "out": str(run)}, registry=registry)
    from ssl_core.runner import build_data

    enc = build_encoder(cfg, build_data(cfg, registry), registry)
    run.mkdir()
    save_yaml(cfg, run / CONFIG_FILE)
    export_encoder(enc, cfg, run / ENCODER_FILE)
    (run / EVAL_FILE).write_text(json.dumps({"trained": {"knn_top1": 0.8}}))
    rows = {name: why for name, _, why in formats_for(run, registry)}
    assert rows["torchvision"] is None and rows["timm"] is None and rows["safetensors"] is None
    assert "open_clip" not in rows and "torchaudio" not in rows  # other modalities' formats are not offered
    res = CliRunner().invoke(app, ["export", str(run), "--format", "torchvision"])
    assert res.exit_code == 0, res.output
    model = build_torchvision_model(run / "export" / "torchvision").eval()
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(_standardise(enc, x)), enc.eval()(x), atol=ATOL, rtol=0)
    assert "knn_top1 | 0.8000" in (run / "export" / "torchvision" / "README.md").read_text()
    res = CliRunner().invoke(app, ["export", str(run)])
    assert res.exit_code == 0 and "torchvision" in res.output and "fits this run" in res.output
    with pytest.raises(UnknownComponentError, match="'torchaudio' is an audio exporter, not a vision one"):
        export_run(run, "torchaudio", registry=registry)
    with pytest.raises(ConfigError, match="cannot export"):
        (run / "export").rename(run / "old")
        cfg.encoder, cfg.encoder_kwargs = "resnet_small", {}
        save_yaml(cfg, run / CONFIG_FILE)
        export_encoder(build_encoder(cfg, build_data(cfg, registry), registry), cfg, run / ENCODER_FILE)
        export_run(run, "torchvision", registry=registry)
