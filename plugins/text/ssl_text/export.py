"""Text exports.

- ``safetensors`` (the core's format, any text encoder): ``model.safetensors`` + ``config.json`` +
  the run's ``tokenizer.json``; :func:`load_exported` returns the encoder and its tokenizer.
- ``transformers`` (causal models, extra ``sslkit[transformers]``): the ``gpt_small`` decoder is
  exactly a GPT-NeoX (Black et al., 2022) layout: pre-norm blocks applied one after the other
  (``use_parallel_residual=False``), rotary positions over the whole head with the
  rotate-half convention, a fused QKV projection with biases, an exact-GELU MLP and a final
  LayerNorm. So the weights are written as a ``GPTNeoXForCausalLM`` with
  ``save_pretrained`` (only the fused QKV rows are reordered, from [q|k|v] x heads to heads x
  [q|k|v]); ``AutoModelForCausalLM.from_pretrained(folder)`` and ``AutoTokenizer`` load it offline.
  One difference remains: sslkit's causal model can mask attention across ``<eos>`` inside a
  packed block (``doc_mask``); transformers' model attends across it. On text without an
  inner ``<eos>`` the two agree.

  The bidirectional ``bert_small`` has no ``transformers`` counterpart (BERT is post-norm with
  learned positions; no bidirectional pre-norm rotary encoder with this MLP ships there), so it
  exports as ``safetensors`` only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ssl_core.errors import ConfigError, DataError
from ssl_core.exporters import ExportContext, Exporter, write_model_card
from ssl_core.extras import require
from ssl_core.interfaces import Encoder
from ssl_text.model import TextTransformer


def load_exported(path: str | Path) -> tuple[TextTransformer, Any]:
    """(encoder, ``tokenizers.Tokenizer``) from a ``safetensors`` export folder of a text run."""
    from tokenizers import Tokenizer

    from ssl_core.exporters.native import load_exported_encoder

    folder = Path(path)
    if not (folder / "tokenizer.json").is_file():
        raise DataError(f"{folder / 'tokenizer.json'} is missing: export a text run with `ssl export RUN --format safetensors`.")
    return load_exported_encoder(folder), Tokenizer.from_file(str(folder / "tokenizer.json"))  # type: ignore[return-value]


def _neox_config(enc: TextTransformer) -> Any:
    transformers = require("transformers", "transformers", "the transformers export (--format transformers)")
    block = enc.blocks[0]
    return transformers.GPTNeoXConfig(
        vocab_size=enc.vocab_size, hidden_size=enc.embed_dim, num_hidden_layers=len(enc.blocks),
        num_attention_heads=block.attn.n_heads, intermediate_size=block.mlp[0].out_features, hidden_act="gelu",
        max_position_embeddings=enc.max_len, layer_norm_eps=block.ln1.eps, use_parallel_residual=False,
        attention_bias=True, attention_dropout=0.0, hidden_dropout=0.0, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": _rope_base(enc), "partial_rotary_factor": 1.0},
        bos_token_id=enc.eos_id, eos_token_id=enc.eos_id, pad_token_id=enc.pad_id,
    )


def _rope_base(enc: TextTransformer) -> float:
    """The rotary base the encoder was built with (recovered from its frequencies)."""
    hd = 2 * enc.rope.inv_freq.numel()
    return float(torch.round(enc.rope.inv_freq[1].double() ** (-hd / 2.0)).item())


class TransformersExporter(Exporter):
    """Causal text models as a Hugging Face ``GPTNeoXForCausalLM`` folder (weights + tokenizer)."""

    name = "transformers"
    library = "transformers"

    def supports(self, encoder: Encoder) -> str | None:
        if not isinstance(encoder, TextTransformer):
            return f"transformers export holds sslkit text models, not {type(encoder).__name__}."
        if not encoder.causal:
            return ("bert_small (bidirectional, pre-norm, rotary) has no transformers architecture that holds it "
                    "unchanged; export it with --format safetensors.")
        return None

    def key_map(self, encoder: Encoder) -> dict[str, str]:
        # the output head is a copy of the input embedding (tied in sslkit); written, not read back
        out = {"gpt_neox.embed_in.weight": "tok_emb.weight", "lm_head.weight": "tok_emb.weight",
               "gpt_neox.final_layer_norm.weight": "ln_f.weight", "gpt_neox.final_layer_norm.bias": "ln_f.bias"}
        for i in range(len(encoder.blocks)):  # type: ignore[arg-type]
            pre, ours = f"gpt_neox.layers.{i}.", f"blocks.{i}."
            for theirs, mine in (("input_layernorm", "ln1"), ("post_attention_layernorm", "ln2"),
                                 ("attention.query_key_value", "attn.qkv"), ("attention.dense", "attn.proj"),
                                 ("mlp.dense_h_to_4h", "mlp.0"), ("mlp.dense_4h_to_h", "mlp.2")):
                for p in ("weight", "bias"):
                    out[f"{pre}{theirs}.{p}"] = f"{ours}{mine}.{p}"
        return out

    def constant_keys(self, encoder: Encoder) -> list[str]:
        return []

    def _qkv(self, t: torch.Tensor, heads: int, to_neox: bool) -> torch.Tensor:
        """Reorder fused QKV rows: sslkit [3, heads, hd] <-> GPT-NeoX [heads, 3, hd]."""
        rows = t.shape[0]
        hd = rows // 3 // heads
        shape = (3, heads, hd) if to_neox else (heads, 3, hd)
        return t.reshape(*shape, *t.shape[1:]).transpose(0, 1).reshape(rows, *t.shape[1:]).contiguous()

    def export_state(self, encoder: Encoder) -> dict[str, torch.Tensor]:
        state = super().export_state(encoder)
        heads = encoder.blocks[0].attn.n_heads  # type: ignore[index]
        return {k: self._qkv(v, heads, True) if ".query_key_value." in k else v for k, v in state.items()}

    def import_state(self, encoder: Encoder, state: Any) -> Any:
        heads = encoder.blocks[0].attn.n_heads  # type: ignore[index]
        fixed = {k: self._qkv(v, heads, False) if ".query_key_value." in k else v for k, v in state.items()}
        return super().import_state(encoder, fixed)

    def ignored_keys(self, key: str) -> bool:
        return key == "embed_out.weight"  # the saved output head: sslkit ties it to the input embedding

    def export(self, encoder: Encoder, out_dir: Path, ctx: ExportContext) -> Path:
        reason = self.supports(encoder)
        if reason:
            raise ConfigError(reason)
        transformers = require("transformers", "transformers", "the transformers export (--format transformers)")
        out_dir.mkdir(parents=True, exist_ok=True)
        model = transformers.GPTNeoXForCausalLM(_neox_config(encoder)).eval()  # type: ignore[arg-type]
        model.load_state_dict(self.export_state(encoder), strict=True)
        model.save_pretrained(str(out_dir))
        tok = ctx.run_dir / "tokenizer.json" if ctx.run_dir is not None else None
        if tok is not None and tok.is_file():
            fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tok), eos_token="<eos>", pad_token="<pad>")
            fast.save_pretrained(str(out_dir))
        meta = json.loads((out_dir / "config.json").read_text())
        meta["sslkit"] = {"encoder": ctx.config.get("encoder"), "objective": ctx.config.get("objective"),
                          "results": ctx.results}
        (out_dir / "config.json").write_text(json.dumps(meta, indent=2, default=str))
        write_model_card(out_dir, self, ctx)
        return out_dir

    def load_snippet(self, out_dir: Path) -> str:
        return (f'from transformers import AutoModelForCausalLM, AutoTokenizer\n'
                f'model = AutoModelForCausalLM.from_pretrained("{out_dir}").eval()\n'
                f'tokenizer = AutoTokenizer.from_pretrained("{out_dir}")  # present when the run had tokenizer.json')
