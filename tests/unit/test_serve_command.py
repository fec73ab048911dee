"""``reserve serve`` refuses what it cannot serve before starting anything: one line per problem
on stderr, never a traceback: exit status 1 for the configuration (the lines every way of serving
gives), 2 for the command line and the process model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from service.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("RESERVE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("RESERVE_AUTH_DISABLED", "true")  # as serve.sh runs it; keys: tested below


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], status: int = 2) -> list[str]:
    with pytest.raises(SystemExit) as exited:
        raise SystemExit(main(argv))
    assert exited.value.code == status
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    return captured.err.splitlines()


def test_several_workers_without_redis_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    (line,) = refused(["serve", "--workers", "2"], capsys)
    assert line.startswith("reserve serve: 2 workers need RESERVE_REDIS_URL")


def test_the_workers_setting_counts_and_the_flag_wins(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RESERVE_WORKERS", "3")
    (line,) = refused(["serve"], capsys)
    assert "3 workers need RESERVE_REDIS_URL" in line
    (line,) = refused(["serve", "--workers", "4"], capsys)
    assert "4 workers need RESERVE_REDIS_URL" in line


def test_no_api_keys_is_refused_before_any_worker_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("RESERVE_AUTH_DISABLED")
    (line,) = refused(["serve"], capsys, status=1)
    assert line.startswith("Reserve cannot start: no API keys configured. Set RESERVE_API_KEYS")
    monkeypatch.setenv("RESERVE_API_KEYS", " , ")
    (line,) = refused(["serve", "--workers", "2"], capsys, status=1)
    assert line.startswith("Reserve cannot start: no API keys configured")


def test_each_bad_setting_is_one_line_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RESERVE_MAX_SESSIONS", "lots")
    monkeypatch.setenv("RESERVE_WORKERS", "0")
    monkeypatch.setenv("RESERVE_API_KEYS", "secret-key-that-must-not-show")
    monkeypatch.setenv("RESERVE_TOKEN_SECRET", "short-secret")
    lines = refused(["serve"], capsys, status=1)  # the configuration's own lines, as every command gives them
    assert len(lines) == 3
    assert {line.split(": ")[1] for line in lines} == {
        "RESERVE_MAX_SESSIONS='lots'",
        "RESERVE_WORKERS='0'",
        "RESERVE_TOKEN_SECRET",  # a secret: its value is not shown
    }
    assert all(line.startswith("Reserve cannot start: RESERVE_") for line in lines)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["serve", "--workers", "0"], "reserve serve: argument --workers: must be at least 1, not 0"),
        (["serve", "--workers", "two"], "reserve serve: argument --workers: not a whole number: 'two'"),
        (["serve", "--config", "no-such.toml"], "reserve serve: --config no-such.toml: no such file"),
        (["serve", "--colour"], "reserve serve: unrecognized arguments: --colour"),
        (["serve", "--bind", "nowhere"], "reserve serve: cannot listen on nowhere: 'nowhere' is not HOST:PORT"),
        (["transcode"], "reserve: unknown command 'transcode'; usage: reserve {"),
        ([], "reserve: usage: reserve {"),
    ],
)
def test_bad_arguments_are_one_line(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    (line,) = refused(argv, capsys)
    assert line.startswith(expected)


def test_a_taken_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (line,) = refused(["serve", "--bind", f"127.0.0.1:{port}"], capsys)
    assert line.startswith(f"reserve serve: cannot listen on 127.0.0.1:{port}: ")


def test_no_place_for_the_workers_sockets_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("RESERVE_REDIS_URL", "redis://127.0.0.1:1")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))  # TMPDIR naming no directory
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (line,) = refused(["serve", "--workers", "2", "--bind", f"127.0.0.1:{port}"], capsys)
    gone = tmp_path / "gone"
    assert line == f"reserve serve: cannot make the workers' socket directory in {gone}: No such file or directory"


def test_python_dash_m_service_and_the_console_script_run_the_same_command() -> None:
    env = {"PATH": "/usr/bin:/bin", "RESERVE_AUTH_DISABLED": "true"}
    script = Path(sys.executable).parent / "reserve"
    for command in ([sys.executable, "-m", "service"], [str(script)]):
        result = subprocess.run(
            [*command, "serve", "--workers", "2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2
        assert result.stderr.startswith("reserve serve: 2 workers need RESERVE_REDIS_URL")
        assert result.stderr.count("\n") == 1
