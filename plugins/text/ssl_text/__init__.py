"""sslkit-text: self-supervised language modelling for sslkit.

Masked LM (BERT) and causal LM (GPT) objectives on a pre-norm Transformer with rotary positions,
a byte-level BPE trained on your corpus, memory-mapped token storage, and held-out perplexity /
masked-accuracy evaluators. ``generate(run_dir, prompt)`` samples from a trained causal model.
"""

from ssl_text.generate import generate, load_generator

__all__ = ["generate", "load_generator"]
