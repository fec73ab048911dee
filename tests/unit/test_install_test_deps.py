"""scripts/install_test_deps.sh on a machine that lacks the test packages, simulated with a PATH
of stand-ins: an ``id`` that says who we are, an ``apt-get`` (and maybe ``sudo``) that records its
calls and "installs" a package by putting a stand-in of its command on that PATH."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "install_test_deps.sh"
PACKAGES = ["chromium", "redis-server", "ffmpeg"]
BASH = "/bin/bash"


def stand_in(path: Path, body: str) -> None:
    path.write_text(f"#!{BASH}\n{body}\n")
    path.chmod(0o755)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A PATH holding only ``env``, ``dirname`` and ``bash`` (real) and what each test adds."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("/usr/bin/env", "/usr/bin/dirname", BASH):
        (folder / Path(tool).name).symlink_to(tool)
    return folder


def fake_machine(folder: Path, *, uid: int, apt: bool = True, sudo: bool = False) -> Path:
    log = folder.parent / "calls.log"
    stand_in(folder / "id", f'[ "$1" = -u ] && echo {uid}')
    if apt:
        # "install": every package named after the options becomes a command on this PATH
        stand_in(
            folder / "apt-get",
            f'echo "apt-get $*" >> {log}\n'
            'if [ "$1" = install ]; then for p in "$@"; do case "$p" in -*|install) ;; *)'
            f' printf "#!{BASH}\\n" > {folder}/$p; /bin/chmod +x {folder}/$p ;; esac; done; fi',
        )
    if sudo:
        stand_in(folder / "sudo", f'echo "sudo $*" >> {log}\n[ "$1" = -n ] && [ "$2" = true ] && exit 0\nexec "$@"')
    return log


def run(folder: Path, script: Path = SCRIPT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASH, str(script)], env={"PATH": str(folder), **env}, capture_output=True, text=True, check=False,
        stdin=subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_as_root_it_installs_every_missing_package_quietly(bin_dir: Path) -> None:
    log = fake_machine(bin_dir, uid=0)
    result = run(bin_dir)
    assert result.returncode == 0, result.stderr
    assert calls(log) == [
        "apt-get update -qq",
        f"apt-get install -y -qq --no-install-recommends {' '.join(PACKAGES)}",
    ]
    assert all((bin_dir / name).exists() for name in PACKAGES)
    assert result.stdout == ""


def test_only_the_missing_packages_are_installed(bin_dir: Path) -> None:
    log = fake_machine(bin_dir, uid=0)
    stand_in(bin_dir / "chromium", "")
    stand_in(bin_dir / "ffmpeg", "")
    assert run(bin_dir).returncode == 0
    assert calls(log)[-1] == "apt-get install -y -qq --no-install-recommends redis-server"


def test_nothing_happens_when_everything_is_there(bin_dir: Path) -> None:
    log = fake_machine(bin_dir, uid=1000)
    for name in PACKAGES:
        stand_in(bin_dir / name, "")
    result = run(bin_dir)
    assert (result.returncode, result.stderr, calls(log)) == (0, "", [])


def test_not_root_uses_sudo_where_it_works(bin_dir: Path) -> None:
    log = fake_machine(bin_dir, uid=1000, sudo=True)
    assert run(bin_dir).returncode == 0
    assert calls(log)[1:] == [
        "sudo apt-get update -qq",
        "apt-get update -qq",
        f"sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {' '.join(PACKAGES)}",
        f"apt-get install -y -qq --no-install-recommends {' '.join(PACKAGES)}",
    ]


def test_not_root_without_sudo_says_what_to_install_in_one_line(bin_dir: Path) -> None:
    log = fake_machine(bin_dir, uid=1000)
    result = run(bin_dir)
    assert result.returncode == 1
    assert result.stderr == (
        "install_test_deps.sh: the tests need the Debian packages: chromium redis-server ffmpeg; not root and no"
        " sudo: run 'sudo apt-get install chromium redis-server ffmpeg' as an administrator, then run again\n"
    )
    assert calls(log) == []


def test_without_apt_it_says_what_to_install_in_one_line(bin_dir: Path) -> None:
    fake_machine(bin_dir, uid=0, apt=False)
    result = run(bin_dir)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "no apt-get here" in result.stderr and "chromium redis-server ffmpeg" in result.stderr


def test_a_failing_apt_is_one_line(bin_dir: Path) -> None:
    fake_machine(bin_dir, uid=0)
    stand_in(bin_dir / "apt-get", 'echo "E: Unable to locate package chromium" >&2; exit 100')
    result = run(bin_dir)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "install_test_deps.sh: 'apt-get update' failed: E: Unable to locate package chromium"
    )


def test_the_test_command_stops_before_running_anything(bin_dir: Path, tmp_path: Path) -> None:
    """scripts/test.sh, in a copy of the repository with no .venv, on a machine where the
    packages cannot be installed: it never gets as far as making the venv."""
    fake_machine(bin_dir, uid=1000)
    (tmp_path / "repo" / "scripts").mkdir(parents=True)
    for name in ("test.sh", "install_test_deps.sh"):
        copy = tmp_path / "repo" / "scripts" / name
        copy.write_text((ROOT / "scripts" / name).read_text())
        copy.chmod(0o755)
    marker = tmp_path / "python-ran"
    stand_in(bin_dir / "python-stand-in", f"echo ran > {marker}")
    result = run(bin_dir, tmp_path / "repo" / "scripts" / "test.sh", PYTHON=str(bin_dir / "python-stand-in"))
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("install_test_deps.sh: the tests need the Debian packages")
    assert result.stderr.count("\n") == 1
    assert not marker.exists() and not (tmp_path / "repo" / ".venv").exists()
    assert result.stdout == ""


def test_ci_only_calls_the_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "apt-get" not in ci and 'eval "$test_command"' in ci
