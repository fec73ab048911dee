"""Security end to end, through real hypercorn and fake_riva: API keys, browser tokens,
session isolation, CORS and origin checks, per-key limits, TLS to Riva, and logs that
never carry transcripts or credentials."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from httpx_sse import aconnect_sse

from fake_riva import FakeRiva
from service.settings import Settings
from tests.certs import Pki, make_pki
from tests.harness import (
    EventCollector,
    Gateway,
    audio_socket,
    close_reason,
    following,
    poll_until,
    read_events,
    running_fake_riva,
    running_gateway,
    stream_audio,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
KEY_A = "key-a-2b7e151628aed2a6abf7158809cf4f3c"
KEY_B = "key-b-762e7160f38b4da56a784d9045190cfe"
APP_ORIGIN = "https://app.example.com"
SCRIPT = {"fake.transcript": "open sesame", "fake.ms_per_word": "100"}


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def security_settings(riva_uri: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "riva_uri": riva_uri,
        "api_keys": f"{KEY_A},{KEY_B}",
        "cors_origins": APP_ORIGIN,
        "finish_timeout_s": 5,
        "sse_heartbeat_s": 0.5,
        "audio_reconnect_grace_s": 0,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
async def gateway(fake_riva: FakeRiva) -> AsyncIterator[Gateway]:
    async with running_gateway(security_settings(fake_riva.target)) as gw:
        yield gw


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends only what each test gives it (the harness's client adds KEY_A)."""
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:
        yield http


