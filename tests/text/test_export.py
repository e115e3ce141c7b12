"""Text exports: safetensors + tokenizer back into sslkit, and the causal model as a transformers
GPT-NeoX that gives the same hidden states and logits (tolerance atol 1e-5; measured 0)."""

from __future__ import annotations

import pytest
import torch

from ssl_core.exporters import ExportContext
from ssl_core.exporters.native import SafetensorsExporter
from ssl_core.init_weights import init_encoder
from ssl_text.export import TransformersExporter, load_exported
from ssl_text.model import bert_small, gpt_small
from ssl_text.tokenizer import train_tokenizer

ATOL = 1e-5


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A folder holding a real BPE tokenizer.json, trained on Python's language reference."""
    from pydoc_data.topics import topics

    folder = tmp_path_factory.mktemp("textrun")
    tok = train_tokenizer(list(topics.values()), vocab_size=400)
    tok.save(str(folder / "tokenizer.json"))
    return folder


def _ids(run_dir, texts: list[str], length: int = 24) -> torch.Tensor:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(run_dir / "tokenizer.json"))
    rows = [tok.encode(t).ids[:length] for t in texts]
    return torch.tensor([r + [0] * (length - len(r)) for r in rows])


def _perturbed(enc):
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return enc.eval()


def test_safetensors_export_loads_back_with_its_tokenizer(tmp_path, run_dir) -> None:
    torch.manual_seed(0)
    enc = _perturbed(bert_small(vocab_size=400, max_len=32, d_model=32, n_layers=2, n_heads=2))
    ctx = ExportContext(run_dir=run_dir, config={"encoder": "bert_small", "modality": "text", "objective": "mlm",
                                                 "encoder_kwargs": {"vocab_size": 400, "max_len": 32, "d_model": 32,
                                                                    "n_layers": 2, "n_heads": 2}})
    out = SafetensorsExporter().export(enc, tmp_path / "st", ctx)
    loaded, tok = load_exported(out)
    ids = _ids(run_dir, ["The with statement is used to wrap", "A class definition defines a class object"])
    mask = (ids != 0).long()
    with torch.no_grad():
        assert torch.equal(loaded.eval()(ids, mask), enc(ids, mask))
        assert torch.equal(loaded.lm_logits(loaded.forward_features(ids, mask)), enc.lm_logits(enc.forward_features(ids, mask)))
    assert tok.to_str() == (run_dir / "tokenizer.json").read_text() or tok.encode("class statement").ids == \
        [i for i in _ids(run_dir, ["class statement"])[0].tolist() if i != 0]
    assert TransformersExporter().supports(enc) and "safetensors" in TransformersExporter().supports(enc)


def test_causal_model_is_a_transformers_gpt_neox(tmp_path, run_dir, registry) -> None:
    transformers = pytest.importorskip("transformers", reason="pip install 'sslkit[transformers]'")
    torch.manual_seed(0)
    enc = _perturbed(gpt_small(vocab_size=400, max_len=32, d_model=32, n_layers=2, n_heads=4, rope_base=500.0))
    out = TransformersExporter().export(enc, tmp_path / "hf", ExportContext(run_dir=run_dir, config={"encoder": "gpt_small"}))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()  # a local folder: no network
    assert type(model).__name__ == "GPTNeoXForCausalLM"
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(out))
    text = ["Exceptions are raised by the raise statement", "The import statement finds a module"]
    ids = _ids(run_dir, text)
    assert tokenizer(text[0])["input_ids"] == [i for i in ids[0].tolist() if i != 0]
    mask = (ids != 0).long()
    with torch.no_grad():
        res = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        feats = enc.forward_features(ids, mask)
        valid = mask.bool()
        torch.testing.assert_close(res.hidden_states[-1][valid], feats[valid], atol=ATOL, rtol=0)
        torch.testing.assert_close(res.logits[valid], enc.lm_logits(feats)[valid], atol=ATOL, rtol=0)
    # and back: --init from the transformers checkpoint restores the exact weights
    fresh = gpt_small(vocab_size=400, max_len=32, d_model=32, n_layers=2, n_heads=4, rope_base=500.0)
    report = init_encoder(fresh, out / "model.safetensors", registry)
    assert report.complete and report.mapping == "transformers"
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), enc.state_dict().values()))
