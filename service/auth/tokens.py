"""Short-lived signed tokens for browsers, so an API key never has to leave the back end.

A token is ``rsv1.<payload>.<mac>``: base64url of a compact JSON payload (scope, expiry,
a random id, the issuing key's id) and base64url of HMAC-SHA256 over ``rsv1.<payload>``.
Scopes: ``session:create`` (create one session, single use) and ``session:<id>`` (that
session's audio socket and event stream until expiry). Every character is one a
``Sec-WebSocket-Protocol`` value may carry, so the token travels there as ``token.<token>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
import json
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from service.errors import Forbidden, Overloaded, TokenExpired

PREFIX = "rsv1"
CREATE_SCOPE = "session:create"
MAX_TOKEN_CHARS = 1024
MAX_REMEMBERED = 100_000  # single-use ids kept until they expire; past this, refuse rather than grow
_SCOPE = re.compile(r"session:(create|[A-Za-z0-9_-]{1,64})")


def valid_scope(scope: str) -> bool:
    return _SCOPE.fullmatch(scope) is not None


def session_scope(session_id: str) -> str:
    return f"session:{session_id}"


def looks_signed(credential: str) -> bool:
    """Whether a presented credential is one of our tokens (else: an API key or a session token)."""
    return credential.startswith(PREFIX + ".")


@dataclass(frozen=True, slots=True)
class Claims:
    scope: str
    expires_at: int  # unix seconds
    token_id: str
    key_id: str  # the API key that asked for it ("" when auth is disabled)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Issues and verifies tokens with one HMAC key; the clock is injectable for tests."""

    def __init__(self, secret: bytes, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret
        self._clock = clock

    def issue(self, scope: str, ttl_s: float, key_id: str) -> tuple[str, Claims]:
        claims = Claims(scope, math.ceil(self._clock() + ttl_s), secrets.token_urlsafe(12), key_id)
        payload = json.dumps(
            {"s": claims.scope, "e": claims.expires_at, "j": claims.token_id, "k": claims.key_id},
            separators=(",", ":"),
        ).encode()
        signed = f"{PREFIX}.{_b64(payload)}"
        return f"{signed}.{_b64(self._mac(signed))}", claims

    def verify(self, token: str) -> Claims:
        """The token's claims; a forged or malformed token is 403, an expired one 401."""
        claims = self._decode(token)
        if claims is None:
            raise Forbidden("the token is not valid")
        if claims.expires_at <= self._clock():
            raise TokenExpired("the token has expired; ask for a new one")
        return claims

    def _mac(self, signed: str) -> bytes:
        return hmac.new(self._secret, signed.encode(), hashlib.sha256).digest()

    def _decode(self, token: str) -> Claims | None:
        if len(token) > MAX_TOKEN_CHARS:
            return None
        prefix, _, rest = token.partition(".")
        payload_b64, _, mac_b64 = rest.partition(".")
        if prefix != PREFIX or not payload_b64 or not mac_b64:
            return None
        try:
            mac = _unb64(mac_b64)
            if not hmac.compare_digest(mac, self._mac(f"{PREFIX}.{payload_b64}")):
                return None
            payload = json.loads(_unb64(payload_b64))
            claims = Claims(str(payload["s"]), int(payload["e"]), str(payload["j"]), str(payload["k"]))
        except (binascii.Error, ValueError, KeyError, TypeError):
            return None
        return claims if valid_scope(claims.scope) else None


class UsedTokens:
    """Ids of single-use tokens already spent, each kept only until its token expires."""

    def __init__(self, clock: Callable[[], float] = time.time, max_entries: int = MAX_REMEMBERED) -> None:
        self._clock = clock
        self._max = max_entries
        self._used: dict[str, int] = {}
        self._expiry: list[tuple[int, str]] = []  # heap of (expires_at, token id)

    def __len__(self) -> int:
        self._purge()
        return len(self._used)

    def consume(self, claims: Claims) -> None:
        """Mark the token spent; a second use is refused. Check and mark have no await between."""
        self._purge()
        if claims.token_id in self._used:
            raise Forbidden("this token was already used; ask for a new one")
        if len(self._expiry) >= self._max:
            raise Overloaded("too many single-use tokens outstanding; try again shortly", retry_after_s=5)
        self._used[claims.token_id] = claims.expires_at
        heapq.heappush(self._expiry, (claims.expires_at, claims.token_id))

    def forget(self, claims: Claims) -> None:
        """Give a token back (the session it was spent on could not be created)."""
        self._used.pop(claims.token_id, None)

    def _purge(self) -> None:
        now = self._clock()
        while self._expiry and self._expiry[0][0] <= now:
            _, token_id = heapq.heappop(self._expiry)
            self._used.pop(token_id, None)
