"""One file-discovery routine for every reader, and an explicit, deterministic choice of reader for
``--data`` (issue 15, point 1)."""

from __future__ import annotations

import os
import types
from pathlib import Path

import numpy as np
import pytest

from ssl_core import hookimpl
from ssl_core.errors import ConfigError, DataError
from ssl_core.files import IMAGE_SUFFIXES, Accepts, find_files
from ssl_core.registry import Registry
from ssl_core.resolve import resolve_config


# ------------------------------------------------------------------ the discovery routine
def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_find_files_labels_class_folders_follows_links_and_skips_hidden(tmp_path: Path) -> None:
    shared = tmp_path / "shared_storage"
    _touch(shared / "cats" / "a.JPG")
    _touch(shared / "cats" / "sub" / "b.png")
    _touch(shared / "dogs" / "c.jpeg")
    _touch(shared / "dogs" / ".hidden.png")
    _touch(shared / "dogs" / "notes.txt")
    root = tmp_path / "data"
    root.mkdir()
    os.symlink(shared / "cats", root / "cats")  # class folders that live elsewhere
    os.symlink(shared / "dogs", root / "dogs")
    os.symlink(root, root / "dogs_loop", target_is_directory=True)  # a loop must not hang or duplicate
    _touch(root / ".cache" / "d.png")
    listing = find_files(root, IMAGE_SUFFIXES, what="images")
    rel = [p.relative_to(root).as_posix() for p in listing.files]
    assert rel == ["cats/a.JPG", "cats/sub/b.png", "dogs/c.jpeg"]
    assert listing.classes == ["cats", "dogs"] and listing.labels == [0, 0, 1]


def test_find_files_loose_files_and_single_class(tmp_path: Path) -> None:
    _touch(tmp_path / "a" / "1.png")
    _touch(tmp_path / "b" / "2.png")
    _touch(tmp_path / "loose.png")
    listing = find_files(tmp_path, IMAGE_SUFFIXES)
    assert listing.labels == [0, 1, None]
    with pytest.warns(UserWarning, match="Skipping 1 images directly under"):
        only = listing.class_files("images")
    assert [p.name for p in only.files] == ["1.png", "2.png"] and only.labels == [0, 1]
    one = tmp_path / "one"
    _touch(one / "only_class" / "x.png")
    assert find_files(one, IMAGE_SUFFIXES).labels is None  # fewer than two classes: unlabelled


def test_find_files_errors_name_path_suffixes_and_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist. Check --data"):
        find_files(tmp_path / "nope", (".wav",))
    _touch(tmp_path / "x.txt")
    with pytest.raises(DataError, match=r"No audio files found under .* \(looked for \.wav, in sub-folders too, "
                                        r"following symbolic links\)\. Put wav files here\."):
        find_files(tmp_path, (".wav",), what="audio files", hint="Put wav files here.")
    with pytest.raises(DataError, match="is a file, but this reader takes a folder"):
        find_files(tmp_path / "x.txt", (".txt",), files=False)
    assert find_files(tmp_path / "x.txt", (".txt",)).files == [tmp_path / "x.txt"]
    _touch(tmp_path / "c.txt.gz")
    assert [p.name for p in find_files(tmp_path, (".txt",), compressed=True).files] == ["c.txt.gz", "x.txt"]


def test_accepts_matching(tmp_path: Path) -> None:
    images = Accepts(IMAGE_SUFFIXES, files=False)
    shards = Accepts((".tar",), patterns=True)
    remote = Accepts((".tar",), folders=False, files=False, schemes=("http", "https", "pipe"))
    _touch(tmp_path / "imgs" / "k" / "a.png")
    _touch(tmp_path / "tars" / "s-000.tar")
    assert images.matches(str(tmp_path / "imgs")) and not shards.matches(str(tmp_path / "imgs"))
    assert shards.matches(str(tmp_path / "tars")) and shards.matches(str(tmp_path / "tars" / "s-000.tar"))
    assert shards.matches(str(tmp_path / "tars" / "s-{000..009}.tar"))
    assert not images.matches(str(tmp_path / "imgs" / "k" / "a.png"))  # a folder reader, not a file one
    assert remote.matches("https://host/s-{000..009}.tar") and remote.matches("pipe:cat x.tar")
    assert not shards.matches("https://host/s.tar") and not remote.matches(str(tmp_path / "tars"))
    assert "a folder, a file or a pattern of .tar" in shards.describe() and "https://" in remote.describe()


