"""scripts/install.sh installs the Debian data packages where it can (apt-get update first, as
root or through passwordless sudo) and never fails the install where it cannot: it says what to
do instead. Run with fake apt-get/dpkg-query/id/sudo on PATH, so nothing is really installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install.sh"


def _fake_bin(tmp_path: Path, uid: int, tools: dict[str, str]) -> Path:
    """A PATH with bash's helpers and the given fake tools (each logs its arguments)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for real in ("bash", "dirname", "grep", "cat"):
        os.symlink(shutil.which(real), bin_dir / real)  # type: ignore[arg-type]
    log = tmp_path / "calls.log"
    scripts = {"id": f'[ "$1" = "-u" ] && echo {uid} || echo uid={uid}', **tools}
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f'#!{shutil.which("bash")}\necho "{name} $*" >> {log}\n{body}\n')
        path.chmod(0o755)
    return bin_dir


def _run(bin_dir: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), "--data"], capture_output=True, text=True, timeout=60,
                          env={"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/tmp"), **env})


def _calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


NOT_INSTALLED = {"dpkg-query": "exit 1"}


def test_root_with_apt_updates_then_installs(tmp_path: Path) -> None:
    bin_dir = _fake_bin(tmp_path, 0, {**NOT_INSTALLED, "apt-get": "exit 0"})
    res = _run(bin_dir)
    assert res.returncode == 0, res.stderr
    apt = [c for c in _calls(tmp_path) if c.startswith("apt-get")]
    assert apt[0].startswith("apt-get update")
    assert apt[1].startswith("apt-get install") and "-y" in apt[1]
    assert "dataset-fashion-mnist" in apt[1] and "wordnet-base" in apt[1]  # one install for every dataset


def test_non_root_uses_passwordless_sudo(tmp_path: Path) -> None:
    bin_dir = _fake_bin(tmp_path, 1000, {**NOT_INSTALLED, "apt-get": "exit 0", "sudo": '[ "$1" = "-n" ] && shift; [ "$1" = "true" ] && exit 0; "$@"'})
    res = _run(bin_dir)
    assert res.returncode == 0, res.stderr
    sudo = [c for c in _calls(tmp_path) if c.startswith("sudo -n apt-get")]
    assert sudo[0].startswith("sudo -n apt-get update") and "install" in sudo[1]


@pytest.mark.parametrize("case", ["no-apt", "no-sudo", "apt-fails", "skip"])
def test_where_it_cannot_install_it_says_what_to_do_and_succeeds(tmp_path: Path, case: str) -> None:
    tools = dict(NOT_INSTALLED)
    uid, env = 0, {}
    if case == "no-sudo":
        uid, tools["apt-get"] = 1000, "exit 0"
    elif case == "apt-fails":
        tools["apt-get"] = "exit 100"
    elif case == "skip":
        tools["apt-get"], env = "exit 0", {"SSLKIT_SKIP_APT": "1"}
    res = _run(_fake_bin(tmp_path, uid, tools), **env)
    assert res.returncode == 0, res.stderr
    assert "SSLKIT_FASHION_MNIST=" in res.stderr and "t10k-images-idx3-ubyte.gz" in res.stderr
    assert "wordnet-base" in res.stderr and "WNSEARCHDIR=" in res.stderr and "data.noun" in res.stderr
    reason = {"no-apt": "apt-get is not available", "no-sudo": "needs root", "apt-fails": "failed",
              "skip": "SSLKIT_SKIP_APT=1"}[case]
    assert reason in res.stderr
    if case in ("no-sudo", "skip"):
        assert not [c for c in _calls(tmp_path) if c.startswith("apt-get")]


def test_only_the_missing_package_is_installed(tmp_path: Path) -> None:
    only_wordnet_missing = '[ "$3" = "wordnet-base" ] && exit 1; echo "install ok installed"'
    bin_dir = _fake_bin(tmp_path, 0, {"dpkg-query": only_wordnet_missing, "apt-get": "exit 0"})
    res = _run(bin_dir)
    assert res.returncode == 0, res.stderr
    install = [c for c in _calls(tmp_path) if c.startswith("apt-get install")]
    assert len(install) == 1 and "wordnet-base" in install[0] and "dataset-fashion-mnist" not in install[0]


def test_already_installed_does_nothing(tmp_path: Path) -> None:
    bin_dir = _fake_bin(tmp_path, 0, {"dpkg-query": 'echo "install ok installed"', "apt-get": "exit 1"})
    res = _run(bin_dir)
    assert res.returncode == 0 and "already installed" in res.stdout
    assert not [c for c in _calls(tmp_path) if c.startswith("apt-get")]


def _low_disk_warning(where: str, need_gb: int) -> subprocess.CompletedProcess:
    """scripts/install.sh's warn_if_low_disk alone, under the script's own `set -euo pipefail`."""
    body = SCRIPT.read_text()
    function = body[body.index("warn_if_low_disk() {"):]
    function = function[:function.index("\n}\n") + 3]
    script = f"set -euo pipefail\n{function}warn_if_low_disk {need_gb} {where}\necho carried-on\n"
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)


def test_low_disk_warns_and_the_install_carries_on(tmp_path: Path) -> None:
    res = _low_disk_warning(str(tmp_path), 10**7)  # 10 PB: more than any disk has free
    assert res.returncode == 0 and res.stdout.strip() == "carried-on"
    assert "GB free on the disk holding" in res.stderr and "about 10000000 GB" in res.stderr
    assert "No space left on device" in res.stderr and "TMPDIR" in res.stderr
    res = _low_disk_warning(str(tmp_path), 0)
    assert res.returncode == 0 and res.stderr == ""


def test_a_missing_folder_gives_no_warning_and_does_not_stop_the_install(tmp_path: Path) -> None:
    """TMPDIR pointing at a folder that does not exist: df fails, which under pipefail used to
    end the whole install silently."""
    res = _low_disk_warning(str(tmp_path / "no" / "such" / "dir"), 6)
    assert res.returncode == 0 and res.stdout.strip() == "carried-on" and res.stderr == ""
