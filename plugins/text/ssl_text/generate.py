"""Sampling text from a trained causal model, from Python or through ``ssl generate RUN_DIR``.

    from ssl_text import generate
    print(generate("runs/text-clm-...", "The logging module", max_new_tokens=80)[0])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ssl_core.errors import ConfigError, DataError


def generate_text(encoder: Any, tokenizer: Any, prompt: str, max_new_tokens: int = 100,
                  temperature: float = 0.8, top_k: int | None = 40, top_p: float | None = None,
                  num_samples: int = 1, seed: int = 0) -> list[str]:
    """Prompt + sampled continuation, ``num_samples`` times (temperature 0 = greedy).

    The prompt is preceded by ``<eos>``, the document-start token the model was trained with,
    so it is read as the opening of a new document.
    """
    import torch  # here, not at module level: importing ssl_text (`ssl list`) must not import torch

    from ssl_text.tokenizer import special_ids

    if max_new_tokens < 0 or num_samples < 1:
        raise ConfigError("max_new_tokens must be >= 0 and num_samples >= 1.")
    sp = special_ids(tokenizer)
    ids = [sp.eos] + tokenizer.encode(prompt, add_special_tokens=False).ids
    device = next(encoder.parameters()).device
    prompt_ids = torch.tensor([ids] * num_samples, dtype=torch.long, device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    out = encoder.sample(prompt_ids, max_new_tokens=max_new_tokens, temperature=temperature,
                         top_k=top_k, top_p=top_p, generator=g)
    texts = []
    for row in out.tolist():
        body = row[1:]
        if sp.eos in body[len(ids) - 1:]:
            body = body[: len(ids) - 1 + body[len(ids) - 1:].index(sp.eos)]
        texts.append(tokenizer.decode([t for t in body if t != sp.pad], skip_special_tokens=True))
    return texts


def load_generator(run_dir: str | Path, device: str = "auto") -> tuple[Any, Any]:
    """(encoder, tokenizer) of a finished ``ssl run`` directory, ready to sample from.

    The tokenizer comes from ``RUN_DIR/tokenizer.json`` (saved at the end of training); the
    encoder from ``RUN_DIR/encoder.pt`` and the run's config.
    """
    from tokenizers import Tokenizer

    from ssl_core.registry import get_registry
    from ssl_core.runner import CONFIG_FILE, ENCODER_FILE, load_encoder_file
    from ssl_core.trainer import resolve_device

    run_dir = Path(run_dir)
    tok_path, enc_path = run_dir / "tokenizer.json", run_dir / ENCODER_FILE
    for p in (run_dir / CONFIG_FILE, enc_path, tok_path):
        if not p.exists():
            raise DataError(f"{p} is missing: is {run_dir} a finished `ssl run --modality text` directory?")
    state = load_encoder_file(enc_path)
    if state.get("modality") != "text":
        raise ConfigError(f"{run_dir} holds a {state.get('modality')} encoder; text generation needs a text run.")
    spec = get_registry().get("encoder", state["encoder"], modality="text")
    encoder = spec.build(**state["encoder_kwargs"])
    encoder.load_state_dict(state["state_dict"])
    encoder.to(resolve_device(device)).eval()
    return encoder, Tokenizer.from_file(str(tok_path))


def generate(run_dir: str | Path, prompt: str, max_new_tokens: int = 100, temperature: float = 0.8,
             top_k: int | None = 40, top_p: float | None = None, num_samples: int = 1, seed: int = 0,
             device: str = "auto") -> list[str]:
    """Sample continuations of ``prompt`` from the causal model trained in ``run_dir``."""
    encoder, tok = load_generator(run_dir, device)
    if not getattr(encoder, "causal", False):
        raise ConfigError(
            f"{run_dir} holds a masked-LM (bidirectional) encoder, which cannot generate text. "
            "Train a causal one with `ssl run --modality text --objective clm`."
        )
    return generate_text(encoder, tok, prompt, max_new_tokens, temperature, top_k, top_p, num_samples, seed)
