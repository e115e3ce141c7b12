"""Files from elsewhere are data, never code: crafted checkpoints, encoders and pipe: specs.

Every malicious file here would create a marker file if it ran its payload; each test asserts
that the marker never appears and that the user gets a clear message naming the file.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
import yaml

from ssl_core.errors import DataError
from ssl_core.streaming import PIPE_ENV

RUN = ["-o", "toy_align", "--steps", "4", "--no-eval", "--set", "train.checkpoint_every=2"]


class _Payload:
    """Unpickling this calls os.system: what a crafted checkpoint does to an unsafe torch.load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def _save_malicious_encoder(path: Path, marker: Path, encoder: str, **fields: object) -> None:
    """An encoder.pt as sslkit writes it, plus one object whose unpickling creates ``marker``."""
    torch.save({"encoder": encoder, "encoder_kwargs": {}, "state_dict": {}, **fields, "x": _Payload(marker)}, path)


def test_malicious_checkpoint_is_refused_on_resume(toy_run: Path, tmp_path: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "PWNED"
    ck = toy_run / "checkpoints" / "last.pt"
    state = torch.load(ck, weights_only=True)
    torch.save({**state, "extra": _Payload(marker)}, ck)
    res = ssl_cli("run", "--resume", "--out", toy_run, "--steps", "6", "--no-eval")
    assert not marker.exists(), "loading the checkpoint ran its payload"
    assert res.returncode == 2, res.stderr
    assert f"Refusing to load the checkpoint {ck}" in res.stderr and "system" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("command", ["eval", "generate"])
def test_malicious_encoder_is_refused(toy_run: Path, tmp_path: Path, ssl_cli, command: str) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "PWNED"
    _save_malicious_encoder(toy_run / "encoder.pt", marker, "toy_mlp")
    res = ssl_cli(command, toy_run)
    assert not marker.exists()
    assert res.returncode == 2 and f"Refusing to load the encoder file {toy_run / 'encoder.pt'}" in res.stderr


def test_malicious_init_weights_are_refused(tmp_path: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    marker, weights = tmp_path / "PWNED", tmp_path / "weights.pt"
    torch.save({"net.0.weight": torch.zeros(1), "x": _Payload(marker)}, weights)
    res = ssl_cli("run", *RUN, "--out", tmp_path / "run", "--init", weights)
    assert not marker.exists()
    assert res.returncode == 2 and f"Refusing to load the --init file {weights}" in res.stderr


def test_plain_pickle_with_a_payload_is_refused(tmp_path: Path) -> None:
    """Not even a torch file: a bare pickle whose reduce runs a command."""
    from ssl_core.checkpoint import load_checkpoint

    marker, path = tmp_path / "PWNED", tmp_path / "last.pt"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(DataError, match="not a checkpoint sslkit can read"):
        load_checkpoint(path)
    assert not marker.exists()


def test_hubert_targets_from_a_malicious_run_are_refused(tmp_path: Path) -> None:
    pytest.importorskip("ssl_audio")
    from ssl_audio.hubert import load_teacher

    marker = tmp_path / "PWNED"
    _save_malicious_encoder(tmp_path / "encoder.pt", marker, "wav2vec2_small")
    with pytest.raises(DataError, match="Refusing to load the encoder file"):
        load_teacher(tmp_path)
    assert not marker.exists()


def test_text_generator_from_a_malicious_run_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("ssl_text")
    from ssl_text.generate import load_generator

    marker = tmp_path / "PWNED"
    (tmp_path / "config.yaml").write_text("objective: clm\n")
    (tmp_path / "tokenizer.json").write_text("{}")
    _save_malicious_encoder(tmp_path / "encoder.pt", marker, "gpt_small", modality="text")
    with pytest.raises(DataError, match="Refusing to load the encoder file"):
        load_generator(tmp_path)
    assert not marker.exists()


def test_written_files_hold_only_plain_values(toy_run: Path) -> None:
    """What sslkit writes loads with weights_only=True and no allow-list."""
    state = torch.load(toy_run / "checkpoints" / "last.pt", weights_only=True)
    assert type(state["torch_version"]) is str
    torch.load(toy_run / "encoder.pt", weights_only=True)


def test_checkpoints_with_the_old_torch_version_object_still_resume(toy_run: Path, ssl_cli) -> None:  # type: ignore[no-untyped-def]
    """Checkpoints written before this change stored torch.__version__ (a TorchVersion)."""
    ck = toy_run / "checkpoints" / "last.pt"
    state = torch.load(ck, weights_only=True)
    torch.save({**state, "torch_version": torch.__version__}, ck)
    res = ssl_cli("run", "--resume", "--out", toy_run, "--steps", "6", "--no-eval")
    assert res.returncode == 0, res.stderr


# ---------------------------------------------------------------------- pipe: shard commands
def _stream_config(tmp_path: Path, **fields: object) -> Path:
    cfg = {"modality": "vision", "objective": "simclr", "dataset": "webdataset_stream",
           "train": {"steps": 1, "batch_size": 4}, **fields}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_pipe_spec_from_a_config_file_does_not_run(tmp_path: Path, ssl_cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv(PIPE_ENV, raising=False)
    marker = tmp_path / "PWNED"
    config = _stream_config(tmp_path, data=f"pipe:touch {marker}; cat /dev/null")
    res = ssl_cli("run", "--config", config, "--out", tmp_path / "run", "--no-eval")
    assert not marker.exists(), "a config file ran a shell command"
    assert res.returncode == 2 and "--allow-pipe" in res.stderr and PIPE_ENV in res.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_pipe_opt_in_on_the_command_line_runs_the_command(tmp_path: Path, ssl_cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The opt-in works: the command runs (and its empty output is then reported as no data)."""
    monkeypatch.setenv(PIPE_ENV, "0")  # restored after the test (--allow-pipe sets it)
    marker = tmp_path / "RAN"
    config = _stream_config(tmp_path, data=f"pipe:touch {marker}; cat /dev/null")
    res = ssl_cli("run", "--config", config, "--out", tmp_path / "run", "--no-eval", "--allow-pipe")
    assert marker.exists()
    assert res.returncode == 2 and "less than one batch" in res.stderr


def test_ssl_eval_never_runs_pipe_commands(tmp_path: Path, ssl_cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Even with the opt-in in the environment, a downloaded run folder cannot run a command."""
    monkeypatch.setenv(PIPE_ENV, "1")
    marker = tmp_path / "PWNED"
    run = tmp_path / "downloaded"
    run.mkdir()
    (run / "config.yaml").write_text(_stream_config(
        tmp_path, data=f"pipe:touch {marker}", dataset_kwargs={"eval_path": f"pipe:touch {marker}"}).read_text())
    torch.save({"encoder": "resnet_small", "encoder_kwargs": {}, "state_dict": {}}, run / "encoder.pt")
    res = ssl_cli("eval", run)
    assert not marker.exists()
    assert res.returncode == 2 and "never run pipe: commands" in res.stderr
    # ssl report reads the folder's files only
    (run / "metrics.jsonl").write_text('{"step": 1, "epoch": 0, "loss": 1.0, "lr": 0.1}\n')
    res = ssl_cli("report", run)
    assert res.returncode == 0, res.stderr
    assert not marker.exists()
