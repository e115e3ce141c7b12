"""sslkit audio plugin: wav2vec 2.0 and HuBERT pre-training on torchaudio's wav2vec2 models."""

__version__ = "0.1.0"
