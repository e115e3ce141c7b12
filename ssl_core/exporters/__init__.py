"""Exports: a trained encoder written in the format another library loads, with a model card.

An exporter is a plugin component (hook ``register_exporters``; factory ``factory(**kwargs) ->
Exporter``). ``ssl export RUN --format NAME`` loads the run's encoder, asks the exporter whether it
:meth:`~Exporter.supports` it, and calls :meth:`~Exporter.export` with an :class:`ExportContext`.
Every export folder holds the weights, a ``config.json`` saying how to build the target model and
how to preprocess inputs, and a ``README.md`` model card (config, data, probe results).

The same exporters run backwards for ``ssl run --init PATH``: :meth:`Exporter.key_map` says which
key of the target library's state dict holds which encoder parameter, so weights saved by
torchvision, timm, torchaudio or open_clip (or exported by sslkit) initialise an encoder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ssl_core.checkpoint import atomic_write_text

if TYPE_CHECKING:  # annotations only: the registry imports this package without importing torch
    import torch

    from ssl_core.interfaces import DataModule, Encoder

CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class ExportContext:
    """What an exporter may use besides the encoder: the run's config, data and results."""

    run_dir: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)
    """The resolved run config (``RunConfig.to_dict()``)."""
    data: DataModule | None = None
    results: dict[str, dict[str, float]] = field(default_factory=dict)
    """``eval.json``: ``{"trained": {...}, "random": {...}}`` (empty if the run was not evaluated)."""

    def sample_batch(self, n: int = 2) -> dict[str, Any] | None:
        """A small raw batch of the run's data (to read input sizes), or ``None`` without data."""
        if self.data is None:
            return None
        from ssl_core.data import default_collate

        source = self.data.eval_test if self.data.eval_test is not None else self.data.train
        items = [source[i] for i in range(min(n, len(source)))]  # type: ignore[arg-type]
        return (self.data.collate or default_collate)(items)


@dataclass
class ImportedState:
    """An outside state dict translated to the encoder's key names (see :meth:`Exporter.import_state`)."""

    state: dict[str, torch.Tensor]
    """Encoder key -> tensor."""
    unexpected: list[str] = field(default_factory=list)
    """Keys of the file that map to nothing in the encoder."""
    ignored: list[str] = field(default_factory=list)
    """Keys of the file deliberately not loaded (a classifier head, derived position tables)."""
    constants: list[str] = field(default_factory=list)
    """Encoder keys that are settings, not learned weights (input normalisation), kept as built."""


class Exporter:
    """One export format. Subclasses set ``name``/``library`` and implement the methods."""

    name: str = ""
    library: str = ""
    """The library that loads the export (``"timm"``, ``"torchaudio"``, ...)."""

    def supports(self, encoder: Encoder) -> str | None:
        """``None`` if this format can hold ``encoder``; otherwise why not (shown to the user)."""
        return "not implemented"

    def key_map(self, encoder: Encoder) -> dict[str, str]:
        """Target-library key -> encoder state-dict key, for every exported tensor."""
        raise NotImplementedError

    def ignored_keys(self, key: str) -> bool:
        """Whether a key of an outside file is deliberately skipped on import (e.g. ``fc.*``)."""
        return False

    def constant_keys(self, encoder: Encoder) -> list[str]:
        """Encoder keys that hold settings rather than weights (kept as built on import)."""
        return [k for k in encoder.state_dict() if k.startswith("normalize.")]

    def export(self, encoder: Encoder, out_dir: Path, ctx: ExportContext) -> Path:
        """Write the export into ``out_dir`` (created) and return it."""
        raise NotImplementedError

    def load_snippet(self, out_dir: Path) -> str:
        """Python that loads the export with the target library (for the model card)."""
        return ""

    # ------------------------------------------------------------------ shared helpers
    def export_state(self, encoder: Encoder) -> dict[str, torch.Tensor]:
        """The encoder's tensors under the target library's names (contiguous CPU copies)."""
        own = encoder.state_dict()
        return {k: own[v].detach().cpu().contiguous().clone() for k, v in self.key_map(encoder).items()}

    def import_state(self, encoder: Encoder, state: Mapping[str, torch.Tensor]) -> ImportedState:
        """Translate an outside state dict (target-library names) to the encoder's names."""
        inverse = self.key_map(encoder)
        out = ImportedState(state={}, constants=self.constant_keys(encoder))
        for key, value in state.items():
            if key in inverse:
                out.state[inverse[key]] = value
            elif self.ignored_keys(key):
                out.ignored.append(key)
            else:
                out.unexpected.append(key)
        return out


