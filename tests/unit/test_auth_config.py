"""Security configuration: start-up refuses an open gateway, origins, secrets kept out of sight."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.app import settings_error_message
from service.auth.guard import ANONYMOUS, AuthConfigError, Guard
from service.auth.origins import OriginPolicy, same_origin
from service.errors import Forbidden, RateLimited, Unauthorized
from service.riva.channel import call_metadata, open_target
from service.settings import Settings

SECRETS = {
    "api_keys": "client-key-one,client-key-two",
    "token_secret": "t" * 40,
    "riva_api_key": "nvapi-very-secret",
}


def test_start_up_needs_keys_unless_auth_is_disabled(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(AuthConfigError, match=r"RESERVE_API_KEYS.*RESERVE_AUTH_DISABLED=true"):
        Guard(Settings()).start()
    Guard(Settings(api_keys="k")).start()
    with caplog.at_level(logging.WARNING, logger="reserve.auth"):
        Guard(Settings(auth_disabled=True)).start()
    assert any("AUTHENTICATION IS DISABLED" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_an_unreadable_keys_file_or_an_empty_one_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match="cannot read"):
        Guard(Settings(api_keys_file=tmp_path / "missing")).start()
    empty = tmp_path / "keys"
    empty.write_text("# nobody yet\n")
    with pytest.raises(AuthConfigError, match="no API keys"):
        Guard(Settings(api_keys_file=empty)).start()


def test_who_is_asking() -> None:
    guard = Guard(Settings(api_keys="client-key-one"))
    guard.start()
    assert guard.api_key("client-key-one").key_id not in ("", ANONYMOUS)
    with pytest.raises(Unauthorized):
        guard.api_key(None)
    with pytest.raises(Forbidden, match="not valid") as caught:
        guard.api_key("client-key-two")
    assert "client-key-one" not in caught.value.message
    open_guard = Guard(Settings(auth_disabled=True))
    assert open_guard.api_key(None).anonymous and open_guard.api_key("whatever").anonymous


def test_session_tokens_only_for_the_key_that_created_the_session() -> None:
    guard = Guard(Settings(api_keys="one,two"))
    one, two = guard.api_key("one"), guard.api_key("two")
    guard.issue(one, "session:abc", 60, owner=one.key_id)
    with pytest.raises(Forbidden):
        guard.issue(two, "session:abc", 60, owner=one.key_id)
    with pytest.raises(Forbidden):
        guard.issue(one, "session:abc", 60, owner=None)  # unknown session: the same answer
    anonymous = Guard(Settings(auth_disabled=True)).api_key(None)
    with pytest.raises(Forbidden):
        Guard(Settings(auth_disabled=True)).issue(anonymous, "session:abc", 60, owner=ANONYMOUS)


def test_origins() -> None:
    assert same_origin("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert same_origin("https://speech.example.com", "speech.example.com")
    assert same_origin("https://speech.example.com", "speech.example.com:443")
    assert not same_origin("https://evil.example.com", "speech.example.com")
    assert not same_origin("http://127.0.0.1:8001", "127.0.0.1:8000")
    assert not same_origin("null", "127.0.0.1:8000")
    assert not same_origin("file://", "127.0.0.1:8000")
    assert not same_origin("http://127.0.0.1:8000", None)
    policy = OriginPolicy(["https://app.example.com"])
    assert policy.websocket_allowed(None, "gw:8000"), "no Origin: not a browser page"
    assert policy.websocket_allowed("https://APP.example.com", "gw:8000")
    assert policy.websocket_allowed("http://gw:8000", "gw:8000")
    assert not policy.websocket_allowed("https://app.example.com.evil.net", "gw:8000")
    assert not policy.websocket_allowed("http://app.example.com", "gw:8000"), "the scheme is part of an origin"


@pytest.mark.parametrize("value", ["*", "https://*.example.com", "app.example.com", "https://app.example.com/path"])
def test_cors_origins_must_be_exact_origins(value: str) -> None:
    with pytest.raises(ValidationError, match="cors_origins"):
        Settings(cors_origins=value)


def test_secrets_never_show_in_reprs_or_error_messages(tmp_path: Path) -> None:
    settings = Settings(**SECRETS)  # type: ignore[arg-type]
    target = open_target(settings, "127.0.0.1:9")
    target.close()
    shown = [repr(settings), str(settings), settings.model_dump_json(), repr(target)]
    for text in shown:
        for secret in ("client-key-one", "client-key-two", "t" * 40, "nvapi-very-secret"):
            assert secret not in text
    with pytest.raises(ValidationError) as caught:
        Settings(token_secret="too-short-secret")
    message = settings_error_message(caught.value)
    assert "RESERVE_TOKEN_SECRET" in message and "too-short-secret" not in message


def test_the_riva_key_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "riva-key"
    key_file.write_text("nvapi-from-a-file\n")
    metadata = call_metadata(Settings(riva_api_key_file=key_file, riva_function_id="fn"))
    assert metadata == (("function-id", "fn"), ("authorization", "Bearer nvapi-from-a-file"))
    with pytest.raises(ValidationError, match="not both"):
        Settings(riva_api_key="nvapi-x", riva_api_key_file=key_file)


def test_token_lifetimes_are_checked() -> None:
    with pytest.raises(ValidationError, match="token_ttl_s"):
        Settings(token_ttl_s=900, token_max_ttl_s=600)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "true"),  # the demo: nothing configured
        ({"RESERVE_API_KEYS": "k"}, ""),
        ({"RESERVE_API_KEYS_FILE": "/run/keys"}, ""),
        ({"RESERVE_AUTH_DISABLED": "false"}, "false"),  # an explicit choice is kept
    ],
)
def test_serve_sh_turns_auth_off_only_when_nothing_is_configured(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    """serve.sh copied beside a stand-in ``reserve`` that prints what it was started with."""
    root = Path(__file__).resolve().parents[2]
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "serve.sh"
    script.write_text((root / "scripts" / "serve.sh").read_text())
    (tmp_path / "pyproject.toml").write_text("")
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    fake = venv_bin / "reserve"
    fake.write_text('#!/bin/sh\necho "auth_disabled=${RESERVE_AUTH_DISABLED:-}"\necho "$@" >&2\n')
    fake.chmod(0o755)
    (tmp_path / ".venv" / ".installed").touch()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RESERVE_")}
    result = subprocess.run(["bash", str(script)], env={**clean, **env}, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"auth_disabled={expected}"
    assert ("RESERVE_AUTH_DISABLED=true" in result.stderr) == (expected == "true")
    assert "serve --config hypercorn.toml --bind 127.0.0.1:8000" in result.stderr  # reserve serve, one worker


async def test_a_spent_token_replayed_uses_up_nothing_and_a_refused_one_stays_good() -> None:
    guard = Guard(Settings(api_keys="one", sessions_per_minute_per_key=2))
    key = guard.api_key("one")
    first = guard.creator(guard.issue(key, "session:create", 60).token)
    await guard.admit(first)
    for _ in range(5):
        with pytest.raises(Forbidden, match="already used"):
            await guard.admit(first)
    assert guard.limits.created_in_window(key.key_id) == 1, "replays cost the key nothing"
    await guard.admit(key)
    second = guard.creator(guard.issue(key, "session:create", 60).token)
    with pytest.raises(RateLimited):
        await guard.admit(second)
    assert len(guard.used) == 1, "refused for the limit: the token was not spent"
