"""A configuration that cannot work stops start-up with one line per problem on stderr, exit
status 1 and no traceback: through hypercorn as the Dockerfile runs it, and through serve.sh."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.settings import Settings
from service.startup import NO_KEYS, configuration_problems

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "Reserve cannot start: "


def clean_env(**reserve: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESERVE_")}
    env.update({f"RESERVE_{k}": v for k, v in reserve.items()})
    env["RESERVE_EMBEDDED_RECOGNIZER"] = "scripted"
    return env


def problem_lines(stderr: str) -> list[str]:
    """Our lines; hypercorn may log its own (e.g. "Running on") before the process ends."""
    return [line for line in stderr.splitlines() if line.startswith(PREFIX)]


def hypercorn(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "hypercorn", "--config", "hypercorn.toml", "--bind", "127.0.0.1:0"]
    return subprocess.run(
        [*command, "service.app:app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_hypercorn_without_keys_and_with_unreadable_files(tmp_path: Path) -> None:
    result = hypercorn(clean_env())
    assert result.returncode == 1
    assert problem_lines(result.stderr) == [PREFIX + NO_KEYS]
    assert "Traceback" not in result.stderr + result.stdout

    missing = tmp_path / "missing"
    result = hypercorn(clean_env(API_KEYS_FILE=str(missing / "keys"), RIVA_SSL_ROOT_CERT=str(missing / "ca.pem")))
    assert result.returncode == 1
    assert problem_lines(result.stderr) == [
        f"{PREFIX}RESERVE_RIVA_SSL_ROOT_CERT={missing}/ca.pem: cannot read it (No such file or directory)",
        f"{PREFIX}RESERVE_API_KEYS_FILE={missing}/keys: cannot read it (No such file or directory)",
    ]
    assert "Traceback" not in result.stderr + result.stdout


def test_hypercorn_with_bad_values_says_only_that(tmp_path: Path) -> None:
    result = hypercorn(clean_env(MAX_SESSIONS="lots", RIVA_TRANSPORT="carrier-pigeon", API_KEYS="k"))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{PREFIX}RESERVE_MAX_SESSIONS='lots': Input should be a valid integer, unable to parse string as an integer",
        f"{PREFIX}RESERVE_RIVA_TRANSPORT='carrier-pigeon': Input should be 'h2', 'aio' or 'threads'",
    ]


@pytest.fixture
def serve_sh(tmp_path: Path) -> Path:
    """scripts/serve.sh in a copy of the repository whose .venv is this one (already installed)."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    for name in ("pyproject.toml", "hypercorn.toml", "scripts/serve.sh"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    (tmp_path / "scripts" / "serve.sh").chmod(0o755)
    reserve = tmp_path / ".venv" / "bin" / "reserve"
    reserve.write_text(f'#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m service "$@"\n')
    reserve.chmod(0o755)
    (tmp_path / ".venv" / ".installed").touch()
    return tmp_path / "scripts" / "serve.sh"


def test_serve_sh_with_a_bad_value_and_an_unreadable_keys_file(serve_sh: Path, tmp_path: Path) -> None:
    env = clean_env(SHUTDOWN_GRACE_S="-1", BIND="127.0.0.1:0")
    result = subprocess.run([str(serve_sh)], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"{PREFIX}RESERVE_SHUTDOWN_GRACE_S='-1': Input should be greater than or equal to 0"
    )
    assert "Traceback" not in result.stderr

    env = clean_env(API_KEYS_FILE=str(tmp_path / "nope"), BIND="127.0.0.1:0")
    result = subprocess.run([str(serve_sh)], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert problem_lines(result.stderr) == [
        f"{PREFIX}RESERVE_API_KEYS_FILE={tmp_path}/nope: cannot read it (No such file or directory)"
    ]
    assert "Traceback" not in result.stderr


def test_configuration_problems_in_process(tmp_path: Path) -> None:
    assert configuration_problems(Settings(api_keys="k")) == []
    assert configuration_problems(Settings(auth_disabled=True)) == []
    assert configuration_problems(Settings()) == [NO_KEYS]
    empty = tmp_path / "keys"
    empty.write_text("# nobody yet\n")
    assert configuration_problems(Settings(api_keys_file=empty)) == [NO_KEYS]
    folder = tmp_path / "a-folder"  # unreadable as a file, even for root
    folder.mkdir()
    problems = configuration_problems(Settings(api_keys="k", riva_api_key_file=folder))
    assert problems == [f"RESERVE_RIVA_API_KEY_FILE={folder}: cannot read it (Is a directory)"]
