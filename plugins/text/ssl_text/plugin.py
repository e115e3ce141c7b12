"""Registers the text plugin's components with sslkit (entry point ``text``)."""

from __future__ import annotations

from ssl_core import hookimpl
from ssl_core.files import HF_DATASET, TEXT_SUFFIXES, Accepts

# Factories are import paths ("module:attr"): `ssl list` reads this file without importing torch.
TEXT_FILES = Accepts(TEXT_SUFFIXES + tuple(s + ".gz" for s in TEXT_SUFFIXES),
                     layout="a file, or a folder with one sub-folder per label")

_PROBES = ["knn", "linear_probe", "few_shot", "health"]
# Sized for a 2-core CPU: three to four minutes of training per objective on the WordNet glosses
# (mlm: 800 steps = 1.6 M tokens, half an epoch; clm: 500 steps = 1.0 M tokens). Learning rates:
# mlm 3e-3 beat 2e-3 (800 steps, WordNet probe); clm keeps 3e-3 from the earlier sweep
# (1e-3..3e-3). Measurements in docs/text.md.
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
    register("wordnet", "ssl_text.data:wordnet", modality="text", builtin=True,
             summary="WordNet 3.0 glosses (Debian wordnet-base), probe: 10 noun classes x 200/100 entries",
             reader=("textfiles", "hf_text"))
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
            # 40% masking (Wettig et al., EACL 2023): more prediction targets per step; on the
            # WordNet probe it beat BERT's 15% at the same budget (kNN 0.43 vs 0.36)
            "augmenter": "bert_masking", "augmenter_kwargs": {"mask_prob": 0.4},
            "dataset": "wordnet", "dataset_kwargs": {"mode": "mlm", **_CPU_DATA},
            "evaluators": ["masked_accuracy", *_PROBES], "train": {**_CPU_TRAIN, "steps": 800, "lr": 3e-3},
        },
    )
    register(
        "clm", "ssl_text.objectives:CausalLM", modality="text",
        summary="Causal language modelling, GPT (Radford et al., 2018/2019); `ssl generate` samples",
        recipe={
            "encoder": "gpt_small", "encoder_kwargs": dict(_CPU_MODEL),
            "dataset": "wordnet", "dataset_kwargs": {"mode": "clm", **_CPU_DATA},
            "evaluators": ["perplexity", *_PROBES], "train": {**_CPU_TRAIN, "steps": 500, "lr": 3e-3},
        },
    )


@hookimpl
def register_exporters(register):  # type: ignore[no-untyped-def]
    register("transformers", "ssl_text.export:TransformersExporter", modality="text",
             summary="Causal models (gpt_small) as a transformers GPTNeoXForCausalLM folder + tokenizer "
                     "(pip install 'sslkit[transformers]')")
