"""``ssl run --init PATH``: start the encoder from weights on disk, never from the network.

``PATH`` may be an sslkit ``encoder.pt`` (or a run directory holding one), an export folder or
file written by ``ssl export`` (any format), or a state dict saved by torchvision, timm,
torchaudio or open_clip (``.pt``/``.pth``/``.bin`` via ``torch.load(weights_only=True)``, or
``.safetensors``). The file's key names are matched against every registered exporter's
:meth:`~ssl_core.exporters.Exporter.key_map` for this encoder (and against the encoder's own
names); the best match translates the keys. Loading is strict: every learned tensor of the
encoder must be found with the right shape, or the run stops with a report of the missing,
unexpected and mis-shaped keys. ``init_partial: true`` (``--init-partial``) loads what matches
and prints the same report instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from ssl_core.checkpoint import load_torch_file
from ssl_core.errors import ConfigError, DataError
from ssl_core.exporters import CONFIG_FILE, WEIGHTS_FILE, Exporter, ImportedState, load_safetensors
from ssl_core.interfaces import Encoder

_WRAPPER_KEYS = ("state_dict", "model", "module", "encoder_state")
_SHOWN = 8  # keys listed per problem in a report


@dataclass
class InitReport:
    """What ``--init`` loaded, and what did not fit."""

    source: str
    mapping: str
    loaded: int = 0
    """Tensors that match (and were loaded, once :attr:`applied`)."""
    applied: bool = False
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every learned tensor of the encoder was loaded and nothing in the file was left over."""
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        """A few lines for the terminal."""
        verb = "loaded" if self.applied else "match"
        lines = [f"--init {self.source}: {self.loaded} tensors {verb} ({self.mapping} key names)."]
        if self.ignored:
            lines.append(f"  ignored (not part of an encoder): {_some(self.ignored)}")
        if self.missing:
            lines.append(f"  missing from the file, left as initialised: {_some(self.missing)}")
        if self.unexpected:
            lines.append(f"  in the file but not in the encoder: {_some(self.unexpected)}")
        if self.mismatched:
            shown = ", ".join(f"{k} {list(a)} vs encoder {list(b)}" for k, a, b in self.mismatched[:_SHOWN])
            more = f" (+{len(self.mismatched) - _SHOWN} more)" if len(self.mismatched) > _SHOWN else ""
            lines.append(f"  shape differs, not loaded: {shown}{more}")
        return "\n".join(lines)


def _some(keys: list[str]) -> str:
    more = f" (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def read_state(path: str | Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """The tensors of ``path`` and, for an sslkit export, its format name."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"--init {path}: no such file or folder.")
    fmt = None
    if path.is_dir():
        import json

        if (path / "encoder.pt").is_file():  # a run directory
            path = path / "encoder.pt"
        elif (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file():
            fmt = json.loads((path / CONFIG_FILE).read_text()).get("format")
            path = path / WEIGHTS_FILE
        elif (path / "open_clip_pytorch_model.bin").is_file():
            path, fmt = path / "open_clip_pytorch_model.bin", "open_clip"
        else:
            raise DataError(f"--init {path}: the folder holds no encoder.pt, {WEIGHTS_FILE} + {CONFIG_FILE} "
                            "(an `ssl export` folder) or open_clip weights.")
    if path.suffix == ".safetensors":
        return load_safetensors(path), fmt
    # weights_only=True; damaged files and files that need code unpickled are refused by name
    obj: Any = load_torch_file(path, what="--init file",
                               fix="Save plain tensors (model.state_dict()) or safetensors.")
    if isinstance(obj, Mapping) and "state_dict" in obj and "encoder" in obj:
        return dict(obj["state_dict"]), "sslkit"  # an sslkit encoder.pt
    while isinstance(obj, Mapping) and len(obj) <= 3:
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataError(f"--init {path} holds no state dict (a mapping of names to tensors).")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}
    return state, fmt


class _Identity(Exporter):
    name = "sslkit"

    def key_map(self, encoder: Encoder) -> dict[str, str]:
        return {k: k for k in encoder.state_dict()}

    def constant_keys(self, encoder: Encoder) -> list[str]:
        return []


def init_encoder(encoder: Encoder, path: str | Path, registry: Any = None, allow_partial: bool = False) -> InitReport:
    """Load ``path`` into ``encoder`` (see the module docstring); raise ConfigError if strict and incomplete."""
    from ssl_core.registry import get_registry

    state, fmt = read_state(path)
    registry = registry or get_registry()
    candidates: list[Exporter] = [_Identity()]
    for spec in registry.list("exporter", modality=encoder.modality or None):  # imports only this modality's
        exporter = spec.build()
        if exporter.supports(encoder) is None:
            candidates.append(exporter)
    by_name = {c.name: c for c in candidates}
    if fmt in by_name:
        chosen = by_name[fmt]
    elif fmt == "sslkit" or fmt == "safetensors":
        chosen = candidates[0]
    else:
        scores = [len(set(c.key_map(encoder)) & set(state)) for c in candidates]
        chosen = candidates[scores.index(max(scores))]
    imported: ImportedState = chosen.import_state(encoder, state)
    # torchvision and timm name ResNet weights alike: say so rather than pick one at random
    same = [c.name for c in candidates if c.key_map(encoder) == chosen.key_map(encoder)]
    mapping = "/".join(same) if fmt not in by_name else chosen.name
    if not imported.state:
        raise ConfigError(
            f"--init {path}: none of its {len(state)} keys (e.g. {_some(sorted(state))}) name a tensor of encoder "
            f"{type(encoder).__name__} in any known layout ({', '.join(c.name for c in candidates)}). "
            "Is it weights of the same architecture?")
    own = encoder.state_dict()
    report = InitReport(source=str(path), mapping=mapping, unexpected=sorted(imported.unexpected),
                        ignored=sorted(imported.ignored))
    load = {}
    for key, value in imported.state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            report.mismatched.append((key, tuple(value.shape), tuple(own[key].shape)))
        else:
            load[key] = value
    constants = set(imported.constants)
    report.missing = sorted(k for k in own if k not in imported.state and k not in constants)
    report.loaded = len(load)
    if not report.complete and not allow_partial:
        raise ConfigError(report.summary() + "\nNothing was loaded. Pass --init-partial (init_partial: true) to load "
                          "the tensors that match and train the rest from scratch.")
    with torch.no_grad():
        for key, value in load.items():
            own[key].copy_(value.to(own[key].dtype))
    report.applied = True
    return report
