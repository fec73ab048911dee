"""A bad RESERVE_* value stops start-up with a message naming the variable, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.app import settings_error_message
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def start_with(**bad: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESERVE_")}
    env.update({f"RESERVE_{k}": v for k, v in bad.items()})
    return subprocess.run(
        [sys.executable, "-c", "import service.app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (
            {"MAX_SESSIONS": "0", "LOG_FORMAT": "xml"},
            ["RESERVE_MAX_SESSIONS='0': Input should be greater than or equal to 1", "RESERVE_LOG_FORMAT='xml'"],
        ),
        ({"MAX_SESSIONS": "abc"}, ["RESERVE_MAX_SESSIONS='abc': Input should be a valid integer"]),
    ],
)
def test_bad_values_stop_start_up_naming_each_variable(bad: dict[str, str], expected: list[str]) -> None:
    result = start_with(**bad)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(expected), "one line per problem"
    for line, words in zip(lines, expected, strict=True):
        assert line.startswith(f"Reserve cannot start: {words}")
    assert "Traceback" not in result.stderr


def test_secret_values_are_not_echoed() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(riva_api_key=["nvapi", "leaked"])
    message = settings_error_message(caught.value)
    assert "Reserve cannot start: RESERVE_RIVA_API_KEY: " in message and "leaked" not in message


def test_cross_field_problems_are_explained() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(riva_ssl_client_cert="/cert.pem")
    assert "riva_ssl_client_cert and riva_ssl_client_key must be set together" in settings_error_message(caught.value)


def test_a_bad_redis_url_is_named_without_echoing_its_password() -> None:
    with pytest.raises(ValidationError) as error:
        Settings(redis_url="http://user:hunter2-password@redis:6379")
    message = settings_error_message(error.value)
    assert "Reserve cannot start: RESERVE_REDIS_URL: must start with redis://, rediss:// or unix://" in message
    assert "hunter2" not in message
    assert Settings(redis_url="rediss://user:pw@redis.example.com:6380/0").redis_url.startswith("rediss://")
