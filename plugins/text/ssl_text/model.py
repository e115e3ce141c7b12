"""A pre-norm Transformer for text, bidirectional (BERT-style) or causal (GPT-style).

- Transformer: Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
- Pre-norm residual blocks (LayerNorm before attention/MLP, final LayerNorm): Radford et al.,
  "Language Models are Unsupervised Multitask Learners" (GPT-2), 2019; Xiong et al., "On Layer
  Normalization in the Transformer Architecture", ICML 2020.
- Rotary position embeddings: Su et al., "RoFormer: Enhanced Transformer with Rotary Position
  Embedding", 2021. Being relative, they make packed documents position-independent.
- Attention runs through :func:`torch.nn.functional.scaled_dot_product_attention` (fused kernels
  on GPU), with a padding mask, a causal mask, and for packed causal blocks a document mask so a
  token never attends across an ``<eos>`` into the previous document.
- The LM head is tied to the input embedding (Press & Wolf, 2017). The masked-LM head adds
  BERT's transform (dense, GELU, LayerNorm) and an output bias (Devlin et al., 2019).

The encoder owns its LM head so that evaluators, which only receive the encoder, can compute
perplexity and masked-token accuracy.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core.errors import ConfigError, DataError
from ssl_core.interfaces import Batch, Encoder
from ssl_core.host_sync import reads_are_free


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoFormer), applied to queries and keys of every head."""

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ConfigError(f"Rotary embeddings need an even head dimension, got {head_dim} (d_model / n_heads).")
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._build(max_len)

    def _build(self, length: int) -> None:
        t = torch.arange(length, dtype=torch.float32, device=self.inv_freq.device)
        freqs = torch.outer(t, self.inv_freq)  # [T, hd/2]
        self.register_buffer("cos", freqs.cos(), persistent=False)
        self.register_buffer("sin", freqs.sin(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """Rotate ``x`` [B, H, T, hd] by position (pairs of interleaved halves)."""
        t = x.shape[-2]
        if t > self.cos.shape[0]:
            self._build(t)
        cos, sin = self.cos[:t].to(x.dtype), self.sin[:t].to(x.dtype)
        x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class SelfAttention(nn.Module):
    """Multi-head self-attention with rotary positions, through SDPA."""

    def __init__(self, d_model: int, n_heads: int, rope: RotaryEmbedding, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ConfigError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads}).")
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.rope = rope
        self.dropout = dropout

    def forward(self, x: Tensor, attn_mask: Tensor | None, is_causal: bool) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.rope(q), self.rope(k)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=is_causal and attn_mask is None,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-norm Transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, rope: RotaryEmbedding, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_heads, rope, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, attn_mask: Tensor | None, is_causal: bool) -> Tensor:
        x = x + self.drop(self.attn(self.ln1(x), attn_mask, is_causal))
        return x + self.drop(self.mlp(self.ln2(x)))


