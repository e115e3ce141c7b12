"""sslkit-text: self-supervised language modelling for sslkit.

Masked LM (BERT) and causal LM (GPT) objectives on a pre-norm Transformer with rotary positions,
a byte-level BPE trained on your corpus, memory-mapped token storage, and held-out perplexity /
masked-accuracy evaluators. ``generate(run_dir, prompt)`` samples from a trained causal model.
Names are imported on first access, so loading the plugin (``ssl list``) does not import torch.
"""

import importlib as _importlib
from typing import Any

__all__ = ["generate", "load_generator"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'ssl_text' has no attribute '{name}'")
    return getattr(_importlib.import_module("ssl_text.generate"), name)