async def create(client: httpx.AsyncClient, credential: str, **config: Any) -> dict[str, Any]:
    response = await client.post("/v1/sessions", json=config, headers=bearer(credential))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def mint(client: httpx.AsyncClient, key: str, expect: int = 201, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/tokens", json=body, headers=bearer(key))
    assert response.status_code == expect, response.text
    return response.json()  # type: ignore[no-any-return]


def error_of(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


async def transcribe(
    gateway: Gateway, session: dict[str, Any], *, events_token: str, **socket: Any
) -> tuple[EventCollector, str | None]:
    """Stream the script with the given credentials; the finals and the selected subprotocol."""
    events = EventCollector()
    async with trio.open_nursery() as nursery:
        await nursery.start(read_events, gateway, {**session, "token": events_token}, events)
        async with audio_socket(gateway, session, **socket) as ws:
            await stream_audio(ws, seconds=0.3)
            code, _, _ = await close_reason(ws)
            assert code == 1000
            chosen = ws.subprotocol
    return events, chosen


# -- client authentication ---------------------------------------------------------------


async def test_creating_a_session_needs_a_configured_api_key(gateway: Gateway, client: httpx.AsyncClient) -> None:
    missing = await client.post("/v1/sessions", json={})
    assert error_of(missing) == (401, "unauthorized")
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert error_of(await client.post("/v1/sessions", json={}, headers={"Authorization": "Basic a2V5"})) == (
        401,
        "unauthorized",
    )
    wrong = await client.post("/v1/sessions", json={}, headers=bearer("key-a-guess"))
    assert error_of(wrong) == (403, "forbidden")
    for response in (missing, wrong):
        assert "key-a" not in response.text and "key-b" not in response.text, "never say which keys exist"
    # an API key in a URL is not taken (URLs end up in logs); the header is the way
    assert error_of(await client.post("/v1/sessions", json={}, params={"token": KEY_A})) == (401, "unauthorized")
    session = await create(client, KEY_A)
    await create(client, KEY_B)
    # a session's token is no API key
    assert error_of(await client.post("/v1/sessions", json={}, headers=bearer(session["token"]))) == (403, "forbidden")
    # authentication comes first: an anonymous caller learns nothing about settings validation
    assert error_of(await client.post("/v1/sessions", json={"encoding": "MP3"})) == (401, "unauthorized")


async def test_keys_rotate_through_the_keys_file_without_a_restart(fake_riva: FakeRiva, tmp_path: Path) -> None:
    keys_file = tmp_path / "api-keys"
    keys_file.write_text("# the web back end\nfirst-key-0b6f  # until Tuesday\n")
    settings = Settings(riva_uri=fake_riva.target, api_keys_file=keys_file)
    async with running_gateway(settings) as gateway, httpx.AsyncClient(base_url=gateway.base_url) as client:
        assert (await client.post("/v1/sessions", json={}, headers=bearer("first-key-0b6f"))).status_code == 201
        keys_file.write_text("second-key-77a1\n")
        os.utime(keys_file, ns=(10**18, 10**18))

        async def rotated() -> bool:
            response = await client.post("/v1/sessions", json={}, headers=bearer("second-key-77a1"))
            return response.status_code == 201

        await poll_until(rotated, timeout_s=6)  # looked at again within a few seconds
        old = await client.post("/v1/sessions", json={}, headers=bearer("first-key-0b6f"))
        assert error_of(old) == (403, "forbidden")


async def test_start_up_without_keys_fails_with_a_clear_message(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESERVE_")}
    env["RESERVE_EMBEDDED_RECOGNIZER"] = "scripted"
    command = [sys.executable, "-m", "hypercorn", "--config", "hypercorn.toml", "--bind", "127.0.0.1:0"]
    result = await trio.run_process(
        [*command, "service.app:app"], cwd=ROOT, env=env, capture_stdout=True, capture_stderr=True, check=False
    )
    output = (result.stdout + result.stderr).decode()
    assert result.returncode != 0
    first = next(line for line in output.splitlines() if line.startswith("Reserve cannot start: "))
    assert "no API keys configured" in first and "RESERVE_API_KEYS" in first and "RESERVE_AUTH_DISABLED" in first
    assert "Traceback" not in output


async def test_with_auth_disabled_anyone_may_create_sessions_and_a_warning_says_so(
    fake_riva: FakeRiva, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="reserve.auth")
    settings = Settings(riva_uri=fake_riva.target, auth_disabled=True)
    async with running_gateway(settings) as gateway, httpx.AsyncClient(base_url=gateway.base_url) as client:
        assert (await client.post("/v1/sessions", json={})).status_code == 201
        # a session is still its token's alone
        session = (await client.post("/v1/sessions", json={})).json()
        assert (await client.get(f"/v1/sessions/{session['id']}")).status_code == 401
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "reserve.auth"]
    assert any("AUTHENTICATION IS DISABLED" in w for w in warnings)


# -- browser tokens -----------------------------------------------------------------------


async def test_a_create_token_makes_exactly_one_session(gateway: Gateway, client: httpx.AsyncClient) -> None:
    before = datetime.now(UTC)
    response = await client.post("/v1/tokens", json={}, headers=bearer(KEY_A))
    assert response.status_code == 201 and response.headers["Cache-Control"] == "no-store"
    issued = response.json()
    assert set(issued) == {"token", "expires_at", "scope"} and issued["scope"] == "session:create"
    lifetime = datetime.fromisoformat(issued["expires_at"]) - before
    assert 59 <= lifetime.total_seconds() <= 62, "60 s by default"

    session = await create(client, issued["token"], custom_configuration=SCRIPT)
    events, _ = await transcribe(gateway, session, events_token=session["token"])
    assert events.finals == ["open sesame"]
    again = await client.post("/v1/sessions", json={}, headers=bearer(issued["token"]))
    assert error_of(again) == (403, "forbidden") and "already used" in again.json()["error"]["message"]

    # the query parameter works as well as the header (a browser may prefer either)
    second = await mint(client, KEY_A)
    created = await client.post("/v1/sessions", json={}, params={"token": second["token"]})
    assert created.status_code == 201


async def test_token_requests_are_checked(gateway: Gateway, client: httpx.AsyncClient) -> None:
    assert error_of(await client.post("/v1/tokens", json={})) == (401, "unauthorized")
    assert error_of(await client.post("/v1/tokens", json={}, headers=bearer("nope"))) == (403, "forbidden")
    token = (await mint(client, KEY_A))["token"]
    refused = await client.post("/v1/tokens", json={}, headers=bearer(token))
    assert error_of(refused) == (403, "forbidden"), "a token cannot mint tokens"

    long = await mint(client, KEY_A, ttl_s=120)
    assert 118 <= (datetime.fromisoformat(long["expires_at"]) - datetime.now(UTC)).total_seconds() <= 122
    too_long = await client.post("/v1/tokens", json={"ttl_s": 601}, headers=bearer(KEY_A))
    assert error_of(too_long) == (400, "bad_request") and too_long.json()["error"]["fields"][0]["field"] == "ttl_s"
    for body in ({"ttl_s": "60"}, {"ttl_s": 0}, {"scope": "admin"}, {"scope": "session:a b"}, {"colour": "red"}):
        assert error_of(await client.post("/v1/tokens", json=body, headers=bearer(KEY_A))) == (400, "bad_request")


async def test_expired_forged_and_wrong_scope_tokens_are_refused(gateway: Gateway, client: httpx.AsyncClient) -> None:
    short = await mint(client, KEY_A, ttl_s=0.5)
    await trio.sleep(max(0.0, (datetime.fromisoformat(short["expires_at"]) - datetime.now(UTC)).total_seconds()) + 0.1)
    expired = await client.post("/v1/sessions", json={}, headers=bearer(short["token"]))
    assert error_of(expired) == (401, "token_expired")

    token = (await mint(client, KEY_A))["token"]
    prefix, payload, mac = token.split(".")
    flipped = mac[:5] + ("A" if mac[5] != "A" else "B") + mac[6:]
    for forged in (f"{prefix}.{payload}.{flipped}", f"{prefix}.{payload[:-2]}.{mac}", "rsv1.e30.AAAA"):
        response = await client.post("/v1/sessions", json={}, headers=bearer(forged))
        assert error_of(response) == (403, "forbidden")

    session = await create(client, KEY_A)
    scoped = (await mint(client, KEY_A, scope=f"session:{session['id']}"))["token"]
    wrong_scope = await client.post("/v1/sessions", json={}, headers=bearer(scoped))
    assert error_of(wrong_scope) == (403, "forbidden") and "scope" in wrong_scope.json()["error"]["message"]
    # a create token opens no session's resources
    create_token = (await mint(client, KEY_A))["token"]
    events = await client.get(session["events_url"], headers=bearer(create_token))
    assert error_of(events) == (403, "forbidden")
    async with audio_socket(gateway, session, token=None, subprotocols=["reserve.v1", f"token.{create_token}"]) as ws:
        code, reason, frames = await close_reason(ws)
        assert ws.subprotocol == "reserve.v1", "the error still reaches a browser: the offered subprotocol is chosen"
    assert (code, reason, frames[0]["code"]) == (4403, "forbidden", "forbidden")


async def test_a_session_token_for_the_browser_opens_its_audio_and_events_only(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    session = await create(client, KEY_A, custom_configuration=SCRIPT)  # the back end
    scoped = (await mint(client, KEY_A, scope=f"session:{session['id']}", ttl_s=120))["token"]
    # the browser: events with the scoped token, audio with it offered as a subprotocol
    async with client.stream("GET", session["events_url"], params={"token": scoped}) as response:
        assert response.status_code == 200
    events, chosen = await transcribe(
        gateway, session, events_token=scoped, token=None, subprotocols=["reserve.v1", f"token.{scoped}"]
    )
    assert events.finals == ["open sesame"] and chosen == "reserve.v1"
    # it is no key to the session itself
    for method in ("GET", "DELETE"):
        response = await client.request(method, f"/v1/sessions/{session['id']}", headers=bearer(scoped))
        assert error_of(response) == (403, "forbidden")
    # nor to another session
    other = await create(client, KEY_A)
    assert error_of(await client.get(other["events_url"], params={"token": scoped})) == (403, "forbidden")
    async with audio_socket(gateway, other, token=scoped) as ws:
        assert (await close_reason(ws))[:2] == (4403, "forbidden")


async def test_only_the_key_that_created_a_session_gets_tokens_for_it(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    session = await create(client, KEY_A)
    foreign = await client.post("/v1/tokens", json={"scope": f"session:{session['id']}"}, headers=bearer(KEY_B))
    unknown = await client.post("/v1/tokens", json={"scope": "session:AAAAAAAAAAAAAAAAAAAAAA"}, headers=bearer(KEY_B))
    assert error_of(foreign) == error_of(unknown) == (403, "forbidden")
    assert foreign.json() == unknown.json(), "probing ids reveals nothing"


async def test_the_session_token_works_as_a_websocket_subprotocol(gateway: Gateway, client: httpx.AsyncClient) -> None:
    session = await create(client, KEY_A, custom_configuration=SCRIPT)
    events, chosen = await transcribe(
        gateway,
        session,
        events_token=session["token"],
        token=None,
        subprotocols=["reserve.v1", f"token.{session['token']}"],
    )
    assert events.finals == ["open sesame"] and chosen == "reserve.v1"
    other = await create(client, KEY_A)
    async with audio_socket(gateway, other, token=None, subprotocols=["reserve.v1", "token.not-the-token"]) as ws:
        code, reason, frames = await close_reason(ws)
        assert ws.subprotocol == "reserve.v1"
    assert (code, reason, frames[0]["type"]) == (4403, "forbidden", "error")


# -- session isolation ---------------------------------------------------------------------


async def test_one_sessions_token_opens_no_other_session(gateway: Gateway, client: httpx.AsyncClient) -> None:
    mine, theirs = await create(client, KEY_A), await create(client, KEY_A, custom_configuration=SCRIPT)
    for method, path in [
        ("GET", f"/v1/sessions/{theirs['id']}"),
        ("GET", theirs["events_url"]),
        ("DELETE", f"/v1/sessions/{theirs['id']}"),
    ]:
        response = await client.request(method, path, headers=bearer(mine["token"]))
        assert error_of(response) == (403, "forbidden")
    async with audio_socket(gateway, theirs, token=mine["token"]) as ws:
        assert (await close_reason(ws))[:2] == (4403, "forbidden")
    events, _ = await transcribe(gateway, theirs, events_token=theirs["token"])  # untouched
    assert events.finals == ["open sesame"]


# -- CORS and origins ----------------------------------------------------------------------


async def test_cors_answers_listed_origins_only(gateway: Gateway, client: httpx.AsyncClient) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    allowed = await client.options("/v1/sessions", headers={"Origin": APP_ORIGIN, **preflight})
    assert allowed.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in allowed.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in allowed.headers
    assert "Origin" in allowed.headers["Vary"]

    evil = await client.options("/v1/sessions", headers={"Origin": "https://evil.example.net", **preflight})
    assert "Access-Control-Allow-Origin" not in evil.headers

    created = await client.post("/v1/sessions", json={}, headers={"Origin": APP_ORIGIN, **bearer(KEY_A)})
    assert created.status_code == 201 and created.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "Location" in created.headers["Access-Control-Expose-Headers"]
    for response in (allowed, evil, created):
        assert response.headers.get("Access-Control-Allow-Origin") != "*"


async def test_cors_with_no_origins_listed_is_same_origin_only(fake_riva: FakeRiva) -> None:
    settings = Settings(riva_uri=fake_riva.target, api_keys=KEY_A)
    async with running_gateway(settings) as gateway:
        response = await gateway.http.options(
            "/v1/sessions", headers={"Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST"}
        )
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),  # no Origin: not a browser page
        (APP_ORIGIN, True),  # listed
        ("same", True),  # the gateway's own page
        ("https://evil.example.net", False),
        ("null", False),
    ],
)
async def test_the_audio_socket_checks_the_origin(
    gateway: Gateway, client: httpx.AsyncClient, origin: str | None, allowed: bool
) -> None:
    session = await create(client, KEY_A)
    own_origin = gateway.ws_base.replace("ws://", "http://", 1)  # the host the socket goes to (shared mode: B)
    headers = [] if origin is None else [(b"Origin", (own_origin if origin == "same" else origin).encode())]
    async with audio_socket(gateway, session, headers=headers) as ws:
        if allowed:
            await ws.send_message('{"type": "end"}')
        code, reason, frames = await close_reason(ws)
    if allowed:
        assert code == 1000
    else:
        assert (code, reason, frames[0]["code"]) == (4403, "origin_not_allowed", "origin_not_allowed")


async def test_the_page_and_the_api_send_security_headers(gateway: Gateway, client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    csp = page.headers["Content-Security-Policy"]
    for directive in ("default-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "form-action 'none'"):
        assert directive in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "Strict-Transport-Security" not in page.headers, "HSTS only where this server speaks TLS"
    api = await client.post("/v1/sessions", json={})
    assert api.headers["X-Content-Type-Options"] == "nosniff"


# -- abuse limits ----------------------------------------------------------------------------


async def test_live_sessions_per_key_are_limited(fake_riva: FakeRiva) -> None:
    settings = security_settings(fake_riva.target, max_sessions_per_key=1)
    async with running_gateway(settings) as gateway, httpx.AsyncClient(base_url=gateway.base_url) as client:
        first = await create(client, KEY_A)
        refused = await client.post("/v1/sessions", json={}, headers=bearer(KEY_A))
        assert error_of(refused) == (429, "rate_limited") and int(refused.headers["Retry-After"]) > 0
        await create(client, KEY_B)  # another key is not held back
        deleted = await client.delete(f"/v1/sessions/{first['id']}", headers=bearer(first["token"]))
        assert deleted.status_code == 200

        async def room_again() -> bool:
            return (await client.post("/v1/sessions", json={}, headers=bearer(KEY_A))).status_code == 201

        await poll_until(room_again)


async def test_sessions_per_minute_per_key_are_limited_and_tokens_count_for_their_key(fake_riva: FakeRiva) -> None:
    settings = security_settings(fake_riva.target, sessions_per_minute_per_key=2)
    async with running_gateway(settings) as gateway, httpx.AsyncClient(base_url=gateway.base_url) as client:
        token = (await mint(client, KEY_A))["token"]
        await create(client, KEY_A)
        await create(client, KEY_A)
        refused = await client.post("/v1/sessions", json={}, headers=bearer(KEY_A))
        assert error_of(refused) == (429, "rate_limited")
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        by_token = await client.post("/v1/sessions", json={}, headers=bearer(token))
        assert error_of(by_token) == (429, "rate_limited"), "a create token spends its key's allowance"
        await create(client, KEY_B)


# -- TLS to Riva --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@contextlib.contextmanager
def tls_riva(pki: Pki, *, mutual: bool) -> Iterator[FakeRiva]:
    with running_fake_riva(tls=(pki.server.key, pki.server.cert, pki.ca.cert if mutual else None)) as riva:
        yield riva


async def run_script(gateway: Gateway) -> EventCollector:
    session = await gateway.create_session(custom_configuration=SCRIPT)
    events, _ = await transcribe(gateway, session, events_token=session["token"])
    return events


@pytest.mark.parametrize("key_from", ["environment", "file"])
async def test_tls_to_riva_with_metadata_sent_once(pki: Pki, tmp_path: Path, key_from: str) -> None:
    files = pki.write(tmp_path)
    key_settings: dict[str, Any] = {"riva_api_key": "nvapi-test-secret"}
    if key_from == "file":
        (tmp_path / "riva-key").write_text("nvapi-test-secret\n")
        key_settings = {"riva_api_key_file": tmp_path / "riva-key"}
    with tls_riva(pki, mutual=False) as riva:
        settings = security_settings(
            riva.target, riva_ssl_root_cert=files["ca"], riva_function_id="fn-0123", **key_settings
        )
        assert settings.riva_tls
        async with running_gateway(settings) as gateway:
            events = await run_script(gateway)
        assert events.finals == ["open sesame"]
        assert riva.stats.metadata, "the stream was served over TLS"
        for metadata in riva.stats.metadata:
            assert metadata.count(("function-id", "fn-0123")) == 1
            assert metadata.count(("authorization", "Bearer nvapi-test-secret")) == 1
            assert [k for k, _ in metadata].count("authorization") == 1


async def test_a_riva_certificate_from_another_ca_is_refused(pki: Pki, tmp_path: Path) -> None:
    stranger = make_pki().write(tmp_path)  # the gateway trusts a CA that did not sign Riva's certificate
    with tls_riva(pki, mutual=False) as riva:
        settings = security_settings(riva.target, riva_ssl_root_cert=stranger["ca"], riva_start_deadline_s=0.5)
        async with running_gateway(settings) as gateway:
            session = await gateway.create_session(custom_configuration=SCRIPT)
            async with following(gateway, session) as (ws, events):
                await stream_audio(ws, seconds=0.3)
                await close_reason(ws)
        assert events.events[-1].data == {"reason": "error"} and events.finals == []
        assert riva.stats.snapshot()["started"] == 0


async def test_mutual_tls_to_riva(pki: Pki, tmp_path: Path) -> None:
    files = pki.write(tmp_path)
    with tls_riva(pki, mutual=True) as riva:
        settings = security_settings(
            riva.target,
            riva_ssl_root_cert=files["ca"],
            riva_ssl_client_cert=files["client_cert"],
            riva_ssl_client_key=files["client_key"],
        )
        async with running_gateway(settings) as gateway:
            events = await run_script(gateway)
        assert events.finals == ["open sesame"]
        assert riva.stats.snapshot()["completed"] >= 1


async def test_a_mutual_tls_riva_refuses_a_gateway_without_a_client_certificate(pki: Pki, tmp_path: Path) -> None:
    files = pki.write(tmp_path)
    with tls_riva(pki, mutual=True) as riva:
        settings = security_settings(riva.target, riva_ssl_root_cert=files["ca"], riva_start_deadline_s=0.5)
        async with running_gateway(settings) as gateway:
            session = await gateway.create_session(custom_configuration=SCRIPT)
            async with following(gateway, session) as (ws, events):
                await stream_audio(ws, seconds=0.3)
                code, _, frames = await close_reason(ws)
        assert code == 1011 and frames[-1]["code"] == "upstream_unavailable"
        assert events.names[-2:] == ["error", "end"] and events.events[-1].data == {"reason": "error"}
        assert riva.stats.snapshot()["started"] == 0, "no stream got past the handshake"


# -- privacy ------------------------------------------------------------------------------------

PHRASE = "confidential pineapple harvest"


@contextlib.contextmanager
def hypercorn_process(env: dict[str, str], log_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The deployed entry point (hypercorn.toml, access log on) on a free port, output to a file."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "service", "serve", "--config", "hypercorn.toml", "--bind", f"127.0.0.1:{port}"]
    with log_path.open("wb") as out:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


async def test_logs_at_info_carry_no_transcript_and_no_credential(tmp_path: Path) -> None:
    api_key = "privacy-key-9f86d081884c7d659a2feaa0c55ad015"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESERVE_")}
    env.update(RESERVE_EMBEDDED_RECOGNIZER="scripted", RESERVE_API_KEYS=api_key, RESERVE_LOG_LEVEL="INFO")
    env.update(RESERVE_SHUTDOWN_GRACE_S="1")
    log_path = tmp_path / "server.log"
    secrets: list[str] = [api_key]
    with hypercorn_process(env, log_path) as (base, server):
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            with trio.fail_after(20):
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get("/healthz")).status_code == 200:
                            break
                    await trio.sleep(0.1)
            create_token = (await mint(client, api_key))["token"]
            config = {"custom_configuration": {"fake.transcript": PHRASE, "fake.ms_per_word": "100"}}
            created = await client.post("/v1/sessions", json=config, params={"token": create_token})
            session = created.json()
            scoped = (await mint(client, api_key, scope=f"session:{session['id']}"))["token"]
            secrets += [create_token, session["token"], scoped]
            gateway = Gateway(base, Settings(), client, app=None)  # type: ignore[arg-type]
            finals: list[str] = []
            async with trio.open_nursery() as nursery:

                async def follow(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                    params = {"token": session["token"]}  # in the URL, so in the access log (redacted)
                    async with aconnect_sse(client, "GET", session["events_url"], params=params) as source:
                        task_status.started()
                        async with contextlib.aclosing(source.aiter_sse()) as stream:
                            async for event in stream:
                                if event.event == "transcript" and json.loads(event.data)["is_final"]:
                                    finals.append(json.loads(event.data)["text"])
                                if event.event == "end":
                                    return

                await nursery.start(follow)
                protocols = ["reserve.v1", f"token.{scoped}"]
                async with audio_socket(gateway, session, token=None, subprotocols=protocols) as ws:
                    await stream_audio(ws, seconds=0.5)
                    assert (await close_reason(ws))[0] == 1000
            assert finals == [PHRASE], "the phrase was recognised, so it passed through the gateway"
            state = await client.get(f"/v1/sessions/{session['id']}", params={"token": session["token"]})
            assert state.json()["final_transcript"] == PHRASE
        server.send_signal(signal.SIGTERM)
        await trio.to_thread.run_sync(server.wait, 10)
    text = log_path.read_text()
    assert f"session {session['id']} created" in text, "the log was captured"
    assert "hypercorn.access" in text and "token=REDACTED" in text, "access lines were captured, tokens redacted"
    for word in PHRASE.split():
        assert word not in text, f"transcript word {word!r} leaked into the log"
    for secret in secrets:
        assert secret not in text
        for part in secret.split("."):
            if len(part) >= 16:
                assert part not in text, "not even part of a token"


async def test_transcripts_reach_debug_logs_only_when_asked(
    fake_riva: FakeRiva, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for log_transcripts in (False, True):
        caplog.clear()
        settings = security_settings(fake_riva.target, log_level="DEBUG", log_transcripts=log_transcripts)
        async with running_gateway(settings) as gateway:
            events = await run_script(gateway)
        assert events.finals == ["open sesame"]
        logged = [r for r in caplog.records if "open sesame" in r.getMessage()]
        if log_transcripts:
            assert logged and all(r.levelno == logging.DEBUG for r in logged)
        else:
            assert not logged
    logging.getLogger("reserve").setLevel(logging.INFO)


# -- the command-line client -----------------------------------------------------------------------


async def test_the_cli_says_clearly_when_its_api_key_is_missing_or_refused(gateway: Gateway) -> None:
    for key, words in ((None, "wants an API key"), ("not-a-key", "the API key was refused")):
        env = {k: v for k, v in os.environ.items() if k != "RESERVE_API_KEY"}
        if key:
            env["RESERVE_API_KEY"] = key
        result = await trio.run_process(
            [sys.executable, "-m", "service.client", str(DATA / "thank_you.wav"), "--url", gateway.base_url],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
        )
        error = result.stderr.decode().strip()
        assert result.returncode != 0 and words in error and len(error.splitlines()) == 1, error
        assert "not-a-key" not in error
