"""Registers the text plugin's components with sslkit (entry point ``text``)."""

from __future__ import annotations

from ssl_core import hookimpl
from ssl_core.files import HF_DATASET, TEXT_SUFFIXES, Accepts

# Factories are import paths ("module:attr"): `ssl list` reads this file without importing torch.
TEXT_FILES = Accepts(TEXT_SUFFIXES + tuple(s + ".gz" for s in TEXT_SUFFIXES),
                     layout="a file, or a folder with one sub-folder per label")

_PROBES = ["knn", "linear_probe", "few_shot", "health"]
# Sized for a 2-core CPU: about two minutes of training per objective on the built-in corpus,
# with learning rates picked by a short sweep (mlm: 5e-4..5e-3, clm: 1e-3..3e-3).
_CPU_MODEL = {"d_model": 128, "n_layers": 2, "n_heads": 4}
_CPU_DATA = {"block_size": 64}
_CPU_TRAIN = {"epochs": None, "batch_size": 32, "weight_decay": 0.01, "warmup_fraction": 0.05,
              "min_lr_ratio": 0.1, "clip_grad": 1.0, "optimizer": "adamw", "betas": [0.9, 0.98],
              "log_every": 20, "health_every": 100}


@hookimpl
def register_encoders(register):  # type: ignore[no-untyped-def]
    register("bert_small", "ssl_text.model:bert_small", modality="text",
             summary="Bidirectional pre-norm Transformer, RoPE, SDPA, tied MLM head (BERT-style)")
    register("gpt_small", "ssl_text.model:gpt_small", modality="text",
             summary="Causal pre-norm Transformer decoder, RoPE, SDPA, document masking, tied LM head")


@hookimpl
def register_augmenters(register):  # type: ignore[no-untyped-def]
    register("bert_masking", "ssl_text.masking:BertMasking", modality="text",
             summary="BERT corruption: 15% of tokens, 80% [MASK] / 10% random / 10% kept (batched, seeded)")


@hookimpl
def register_datasets(register):  # type: ignore[no-untyped-def]
    register("pydocs", "ssl_text.data:python_docs", modality="text", builtin=True,
             summary="Python's documentation prose (stdlib docstrings + pydoc topics), 9 labelled families",
             reader=("textfiles", "hf_text"))
    register("textfiles", "ssl_text.data:text_files", modality="text",
             summary="Your .txt/.md/.jsonl file or folder (sub-folders or a JSONL field give labels)", accepts=TEXT_FILES)
    register("hf_text", "ssl_text.data:hf_text", modality="text",
             summary="Hugging Face dataset on disk (save_to_disk, .arrow, .parquet): text_column, label_column "
                     "(pip install 'sslkit[hf]')", accepts=HF_DATASET)


@hookimpl
def register_evaluators(register):  # type: ignore[no-untyped-def]
    register("perplexity", "ssl_text.evaluators:PerplexityEvaluator", modality="text",
             summary="Held-out perplexity of a causal LM (lower is better)")
    register("masked_accuracy", "ssl_text.evaluators:MaskedAccuracyEvaluator", modality="text",
             summary="Held-out masked-token accuracy and loss under BERT masking")


@hookimpl
def register_objectives(register):  # type: ignore[no-untyped-def]
    register(
        "mlm", "ssl_text.objectives:MaskedLM", modality="text",
        summary="Masked language modelling, BERT (Devlin et al., 2019) without NSP",
        recipe={
            "encoder": "bert_small", "encoder_kwargs": dict(_CPU_MODEL),
            "augmenter": "bert_masking", "dataset": "pydocs", "dataset_kwargs": {"mode": "mlm", **_CPU_DATA},
            "evaluators": ["masked_accuracy", *_PROBES], "train": {**_CPU_TRAIN, "steps": 400, "lr": 1e-3},
        },
    )
    register(
        "clm", "ssl_text.objectives:CausalLM", modality="text",
        summary="Causal language modelling, GPT (Radford et al., 2018/2019); `ssl generate` samples",
        recipe={
            "encoder": "gpt_small", "encoder_kwargs": dict(_CPU_MODEL),
            "dataset": "pydocs", "dataset_kwargs": {"mode": "clm", **_CPU_DATA},
            "evaluators": ["perplexity", *_PROBES], "train": {**_CPU_TRAIN, "steps": 250, "lr": 3e-3},
        },
    )


@hookimpl
def register_exporters(register):  # type: ignore[no-untyped-def]
    register("transformers", "ssl_text.export:TransformersExporter", modality="text",
             summary="Causal models (gpt_small) as a transformers GPTNeoXForCausalLM folder + tokenizer "
                     "(pip install 'sslkit[transformers]')")
