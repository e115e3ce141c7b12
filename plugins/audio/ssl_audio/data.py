"""Audio data sources: folders of wav/flac files and the built-in spoken-word set.

Samples are dicts ``{"waveform": float32 [T] (mono, 16 kHz), "label": int}``. :func:`pad_collate`
pads a list of them into ``{"waveform": [B, T_max], "lengths": [B], "label": [B]}``; random crops
to the training length happen later, on the training device (:mod:`ssl_audio.augment`).

Any sample rate is resampled to 16 kHz with ``torchaudio.functional.resample`` and multi-channel
files are mixed down to mono. Files are decoded with ``soundfile`` (libsndfile, shipped in its
wheel): ``torchaudio.load`` needs the separate torchcodec/FFmpeg stack, which is not required here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ssl_core.data import stratified_split
from ssl_core.errors import DataError
from ssl_core.files import AUDIO_SUFFIXES, find_files
from ssl_core.interfaces import DataModule

SAMPLE_RATE = 16_000
"""The rate every waveform is resampled to (wav2vec 2.0 and HuBERT are defined at 16 kHz)."""

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
WORDS = DIGITS + COMMANDS
"""The default vocabulary: the 20 core words of Speech Commands (Warden, 2018, arXiv:1804.03209),
the digits and ten short commands. With the digits alone a random network's linear probe already
reached 0.933 on held-out voices, too close to the ceiling to tell training from none (wav2vec
2.0 was +0.019 ahead, one standard error); the commands add short, confusable words (on / off /
no / go / up) and bring random down to 0.840."""
ACCENTS = ("en-us", "en-gb-x-rp", "en-gb-scotland", "en-029")
VARIANTS = ("m1", "m3", "m7", "f1", "f3", "f4")
RATES = (130, 175, 220)
PITCHES = (35, 65)


def audio_suffixes() -> tuple[str, ...]:
    """File suffixes the folder reader picks up: those of :data:`ssl_core.files.AUDIO_SUFFIXES`
    that this libsndfile build decodes."""
    import soundfile as sf

    formats = sf.available_formats()
    needs = {".ogg": "OGG", ".mp3": "MP3", ".aiff": "AIFF", ".aif": "AIFF"}
    return tuple(s for s in AUDIO_SUFFIXES if s not in needs or needs[s] in formats)


# ---------------------------------------------------------------------------- decoding
def mix_down(audio: np.ndarray | Tensor) -> Tensor:
    """``[T]`` or ``[T, C]`` samples -> mono float32 ``[T]`` (mean over channels)."""
    t = torch.as_tensor(audio, dtype=torch.float32)
    return t.mean(dim=1) if t.ndim == 2 else t


def resample(waveform: Tensor, orig_rate: int, new_rate: int = SAMPLE_RATE) -> Tensor:
    """Band-limited (windowed-sinc) resampling with ``torchaudio.functional.resample``."""
    if orig_rate == new_rate:
        return waveform
    import torchaudio.functional as AF

    return AF.resample(waveform, int(orig_rate), int(new_rate))


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, start: int = 0, frames: int = -1) -> Tensor:
    """Decode ``path`` (wav/flac/...) to mono float32 at ``sample_rate``.

    ``start``/``frames`` select a segment in the file's own sample rate (``frames=-1``: to the end).
    Raises whatever ``soundfile`` raises for an unreadable file; callers report and skip it.
    """
    import soundfile as sf

    audio, sr = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    return resample(mix_down(audio), sr, sample_rate).contiguous()


# ---------------------------------------------------------------------------- batching
def pad_collate(samples: Sequence[dict[str, Any]]) -> dict[str, Tensor]:
    """Zero-pad waveforms to the longest in the batch and return their ``lengths``.

    Returns ``{"waveform": float32 [B, T_max], "lengths": int64 [B], ...}``; other scalar fields
    (``label``) are stacked.
    """
    if not samples:
        raise DataError("pad_collate got an empty list of samples.")
    waves = [torch.as_tensor(s["waveform"]) for s in samples]
    lengths = torch.tensor([w.shape[-1] for w in waves], dtype=torch.long)
    batch = torch.zeros(len(waves), int(lengths.max()), dtype=torch.float32)
    for i, w in enumerate(waves):
        batch[i, : w.shape[-1]] = w.float() if w.dtype != torch.int16 else w.float() / 32768.0
    out: dict[str, Tensor] = {"waveform": batch, "lengths": lengths}
    for key in samples[0]:
        if key != "waveform":
            out[key] = torch.as_tensor([s[key] for s in samples])
    return out


def padding_mask(lengths: Tensor, max_len: int) -> Tensor:
    """``True`` at padded positions: ``[B, max_len]`` from valid ``lengths`` ``[B]``."""
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


# ---------------------------------------------------------------------------- datasets
class InMemoryAudioDataset(Dataset):
    """Waveforms held in memory as int16 (the built-in set), with optional labels."""

    def __init__(self, waves: list[Tensor], labels: list[int] | None = None) -> None:
        if labels is not None and len(labels) != len(waves):
            raise ValueError(f"{len(waves)} waveforms but {len(labels)} labels")
        self.waves, self.labels = waves, labels

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample: dict[str, Any] = {"waveform": self.waves[i].float() / 32768.0}
        if self.labels is not None:
            sample["label"] = self.labels[i]
        return sample


@dataclass(frozen=True)
class AudioItem:
    """One readable piece of a file: ``frames`` samples from ``start`` (in the file's own rate)."""

    path: Path
    start: int
    frames: int
    label: int | None = None


class AudioFolderDataset(Dataset):
    """Audio segments decoded on access, resampled to 16 kHz and mixed down to mono.

    A file that fails to decode is reported once by path (a ``UserWarning``) and replaced by the
    next readable item, so a long run never dies on one corrupt file.
    """

    def __init__(self, items: list[AudioItem], sample_rate: int = SAMPLE_RATE) -> None:
        self.items, self.sample_rate = items, sample_rate
        self.bad: set[Path] = set()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        for offset in range(len(self.items)):
            item = self.items[(i + offset) % len(self.items)]
            if item.path in self.bad:
                continue
            try:
                wave = load_audio(item.path, self.sample_rate, item.start, item.frames)
                if wave.numel() == 0:
                    raise ValueError("no samples")
            except Exception as exc:  # libsndfile raises several types for corrupt files
                self.bad.add(item.path)
                warnings.warn(f"Skipping unreadable audio file {item.path}: {exc}", stacklevel=2)
                continue
            sample: dict[str, Any] = {"waveform": wave}
            if item.label is not None:
                sample["label"] = item.label
            return sample
        raise DataError(f"None of the {len(self.items)} audio items could be read; check the files' formats.")


def scan_audio_files(root: Path) -> tuple[list[tuple[Path, Any, int | None]], list[str]]:
    """Readable audio files under ``root`` with their ``soundfile.info`` and class index (``None``
    when the folder has no class sub-folders), and the class names.

    Files are found by :func:`ssl_core.files.find_files` (recursively, following symbolic links;
    with class sub-folders, loose files are skipped with a warning). Unreadable files are reported
    by path (``UserWarning``) and left out.
    """
    import soundfile as sf

    listing = find_files(root, audio_suffixes(), what="audio files", files=False,
                         hint="Put wav/flac files in the folder, or in one sub-folder per class for labelled "
                              "evaluation.").class_files("audio files")
    found = []
    for i, p in enumerate(listing.files):
        try:
            info = sf.info(str(p))
            if info.frames <= 0 or info.samplerate <= 0:
                raise ValueError(f"{info.frames} frames at {info.samplerate} Hz")
        except Exception as exc:
            warnings.warn(f"Skipping unreadable audio file {p}: {exc}", stacklevel=2)
            continue
        found.append((p, info, None if listing.labels is None else listing.labels[i]))
    return found, listing.classes


def audio_folder(
    path: str | None = None,
    segment_seconds: float = 10.0,
    eval_seconds: float = 4.0,
    crop_seconds: float = 4.0,
    test_fraction: float = 0.2,
    min_seconds: float = 0.1,
    seed: int = 0,
) -> DataModule:
    """wav/flac files (any rate, mono or stereo) under a folder; class sub-folders give labels.

    Training uses every file, cut into segments of at most ``segment_seconds`` (random
    ``crop_seconds`` crops are taken on the device). With two or more class sub-folders a
    stratified ``test_fraction`` of the files is held out, and probes see the first
    ``eval_seconds`` of each file. Files shorter than ``min_seconds`` are skipped.
    """
    if not path:
        raise DataError("The 'audiofolder' dataset needs --data PATH (a folder of wav/flac files).")
    root = Path(path).expanduser()
    found, classes = scan_audio_files(root)
    if not found:
        raise DataError(f"No readable audio found under {root}: every file failed to decode (see the warnings). "
                        "Check the files' formats (wav/flac decode everywhere).")
    labelled = len(classes) >= 2
    files, labels, infos = [], [], []
    for p, info, label in found:
        if info.frames / info.samplerate < min_seconds:
            warnings.warn(f"Skipping {p}: shorter than {min_seconds} s", stacklevel=2)
            continue
        files.append(p)
        infos.append(info)
        labels.append(label if labelled else -1)
    if not files:
        raise DataError(f"No audio file under {root} is at least {min_seconds} s long.")

    def segments(idx: Sequence[int]) -> list[AudioItem]:
        out = []
        for i in idx:
            sr, n = infos[i].samplerate, infos[i].frames
            seg = max(1, int(segment_seconds * sr))
            for s in range(0, n, seg):
                if (min(n, s + seg) - s) / sr >= min_seconds or s == 0:
                    out.append(AudioItem(files[i], s, min(seg, n - s), labels[i] if labelled else None))
        return out

    def heads(idx: Sequence[int]) -> list[AudioItem]:
        return [AudioItem(files[i], 0, min(infos[i].frames, int(eval_seconds * infos[i].samplerate)), labels[i])
                for i in idx]

    hours = sum(i.frames / i.samplerate for i in infos) / 3600
    extras: dict[str, Any] = {
        "augmenter_kwargs": {"crop_seconds": crop_seconds},
        "objective_kwargs": {"target_data": {
            "dataset": "audiofolder", "path": str(root),
            "dataset_kwargs": {"segment_seconds": segment_seconds, "eval_seconds": eval_seconds,
                               "crop_seconds": crop_seconds, "test_fraction": test_fraction,
                               "min_seconds": min_seconds, "seed": seed},
        }},
    }
    if not labelled:
        train = AudioFolderDataset(segments(range(len(files))))
        return DataModule(train=train, collate=pad_collate, extras=extras,
                          description=f"{len(files)} unlabelled audio files ({hours:.2f} h) from {root}")
    tr, te = stratified_split(labels, test_fraction, seed, both_sides=True)
    return DataModule(
        train=AudioFolderDataset(segments(tr)), eval_train=AudioFolderDataset(heads(tr)),
        eval_test=AudioFolderDataset(heads(te)), collate=pad_collate,
        num_classes=len(classes), class_names=classes, extras=extras,
        description=f"{len(files)} audio files ({hours:.2f} h) in {len(classes)} classes from {root}",
    )


# ---------------------------------------------------------------------------- built-in speech
def cache_root() -> Path:
    """Where generated data lives: ``$SSLKIT_CACHE`` or ``$XDG_CACHE_HOME/sslkit`` (~/.cache/sslkit)."""
    if os.environ.get("SSLKIT_CACHE"):
        return Path(os.environ["SSLKIT_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sslkit"


def voice_grid(accents: Sequence[str] = ACCENTS, variants: Sequence[str] = VARIANTS) -> list[str]:
    """eSpeak NG voice names ``accent+variant`` for every pair."""
    return [f"{a}+{v}" for a in accents for v in variants]


def held_out_voices(accents: Sequence[str], variants: Sequence[str]) -> set[str]:
    """A fixed, spread-out set of voices kept for testing: the ``(a + v) % s == 0`` diagonals of the
    accent x variant grid (``s = min(4, #accents, #variants)``, at least 2), so every variant and
    most accents appear in both splits."""
    step = max(2, min(4, len(accents), len(variants)))
    picked = {f"{a}+{v}" for i, a in enumerate(accents) for j, v in enumerate(variants) if (i + j) % step == 0}
    return picked


def build_spoken_words(
    words: Sequence[str], accents: Sequence[str], variants: Sequence[str], rates: Sequence[int],
    pitches: Sequence[int], backend: str = "auto", cache_dir: str | Path | None = None,
) -> tuple[Path, dict]:
    """Generate (once) and return the cache folder of the spoken-word set and its manifest."""
    from ssl_audio import tts

    engine = tts.backend_info(backend)
    utterances = [tts.Utterance(w, v, int(r), int(p))
                  for v in voice_grid(accents, variants) for w in words for r in rates for p in pitches]
    key_src = json.dumps({"utts": [u.__dict__ for u in utterances], "engine": engine, "sr": SAMPLE_RATE, "v": 1})
    key = hashlib.sha1(key_src.encode()).hexdigest()[:16]
    root = Path(cache_dir).expanduser() if cache_dir else cache_root() / "spoken_words"
    target = root / key
    manifest_path = target / "manifest.json"
    if not manifest_path.exists():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
        try:
            tts.generate_in_subprocess(utterances, tmp, SAMPLE_RATE, engine["backend"])
            try:
                os.replace(tmp, target)
            except OSError:  # another process finished first: keep its copy
                if not manifest_path.exists():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target, json.loads(manifest_path.read_text())


def spoken_words(
    path: str | None = None,
    words: Sequence[str] = WORDS,
    accents: Sequence[str] = ACCENTS,
    variants: Sequence[str] = VARIANTS,
    rates: Sequence[int] = RATES,
    pitches: Sequence[int] = PITCHES,
    crop_seconds: float = 1.0,
    backend: str = "auto",
    cache_dir: str | None = None,
) -> DataModule:
    """Spoken words (default: Speech Commands' 20 core words, :data:`WORDS`) synthesised offline by eSpeak NG.

    Every word is spoken by every ``accent+variant`` voice at every rate (words/min) and pitch:
    with the defaults 20 words x 24 voices x 3 rates x 2 pitches = 2,880 clips of ~0.2-0.8 s. The
    set is generated once into ``~/.cache/sslkit/spoken_words/<hash>/`` (16 kHz, 16-bit wav plus
    manifest.json) by a fresh process in a fixed order, so it is reproducible. Voices on the
    ``(accent + variant) % 4 == 0`` diagonal are held out for probe testing (a speaker-independent
    test); SSL training sees the other voices' clips without labels.
    """
    import soundfile as sf

    if path:
        raise DataError("The built-in 'spoken_words' set takes no --data; use dataset 'audiofolder' for your files.")
    if len(words) < 2:
        raise DataError(f"spoken_words needs at least two words to label, got {list(words)}.")
    not_words = [w for w in words if not isinstance(w, str) or not w.strip()]
    if not_words:
        raise DataError(
            f"dataset_kwargs.words must be non-empty strings; got {not_words!r} in {list(words)}. YAML (and --set) "
            "reads yes, no, on, off, true, false and null as other types: quote them, e.g. "
            "--set 'dataset_kwargs.words=[\"yes\",\"no\"]'.")
    if len(set(words)) != len(words):
        raise DataError(f"dataset_kwargs.words lists a word twice: {list(words)}. Each word is one class.")
    test_voices = held_out_voices(accents, variants)
    if len(test_voices) >= len(accents) * len(variants):
        raise DataError(
            f"spoken_words needs at least two voices to hold some out for testing; got accents {list(accents)} "
            f"x variants {list(variants)}. Add an accent or a variant."
        )
    folder, manifest = build_spoken_words(words, accents, variants, rates, pitches, backend, cache_dir)
    word_ix = {w: i for i, w in enumerate(words)}
    train_w, train_y, test_w, test_y = [], [], [], []
    for clip in manifest["clips"]:
        audio, sr = sf.read(str(folder / clip["file"]), dtype="int16")
        if sr != SAMPLE_RATE:
            raise DataError(f"{folder / clip['file']} is at {sr} Hz, expected {SAMPLE_RATE}; delete {folder} to regenerate.")
        wave = torch.from_numpy(audio.copy())
        if clip["voice"] in test_voices:
            test_w.append(wave)
            test_y.append(word_ix[clip["text"]])
        else:
            train_w.append(wave)
            train_y.append(word_ix[clip["text"]])
    train = InMemoryAudioDataset(train_w, train_y)
    secs = sum(w.numel() for w in train_w + test_w) / SAMPLE_RATE
    kwargs = {"words": list(words), "accents": list(accents), "variants": list(variants), "rates": list(rates),
              "pitches": list(pitches), "crop_seconds": crop_seconds, "backend": backend, "cache_dir": cache_dir}
    return DataModule(
        train=train, eval_train=train, eval_test=InMemoryAudioDataset(test_w, test_y), collate=pad_collate,
        num_classes=len(words), class_names=list(words),
        description=(f"{len(train_w) + len(test_w)} spoken words ({secs / 60:.1f} min) by eSpeak NG "
                     f"({manifest['engine']}): {len(train_w)} train / {len(test_w)} test clips, "
                     f"test voices held out"),
        extras={
            "augmenter_kwargs": {"crop_seconds": crop_seconds},
            "objective_kwargs": {"target_data": {"dataset": "spoken_words", "path": None, "dataset_kwargs": kwargs}},
        },
    )


# ---------------------------------------------------------------------------- Hugging Face datasets
def decode_audio_cell(value: Any, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None) -> Tensor:
    """One audio cell of a Hugging Face dataset -> mono float32 at ``sample_rate``.

    Undecoded Audio features (``{"bytes", "path"}``) and raw bytes are decoded with libsndfile;
    ``{"array", "sampling_rate"}`` cells are used as they are.
    """
    if isinstance(value, dict) and value.get("array") is not None:
        wave, sr = mix_down(np.asarray(value["array"], dtype=np.float32)), int(value["sampling_rate"])
    else:
        import io

        import soundfile as sf

        from ssl_core.hf_data import cell_bytes

        audio, sr = sf.read(io.BytesIO(cell_bytes(value)), dtype="float32", always_2d=True)
        wave = mix_down(audio)
    if max_seconds is not None:
        wave = wave[: max(1, int(max_seconds * sr))]
    return resample(wave, sr, sample_rate).contiguous()


class HFAudioDataset(Dataset):
    """Rows of a Hugging Face dataset whose ``column`` holds audio, decoded on access (first ``max_seconds``)."""

    def __init__(self, table: Any, column: str, rows: list[int], labels: list[int] | None,
                 max_seconds: float, origin: str) -> None:
        self.table, self.column, self.rows, self.labels = table, column, rows, labels
        self.max_seconds, self.origin = max_seconds, origin

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        try:
            wave = decode_audio_cell(self.table[self.rows[i]][self.column], SAMPLE_RATE, self.max_seconds)
        except Exception as exc:  # name the row; a silent substitute would hide broken data
            raise DataError(f"{self.origin} row {self.rows[i]}: audio could not be decoded ({type(exc).__name__}: {exc}).") from exc
        sample: dict[str, Any] = {"waveform": wave}
        if self.labels is not None:
            sample["label"] = self.labels[i]
        return sample


def hf_audio(
    path: str | None = None,
    audio_column: str = "audio",
    label_column: str | None = "label",
    split: str = "train",
    test_split: str | None = None,
    segment_seconds: float = 10.0,
    eval_seconds: float = 4.0,
    crop_seconds: float = 4.0,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> DataModule:
    """A Hugging Face audio dataset on disk (save_to_disk folder, .arrow or .parquet files).

    ``audio_column`` holds an Audio feature (any rate; resampled to 16 kHz mono), bytes of
    wav/flac files, or ``{"array", "sampling_rate"}``; ``label_column`` (optional) labels clips for
    the probes. Training reads the first ``segment_seconds`` of each clip, probes the first
    ``eval_seconds``; a ``test``/``validation`` split, or a stratified ``test_fraction``, is held out.
    """
    from ssl_core.hf_data import check_columns, class_labels, holdout, labels_like, open_hf, raw_column

    hf = open_hf(path, split, test_split)
    check_columns(hf.train, hf.source, audio_column=audio_column)
    train_t = raw_column(hf.train, audio_column)
    labels, names = class_labels(hf.train, label_column)
    extras: dict[str, Any] = {
        "augmenter_kwargs": {"crop_seconds": crop_seconds},
        "objective_kwargs": {"target_data": {
            "dataset": "hf_audio", "path": str(path),
            "dataset_kwargs": {"audio_column": audio_column, "label_column": label_column, "split": split,
                               "test_split": test_split, "segment_seconds": segment_seconds,
                               "eval_seconds": eval_seconds, "crop_seconds": crop_seconds,
                               "test_fraction": test_fraction, "seed": seed},
        }},
    }
    every = list(range(len(train_t)))
    if labels is None or len(names or []) < 2:
        return DataModule(train=HFAudioDataset(train_t, audio_column, every, None, segment_seconds, hf.source),
                          collate=pad_collate, extras=extras, description=f"{len(train_t)} unlabelled clips from {hf.source}")
    if hf.test is not None and label_column in hf.test.column_names:
        test_t = raw_column(hf.test, audio_column)
        test_labels = labels_like(hf.test, label_column, names, hf.source)  # type: ignore[arg-type]
        tr, te, test_table = every, list(range(len(test_t))), test_t
    else:
        tr, te = holdout(len(train_t), labels, test_fraction, seed)
        test_labels, test_table = [labels[i] for i in te], train_t
    train_labels = [labels[i] for i in tr]
    return DataModule(
        train=HFAudioDataset(train_t, audio_column, tr, train_labels, segment_seconds, hf.source),
        eval_train=HFAudioDataset(train_t, audio_column, tr, train_labels, eval_seconds, hf.source),
        eval_test=HFAudioDataset(test_table, audio_column, te, test_labels, eval_seconds, hf.source),
        collate=pad_collate, num_classes=len(names or []), class_names=names, extras=extras,
        description=f"{len(tr)} train / {len(te)} test clips in {len(names or [])} classes from {hf.source}",
    )