# ------------------------------------------------------------------ every modality reads the same folder
def _linked_classes(tmp_path: Path, write) -> Path:  # type: ignore[no-untyped-def]
    """root/<class> are symbolic links into another tree, as on shared storage."""
    store, root = tmp_path / "store", tmp_path / "root"
    root.mkdir()
    for c, cls in enumerate(["left", "right"]):
        for i in range(4):
            write(store / cls / f"item{i}", c, i)
        os.symlink(store / cls, root / cls, target_is_directory=True)
    return root


def test_vision_reader_follows_symlinked_class_folders(tmp_path: Path) -> None:
    from PIL import Image

    from ssl_vision.data import image_folder

    def write(stem: Path, c: int, i: int) -> None:
        stem.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), 40 * c + i, np.uint8)).save(stem.with_suffix(".png"))

    data = image_folder(str(_linked_classes(tmp_path, write)), image_size=8, test_fraction=0.25)
    assert data.class_names == ["left", "right"] and data.num_classes == 2
    assert len(data.train) + len(data.eval_test) == 8  # type: ignore[arg-type]


def test_audio_reader_follows_symlinked_class_folders(tmp_path: Path) -> None:
    import soundfile as sf

    from ssl_audio.data import audio_folder

    def write(stem: Path, c: int, i: int) -> None:
        stem.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(8000) / 16000
        sf.write(stem.with_suffix(".wav"), (0.3 * np.sin(2 * np.pi * (200 + 300 * c + 10 * i) * t)).astype(np.float32),
                 16000)

    data = audio_folder(str(_linked_classes(tmp_path, write)), test_fraction=0.25)
    assert data.class_names == ["left", "right"] and data.num_classes == 2
    assert len(data.eval_train) + len(data.eval_test) == 8  # type: ignore[arg-type]


def test_text_reader_follows_symlinked_class_folders(tmp_path: Path) -> None:
    from ssl_text.corpus import list_corpus_files

    def write(stem: Path, c: int, i: int) -> None:
        _touch(stem.with_suffix(".txt"), f"document {c} {i}".encode())

    files, labels = list_corpus_files(_linked_classes(tmp_path, write))
    assert len(files) == 8 and labels == ["left"] * 4 + ["right"] * 4


# ------------------------------------------------------------------ choosing the reader for --data
def _reader_plugin(name: str, accepts: Accepts | None, modality: str = "vision") -> types.ModuleType:
    mod = types.ModuleType(f"reader_{name}")

    def register_datasets(register):  # type: ignore[no-untyped-def]
        register(name, "no_such_module.readers:read", modality=modality, summary="a third-party reader",
                 accepts=accepts)

    mod.register_datasets = hookimpl(register_datasets)  # type: ignore[attr-defined]
    return mod


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    for cls in ("a", "b"):
        _touch(tmp_path / "imgs" / cls / "x.png")
    return tmp_path / "imgs"


def test_installed_reader_cannot_hijack_a_builtin_method(image_tree: Path) -> None:
    """A plugin registering an 'aaa' image reader (alphabetically first; declared or not) does not
    change the reader `ssl run -o simclr --data DIR` uses."""
    reg = Registry()
    reg.add_plugin(_reader_plugin("aaa_images", Accepts(IMAGE_SUFFIXES)), name="hijack1")
    reg.add_plugin(_reader_plugin("aab_anything", None), name="hijack2")
    assert not reg.failures
    cfg = resolve_config("simclr", overrides={"data": str(image_tree)}, registry=reg)
    assert cfg.dataset == "imagefolder"
    vicreg = resolve_config("vicreg", overrides={"data": str(image_tree)}, registry=reg)  # a third-party method
    assert vicreg.dataset == "imagefolder"  # its recipe's built-in set (vision's digits) names the reader


