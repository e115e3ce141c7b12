"""The built-in spoken-word set and `ssl run` end to end with tiny settings."""

from __future__ import annotations

import json

import pytest
import torch

from ssl_audio import tts
from ssl_audio.data import held_out_voices, spoken_words
from ssl_core.errors import DataError


def test_tiny_set_is_real_labelled_speech_split_by_voice(tiny_words):
    dm = tiny_words
    assert dm.class_names == ["yes", "no", "seven"] and dm.num_classes == 3
    assert len(dm.train) == 12 and len(dm.eval_test) == 12  # 2 of the 4 voices held out
    assert dm.eval_train is dm.train
    for ds in (dm.train, dm.eval_test):
        labels = [ds[i]["label"] for i in range(len(ds))]
        assert sorted(set(labels)) == [0, 1, 2] and labels.count(0) == labels.count(2)
        for i in range(len(ds)):
            w = ds[i]["waveform"]
            assert 0.15 * 16000 < w.shape[0] < 1.2 * 16000  # one word
            assert w.abs().max() > 0.05 and w.pow(2).mean().sqrt() > 0.01  # audible, not silence
    assert held_out_voices(["en-us", "en-gb-x-rp"], ["m1", "f3"]) == {"en-us+m1", "en-gb-x-rp+f3"}
    # "seven" is longer than "no" in every voice
    dur = {c: [dm.train[i]["waveform"].shape[0] for i in range(12) if dm.train[i]["label"] == c] for c in (1, 2)}
    assert min(dur[2]) > max(dur[1]) * 0.9


def test_generation_is_deterministic_and_cached(tmp_path, monkeypatch):
    kwargs = dict(words=["up", "down"], accents=["en-us"], variants=["m3", "f1"], rates=[160], pitches=[50])
    a = spoken_words(cache_dir=str(tmp_path / "a"), **kwargs)
    b = spoken_words(cache_dir=str(tmp_path / "b"), **kwargs)
    files_a = sorted((tmp_path / "a").rglob("*.wav"))
    files_b = sorted((tmp_path / "b").rglob("*.wav"))
    assert len(files_a) == 4 and [f.read_bytes() for f in files_a] == [f.read_bytes() for f in files_b]
    assert torch.equal(a.train[0]["waveform"], b.train[0]["waveform"])
    # a second use reads the cache and never calls the engine
    monkeypatch.setattr(tts, "generate_in_subprocess", lambda *a, **k: pytest.fail("regenerated a cached set"))
    spoken_words(cache_dir=str(tmp_path / "a"), **kwargs)


def test_missing_engine_error_says_how_to_install_it(monkeypatch, tmp_path):
    def broken():
        raise OSError("libespeak-ng.so: cannot open shared object file")

    monkeypatch.setattr(tts, "_LibraryBackend", broken)
    monkeypatch.setattr(tts.shutil, "which", lambda name: None)
    with pytest.raises(DataError) as err:
        spoken_words(cache_dir=str(tmp_path), words=["a", "b"])
    msg = str(err.value)
    assert "apt-get install espeak-ng" in msg and "pip install espeakng-loader" in msg and "--data" in msg


def test_cli_wav2vec2_on_builtin_speech(tmp_path, reevaluate, ssl_cli, monkeypatch):
    """Through the console entry point, in this process (a subprocess adds only start-up time)."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "w2v"
    proc = ssl_cli("run", "--modality", "audio", "--objective", "wav2vec2", "--steps", "3", "--batch-size", "8",
                   "--set", "encoder_kwargs.size=tiny", "--set", "evaluators=[knn,health]",
                   "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "spoken_words" in proc.stderr and "knn_top1" in proc.stdout
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 3 and "code_ppl" in metrics[-1] and "loss_contrastive" in metrics[-1]
    ev = json.loads((out / "eval.json").read_text())
    assert set(ev) == {"trained", "random"} and ev["trained"]["knn_top1"] == reevaluate(out)["knn_top1"]
    code = json.loads((out / "codebook.json").read_text())
    assert code["code_perplexity"] >= 1.0 and code["frames"] > 100
    assert (out / "encoder.pt").exists() and (out / "config.yaml").exists()


def test_cli_hubert_two_iterations_on_a_user_folder(speech_folder, tmp_path, monkeypatch):
    """In-process through the same typer app (saves two interpreter start-ups)."""
    from typer.testing import CliRunner

    from ssl_core.cli import app

    monkeypatch.chdir(tmp_path)
    it1, it2 = tmp_path / "it1", tmp_path / "it2"
    common = ["run", "--modality", "audio", "--objective", "hubert", "--data", str(speech_folder), "--steps", "2",
              "--batch-size", "4", "--set", "encoder_kwargs.size=tiny", "--set", "objective_kwargs.num_clusters=8",
              "--no-progress"]
    runner = CliRunner()
    with pytest.warns(UserWarning, match="broken.wav"):  # the corrupt file is named and skipped
        res = runner.invoke(app, [*common, "--out", str(it1)])
    assert res.exit_code == 0, res.output[-3000:]
    assert "linear_top1" in res.output and "fewshot_1shot" in res.output
    res = runner.invoke(app, [*common, "--out", str(it2), "--set", f"objective_kwargs.targets_from={it1}",
                              "--set", "objective_kwargs.target_layer=1"])
    assert res.exit_code == 0, res.output[-3000:]
    cfg = (it2 / "config.yaml").read_text()
    assert "targets_from" in cfg and "audiofolder" in cfg
    last = json.loads((it2 / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 2 and last["loss_masked"] > 0


def test_a_single_voice_cannot_be_split_and_says_so(tmp_path):
    with pytest.raises(DataError, match="at least two voices"):
        spoken_words(cache_dir=str(tmp_path), words=["a", "b"], accents=["en-us"], variants=["m1"])


def test_words_that_yaml_read_as_booleans_or_repeats_are_refused_with_the_fix(tmp_path):
    # `--set dataset_kwargs.words=[yes,no]` arrives as [True, False]: say so before eSpeak fails on it
    with pytest.raises(DataError, match=r"quote them.*\[True, False\]|\[True, False\].*quote them"):
        spoken_words(cache_dir=str(tmp_path), words=[True, False])
    with pytest.raises(DataError, match="non-empty strings"):
        spoken_words(cache_dir=str(tmp_path), words=["up", " "])
    with pytest.raises(DataError, match="twice"):
        spoken_words(cache_dir=str(tmp_path), words=["up", "down", "up"])
    assert not any(tmp_path.iterdir())  # refused before anything was generated