class TextTransformer(Encoder):
    """Token ids -> contextual token features, pooled embeddings and LM logits.

    ``causal=False`` is a BERT/RoBERTa-style bidirectional encoder with a masked-LM head;
    ``causal=True`` is a GPT-style decoder with a next-token head. ``forward`` (and ``embed``,
    which evaluators call) returns the mean of the final features over real, non-special tokens.
    """

    modality = "text"
    input_key = "input_ids"

    def __init__(
        self,
        vocab_size: int,
        max_len: int = 128,
        d_model: int = 128,
        n_layers: int = 4,
        n_heads: int = 4,
        d_ff: int | None = None,
        dropout: float = 0.0,
        causal: bool = False,
        doc_mask: bool = True,
        pad_id: int = 0,
        eos_id: int = 1,
        special_ids: Sequence[int] = (0, 1, 2, 3, 4),
        rope_base: float = 10000.0,
    ) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ConfigError(f"vocab_size must be at least 2, got {vocab_size}; it normally comes from the tokenizer.")
        if d_model % n_heads:
            raise ConfigError(f"encoder_kwargs.d_model ({d_model}) must be divisible by n_heads ({n_heads}).")
        self.vocab_size, self.max_len, self.causal, self.doc_mask = vocab_size, max_len, causal, doc_mask
        self.pad_id, self.eos_id = pad_id, eos_id
        self.embed_dim = d_model
        d_ff = d_ff or 4 * d_model
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.rope = RotaryEmbedding(d_model // n_heads, max_len, rope_base)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff, self.rope, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        if causal:
            self.head_transform: nn.Module = nn.Identity()
            self.head_bias = None
        else:  # BERT's MLM prediction head: dense -> GELU -> LayerNorm -> tied decoder + bias
            self.head_transform = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.LayerNorm(d_model))
            self.head_bias = nn.Parameter(torch.zeros(vocab_size))
        special = torch.zeros(vocab_size, dtype=torch.bool)
        special[[i for i in special_ids if 0 <= i < vocab_size]] = True
        self.register_buffer("is_special", special, persistent=False)
        self._init_weights(n_layers)

    def _init_weights(self, n_layers: int) -> None:
        """GPT-2 initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 * layers)."""
        for name, p in self.named_parameters():
            if p.ndim >= 2:
                std = 0.02 / math.sqrt(2 * n_layers) if name.endswith(("attn.proj.weight", "mlp.2.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    # ------------------------------------------------------------------ masks and features
    def attention_mask(self, input_ids: Tensor, attention_mask: Tensor | None) -> tuple[Tensor | None, bool]:
        """The boolean SDPA mask [B, 1, T, T] (True = may attend), or (None, is_causal)."""
        b, t = input_ids.shape
        # Skipping a mask that changes nothing picks the fused kernels, but finding out means reading
        # the data: only where that read is free (a CPU). On an accelerator the mask is always
        # built, which gives the same result (an all-True mask, or one document per row) without
        # making the host wait for the device.
        look = reads_are_free(input_ids.device)
        valid = None if attention_mask is None or (look and bool(attention_mask.all())) else attention_mask.bool()
        if not self.causal:
            if valid is None:
                return None, False
            return valid[:, None, None, :].expand(b, 1, t, t), False
        use_docs = self.doc_mask and (not look or bool((input_ids[:, 1:] == self.eos_id).any()))
        if valid is None and not use_docs:
            return None, True  # the fused causal kernel
        idx = torch.arange(t, device=input_ids.device)
        allowed = (idx[None, :] <= idx[:, None]).expand(b, t, t)  # key <= query
        if use_docs:
            seg = (input_ids == self.eos_id).long().cumsum(1)  # an <eos> starts the next document
            allowed = allowed & (seg[:, :, None] == seg[:, None, :])
        if valid is not None:
            allowed = allowed & valid[:, None, :]
        allowed = allowed | torch.eye(t, dtype=torch.bool, device=input_ids.device)  # never an empty row
        return allowed[:, None], True

    def forward_features(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Final (layer-normed) token features [B, T, D]."""
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be [batch, tokens], got shape {tuple(input_ids.shape)}")
        mask, is_causal = self.attention_mask(input_ids, attention_mask)
        x = self.drop(self.tok_emb(input_ids))
        for block in self.blocks:
            x = block(x, mask, is_causal)
        return self.ln_f(x)

    def lm_logits(self, features: Tensor) -> Tensor:
        """Vocabulary logits from token features ``[..., D]`` (tied to the input embedding)."""
        h = self.head_transform(features)
        logits = h @ self.tok_emb.weight.t()
        return logits if self.head_bias is None else logits + self.head_bias

    def pool(self, features: Tensor, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        """Mean of features over real tokens, excluding special tokens where any remain."""
        keep = ~self.is_special[input_ids]
        if attention_mask is not None:
            keep = keep & attention_mask.bool()
        empty = ~keep.any(1, keepdim=True)  # a sample of only special tokens: use all real ones
        real = attention_mask.bool() if attention_mask is not None else torch.ones_like(keep)
        keep = torch.where(empty, real, keep)  # no host read of ``empty``: where() is cheap
        w = keep.to(features.dtype).unsqueeze(-1)
        return (features * w).sum(1) / w.sum(1).clamp_min(1.0)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """Pooled sentence embeddings [B, D]."""
        return self.pool(self.forward_features(input_ids, attention_mask), input_ids, attention_mask)

    def embed(self, batch: Batch) -> Tensor:
        """Pooled embeddings of an evaluation batch with ``input_ids`` and ``attention_mask``."""
        return self(batch["input_ids"], batch.get("attention_mask"))

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def sample(self, prompt_ids: Tensor, max_new_tokens: int = 100, temperature: float = 0.8,
               top_k: int | None = 40, top_p: float | None = None, generator: torch.Generator | None = None,
               stop_at_eos: bool = True) -> Tensor:
        """Autoregressive sampling from a causal model; returns prompt + new ids [B, T'].

        Each step re-runs the (at most ``max_len``) most recent tokens: no KV cache, which is
        simple and fast enough for the small models this plugin trains on a CPU.
        """
        if not self.causal:
            raise ConfigError(
                "Text generation needs a causal model: this encoder was trained with a masked-LM "
                "(bidirectional) objective. Train one with `ssl run --modality text --objective clm`."
            )
        if temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {temperature}")
        was_training = self.training
        self.eval()
        ids = prompt_ids
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        try:
            for _ in range(max_new_tokens):
                ctx = ids[:, -self.max_len:]
                raw = self.lm_logits(self.forward_features(ctx)[:, -1]).float()
                logits = raw.masked_fill(self.is_special, -float("inf"))
                if stop_at_eos:  # <eos> may end the text; the other special tokens never appear
                    logits[:, self.eos_id] = raw[:, self.eos_id]
                if temperature == 0:
                    nxt = logits.argmax(-1)
                else:
                    logits = logits / temperature
                    if top_k:
                        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
                        logits = logits.masked_fill(logits < kth, -float("inf"))
                    if top_p is not None and 0 < top_p < 1:
                        sorted_logits, order = logits.sort(-1, descending=True)
                        cum = sorted_logits.softmax(-1).cumsum(-1)
                        drop = cum - sorted_logits.softmax(-1) > top_p
                        sorted_logits = sorted_logits.masked_fill(drop, -float("inf"))
                        logits = torch.full_like(logits, -float("inf")).scatter(-1, order, sorted_logits)
                    nxt = torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)
                nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
                ids = torch.cat([ids, nxt[:, None]], dim=1)
                done = done | (nxt == self.eos_id)
                if stop_at_eos and bool(done.all()):
                    break
        finally:
            self.train(was_training)
        return ids

    def generate_text(self, prompt: str, run_dir: str | Path | None = None, data: Any = None,
                      max_new_tokens: int = 100, temperature: float = 0.8, top_k: int | None = 40,
                      top_p: float | None = None, num_samples: int = 1, seed: int = 0) -> list[str]:
        """Continue ``prompt`` with text sampled from this (causal) model.

        The tokenizer comes from ``data.extras["tokenizer"]`` (a DataModule of this plugin) or
        from ``RUN_DIR/tokenizer.json``. Returns ``num_samples`` strings, each the prompt
        followed by its continuation. This is the method ``ssl generate RUN_DIR`` calls.
        """
        from ssl_text.generate import generate_text

        tok = None
        if data is not None:
            tok = data.extras.get("tokenizer")
        if tok is None and run_dir is not None:
            path = Path(run_dir) / "tokenizer.json"
            if not path.exists():
                raise DataError(f"{path} is missing: is {run_dir} a finished `ssl run --modality text` directory?")
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(path))
        if tok is None:
            raise ConfigError("generate_text needs run_dir= (with tokenizer.json) or data= (a text DataModule).")
        return generate_text(self, tok, prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                             top_k=top_k, top_p=top_p, num_samples=num_samples, seed=seed)


def bert_small(vocab_size: int, max_len: int = 128, d_model: int = 128, n_layers: int = 4, n_heads: int = 4,
               d_ff: int | None = None, dropout: float = 0.0, pad_id: int = 0, eos_id: int = 1,
               special_ids: Sequence[int] = (0, 1, 2, 3, 4), rope_base: float = 10000.0) -> TextTransformer:
    """Bidirectional pre-norm Transformer with a BERT masked-LM head (Devlin et al., 2019)."""
    return TextTransformer(vocab_size, max_len, d_model, n_layers, n_heads, d_ff, dropout, causal=False,
                           pad_id=pad_id, eos_id=eos_id, special_ids=special_ids, rope_base=rope_base)


def gpt_small(vocab_size: int, max_len: int = 128, d_model: int = 128, n_layers: int = 4, n_heads: int = 4,
              d_ff: int | None = None, dropout: float = 0.0, doc_mask: bool = True, pad_id: int = 0,
              eos_id: int = 1, special_ids: Sequence[int] = (0, 1, 2, 3, 4),
              rope_base: float = 10000.0) -> TextTransformer:
    """Causal pre-norm Transformer decoder with a tied next-token head (Radford et al., 2018/2019)."""
    return TextTransformer(vocab_size, max_len, d_model, n_layers, n_heads, d_ff, dropout, causal=True,
                           doc_mask=doc_mask, pad_id=pad_id, eos_id=eos_id, special_ids=special_ids,
                           rope_base=rope_base)