def test_reader_follows_what_the_path_holds(tmp_path: Path) -> None:
    reg = Registry()
    _touch(tmp_path / "shards" / "s-000.tar")
    assert resolve_config("simclr", overrides={"data": str(tmp_path / "shards")}, registry=reg).dataset == "webdataset"
    assert resolve_config("simclr", overrides={"data": "https://host/s-{000..009}.tar"},
                          registry=reg).dataset == "webdataset_stream"
    assert resolve_config("clip", overrides={"data": str(tmp_path / "shards")}, registry=reg).dataset == "captions"
    explicit = resolve_config("simclr", overrides={"data": str(tmp_path / "shards"), "dataset": "webdataset_stream"},
                              registry=reg)
    assert explicit.dataset == "webdataset_stream"  # --dataset always wins


def test_ambiguous_choice_is_refused_with_candidates_and_the_flag(tmp_path: Path) -> None:
    """A modality whose built-in set names no reader: two installed readers accepting the path
    are refused; one is used; none is explained."""
    reg = Registry()
    data = tmp_path / "series"
    _touch(data / "a.csv")
    reg.add_plugin(_reader_plugin("series_csv", Accepts((".csv",)), modality="toy"), name="p1")
    reg.add_plugin(_reader_plugin("series_any", None, modality="toy"), name="p2")
    with pytest.raises(ConfigError) as err:
        resolve_config("toy_align", overrides={"data": str(data)}, registry=reg)
    msg = str(err.value)
    assert "Several toy readers accept --data" in msg and "'series_any'" in msg and "'series_csv'" in msg
    assert "--dataset NAME" in msg

    reg2 = Registry()
    reg2.add_plugin(_reader_plugin("series_csv", Accepts((".csv",)), modality="toy"), name="p1")
    assert resolve_config("toy_align", overrides={"data": str(data)}, registry=reg2).dataset == "series_csv"
    _touch(tmp_path / "other" / "a.parquet")
    with pytest.raises(DataError, match=r"No installed toy reader accepts --data .*'series_csv' \(.*\): a folder or "
                                        r"a file of \.csv"):
        resolve_config("toy_align", overrides={"data": str(tmp_path / "other")}, registry=reg2)
    with pytest.raises(DataError, match="does not exist"):
        resolve_config("toy_align", overrides={"data": str(tmp_path / "missing")}, registry=reg2)


def test_a_recipe_can_name_its_reader(tmp_path: Path) -> None:
    reg = Registry()
    mod = types.ModuleType("named_reader")

    def register_objectives(register):  # type: ignore[no-untyped-def]
        register("toy_named", "sslkit_testplugins.toy_components:AlignUniform", modality="toy", summary="s",
                 recipe={"encoder": "toy_mlp", "augmenter": "toy_noise", "dataset": "toy_mixture",
                         "reader": ["series_b", "series_a"]})

    mod.register_objectives = hookimpl(register_objectives)  # type: ignore[attr-defined]
    reg.add_plugin(mod, name="named")
    reg.add_plugin(_reader_plugin("series_a", Accepts((".csv",)), modality="toy"), name="pa")
    reg.add_plugin(_reader_plugin("series_b", Accepts((".csv",)), modality="toy"), name="pb")
    _touch(tmp_path / "d" / "x.csv")
    cfg = resolve_config("toy_named", overrides={"data": str(tmp_path / "d")}, registry=reg)
    assert cfg.dataset == "series_b"


def test_a_marker_file_wins_over_suffixes(tmp_path: Path) -> None:
    """A saved Hugging Face dataset folder (state.json) that also holds a README.md goes to hf_text,
    not to the text-file reader that accepts .md files."""
    reg = Registry()
    saved = tmp_path / "saved"
    _touch(saved / "state.json", b"{}")
    _touch(saved / "README.md", b"# card")
    _touch(saved / "data-00000-of-00001.arrow")
    assert resolve_config("mlm", overrides={"data": str(saved)}, registry=reg).dataset == "hf_text"
    plain = tmp_path / "notes"
    _touch(plain / "README.md", b"# notes")
    assert resolve_config("mlm", overrides={"data": str(plain)}, registry=reg).dataset == "textfiles"
