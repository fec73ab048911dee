"""Signed browser tokens: scope, expiry, forgery, single use."""

from __future__ import annotations

import re

import pytest

from service.auth.tokens import (
    CREATE_SCOPE,
    TokenSigner,
    UsedTokens,
    looks_signed,
    session_scope,
    valid_scope,
)
from service.errors import Forbidden, Overloaded, TokenExpired

TCHAR = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # what a Sec-WebSocket-Protocol value may hold


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_round_trips_with_its_claims() -> None:
    clock = Clock()
    signer = TokenSigner(b"k" * 32, clock=clock)
    token, claims = signer.issue(CREATE_SCOPE, 60, "key123")
    assert looks_signed(token) and TCHAR.fullmatch(token) and TCHAR.fullmatch("token." + token)
    assert len(token) < 200
    assert signer.verify(token) == claims
    assert (claims.scope, claims.expires_at, claims.key_id) == (CREATE_SCOPE, 1_700_000_060, "key123")
    other, other_claims = signer.issue(CREATE_SCOPE, 60, "key123")
    assert other != token and other_claims.token_id != claims.token_id  # every token has its own id


def test_a_token_expires() -> None:
    clock = Clock()
    signer = TokenSigner(b"k" * 32, clock=clock)
    token, _ = signer.issue(session_scope("abc"), 30, "key123")
    clock.now += 29.5
    signer.verify(token)
    clock.now += 0.5
    with pytest.raises(TokenExpired) as caught:
        signer.verify(token)
    assert (caught.value.http_status, caught.value.ws_close_code) == (401, 4401)


def test_forged_and_malformed_tokens_are_refused() -> None:
    signer = TokenSigner(b"k" * 32)
    token, _ = signer.issue(session_scope("abc"), 60, "key123")
    prefix, payload, mac = token.split(".")
    forged_payload = TokenSigner(b"k" * 32).issue(session_scope("xyz"), 60, "key123")[0].split(".")[1]
    mac_flipped = mac[:10] + ("A" if mac[10] != "A" else "B") + mac[11:]
    candidates = [
        f"{prefix}.{forged_payload}.{mac}",  # another scope under this signature
        f"{prefix}.{payload}.{mac_flipped}",
        TokenSigner(b"x" * 32).issue(session_scope("abc"), 60, "key123")[0],  # another secret
        f"rsv2.{payload}.{mac}",
        f"rsv1.{payload}",
        "rsv1..",
        "rsv1.!!!.???",
        token + "A" * 2000,
    ]
    for candidate in candidates:
        with pytest.raises(Forbidden):
            signer.verify(candidate)


def test_scopes() -> None:
    assert valid_scope("session:create") and valid_scope("session:AbC_12-x")
    for bad in ("session:", "admin", "session:a b", "session:" + "a" * 65, "Session:create"):
        assert not valid_scope(bad)


def test_a_single_use_token_is_used_once_and_forgotten_after_expiry() -> None:
    clock = Clock()
    signer = TokenSigner(b"k" * 32, clock=clock)
    used = UsedTokens(clock=clock)
    _, claims = signer.issue(CREATE_SCOPE, 60, "key123")
    used.consume(claims)
    with pytest.raises(Forbidden, match="already used"):
        used.consume(claims)
    used.forget(claims)  # the session could not be created: the token may be used again
    used.consume(claims)
    assert len(used) == 1
    clock.now += 61
    assert len(used) == 0  # remembered only while it could still be presented


def test_the_memory_of_used_tokens_is_bounded() -> None:
    clock = Clock()
    signer = TokenSigner(b"k" * 32, clock=clock)
    used = UsedTokens(clock=clock, max_entries=3)
    for _ in range(3):
        used.consume(signer.issue(CREATE_SCOPE, 60, "k")[1])
    with pytest.raises(Overloaded):
        used.consume(signer.issue(CREATE_SCOPE, 60, "k")[1])
    clock.now += 61
    used.consume(signer.issue(CREATE_SCOPE, 60, "k")[1])