def save_safetensors(state: Mapping[str, torch.Tensor], path: Path, metadata: Mapping[str, str] | None = None) -> None:
    """Write ``state`` as safetensors (no pickle: safe to load from anywhere)."""
    from ssl_core.extras import require

    st = require("safetensors.torch", "export", "exports (safetensors files)")
    path.parent.mkdir(parents=True, exist_ok=True)
    st.save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(path), metadata=dict(metadata or {}))


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file into a CPU state dict."""
    from ssl_core.extras import require

    st = require("safetensors.torch", "export", "reading safetensors files")
    return st.load_file(str(path), device="cpu")


def write_config(out_dir: Path, exporter: Exporter, ctx: ExportContext, target: Mapping[str, Any]) -> dict[str, Any]:
    """``config.json``: how to build the target model (``target``) plus where the weights came from."""
    cfg = ctx.config
    config = {
        "format": exporter.name, "library": exporter.library, **dict(target),
        "sslkit": {"encoder": cfg.get("encoder"), "encoder_kwargs": cfg.get("encoder_kwargs", {}),
                   "modality": cfg.get("modality"), "objective": cfg.get("objective"),
                   "dataset": cfg.get("dataset"), "data": cfg.get("data"), "results": ctx.results},
    }
    atomic_write_text(out_dir / CONFIG_FILE, json.dumps(config, indent=2, default=str))
    return config


def write_model_card(out_dir: Path, exporter: Exporter, ctx: ExportContext, notes: str = "") -> Path:
    """``README.md``: what was trained on what, the probe results next to a random encoder, how to load."""
    cfg = ctx.config
    train = cfg.get("train", {})
    desc = ctx.data.description if ctx.data is not None else ""
    lines = [
        "---", f"library_name: {exporter.library}", "tags:", "- self-supervised", f"- {cfg.get('modality', '')}",
        f"- {cfg.get('objective', '')}", "- sslkit", "---", "",
        f"# {cfg.get('encoder', 'encoder')} trained with {cfg.get('objective', '?')} (sslkit)", "",
        f"Exported for **{exporter.library}** (`ssl export --format {exporter.name}`).", "",
        "## Training", "",
        f"- objective: `{cfg.get('objective')}` ({cfg.get('modality')})",
        f"- encoder: `{cfg.get('encoder')}` with `{json.dumps(cfg.get('encoder_kwargs', {}), default=str)}`",
        f"- data: `{cfg.get('dataset')}`" + (f" from `{cfg.get('data')}`" if cfg.get("data") else " (built-in)")
        + (f": {desc}" if desc else ""),
        f"- steps/epochs: {train.get('steps') or str(train.get('epochs')) + ' epochs'}, batch {train.get('batch_size')}, "
        f"lr {train.get('lr')}, optimizer {train.get('optimizer')}, seed {train.get('seed')}",
        "",
    ]
    if ctx.results:
        names = sorted({k for m in ctx.results.values() for k in m})
        cols = list(ctx.results)
        lines += ["## Probe results", "", "| metric | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        lines += [f"| {n} | " + " | ".join(f"{ctx.results[c].get(n, float('nan')):.4f}" for c in cols) + " |"
                  for n in names]
        lines += ["", "`random` is a freshly initialised encoder of the same architecture, probed the same way.", ""]
    snippet = exporter.load_snippet(out_dir)
    if snippet:
        lines += ["## Loading", "", "```python", snippet.strip(), "```", ""]
    if notes:
        lines += [notes.strip(), ""]
    lines += ["## Full config", "", "```json", json.dumps(cfg, indent=2, default=str), "```", ""]
    path = out_dir / CARD_FILE
    atomic_write_text(path, "\n".join(lines))
    return path


__all__ = ["CARD_FILE", "CONFIG_FILE", "WEIGHTS_FILE", "ExportContext", "Exporter", "ImportedState",
           "load_safetensors", "save_safetensors", "write_config", "write_model_card"]
