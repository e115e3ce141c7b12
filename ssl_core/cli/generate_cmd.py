"""``ssl generate RUN_DIR --prompt "..."``: sample text from a trained causal language model.

The command is modality-agnostic: it rebuilds the run's encoder from ``RUN_DIR/encoder.pt`` and
calls the encoder's ``generate_text(prompt, run_dir=..., **options) -> list[str]`` method, which a
plugin provides on encoders that can generate (the text plugin's ``gpt_small``). Encoders without
it get a clear error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def generate(
    run_dir: Path = typer.Argument(..., help="A directory written by `ssl run` (e.g. --objective clm)."),
    prompt: str = typer.Option("", "--prompt", "-p", help="Text to continue (empty: start a new document)."),
    max_new_tokens: int = typer.Option(100, "--max-new-tokens", "-n", help="Tokens to sample after the prompt."),
    temperature: float = typer.Option(0.8, "--temperature", "-t", help="Sampling temperature; 0 = greedy."),
    top_k: Optional[int] = typer.Option(40, "--top-k", help="Sample among the k most likely tokens (0 = all)."),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="Nucleus sampling threshold, e.g. 0.9."),
    num_samples: int = typer.Option(1, "--num-samples", "-s", help="How many continuations to print."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same text)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, ..."),
) -> None:
    """Continue --prompt with text sampled from the language model trained in RUN_DIR."""
    from ssl_core.errors import ConfigError, DataError
    from ssl_core.registry import get_registry
    from ssl_core.runner import CONFIG_FILE, ENCODER_FILE, load_encoder_file
    from ssl_core.trainer import resolve_device

    enc_path = run_dir / ENCODER_FILE
    for p in (run_dir / CONFIG_FILE, enc_path):
        if not p.exists():
            raise DataError(f"{p} is missing: is {run_dir} a finished `ssl run` directory?")
    state = load_encoder_file(enc_path)
    spec = get_registry().get("encoder", state["encoder"], modality=state.get("modality"))
    encoder = spec.build(**state["encoder_kwargs"])
    encoder.load_state_dict(state["state_dict"])
    encoder.to(resolve_device(device)).eval()
    if not callable(getattr(encoder, "generate_text", None)):
        raise ConfigError(
            f"Encoder '{state['encoder']}' ({state.get('modality')}) cannot generate text. Train a causal "
            "language model first: `ssl run --modality text --objective clm`."
        )
    texts = encoder.generate_text(
        prompt, run_dir=run_dir, max_new_tokens=max_new_tokens, temperature=temperature,
        top_k=top_k or None, top_p=top_p, num_samples=num_samples, seed=seed,
    )
    for i, text in enumerate(texts):
        if num_samples > 1:
            typer.echo(f"--- sample {i + 1}")
        typer.echo(text)
