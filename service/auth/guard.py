"""Who may do what: API keys create sessions and tokens, tokens stand in for them in browsers,
and a session's own credentials (its token, or a ``session:<id>`` token) open only that session.

One ``Guard`` per app. ``start`` runs before the first request: with no keys configured and
auth not explicitly disabled it refuses to start, rather than serve an open gateway by mistake.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import trio

from service.auth.keys import ApiKeys, KeysFileError, parse_keys_list
from service.auth.limits import KeyLimits
from service.auth.origins import OriginPolicy
from service.auth.tokens import CREATE_SCOPE, Claims, TokenSigner, UsedTokens, looks_signed, session_scope
from service.errors import Forbidden, Overloaded, RateLimited, StateUnavailable, Unauthorized
from service.settings import Settings
from service.shared.base import KeyCounters, SingleUseTokens
from service.shared.memory import MemoryKeyCounters, MemorySingleUse

log = logging.getLogger("reserve.auth")

ANONYMOUS = "anonymous"  # the one principal when auth is disabled


class AuthConfigError(Exception):
    """Start-up must stop: the message says what to set."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a key id (safe to log), or ``anonymous`` with auth disabled."""

    key_id: str
    claims: Claims | None = None  # set when a session:create token stands in for the key

    @property
    def anonymous(self) -> bool:
        return self.key_id == ANONYMOUS


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    claims: Claims

    def to_json(self) -> dict[str, object]:
        expires = datetime.fromtimestamp(self.claims.expires_at, UTC)
        return {
            "token": self.token,
            "expires_at": expires.isoformat().replace("+00:00", "Z"),
            "scope": self.claims.scope,
        }


class Guard:
    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        configured_secret = settings.token_secret.get_secret_value()
        self.secret_is_random = not configured_secret
        secret = configured_secret.encode() if configured_secret else secrets.token_bytes(32)
        self.signer = TokenSigner(secret, clock=clock)
        self.used = UsedTokens(clock=clock)
        self.keys = ApiKeys(
            parse_keys_list(settings.api_keys.get_secret_value()), settings.api_keys_file, id_secret=secret
        )
        self.limits = KeyLimits(
            max_concurrent=settings.max_sessions_per_key, per_minute=settings.sessions_per_minute_per_key
        )
        self.origins = OriginPolicy(settings.cors_origin_list)
        self.counters: KeyCounters = MemoryKeyCounters(self.limits)
        self.single_use: SingleUseTokens = MemorySingleUse(self.used)
        self._clock = clock
        self.awaiting_secret = False  # shared mode, until Redis hands out the deployment's secret

    def share(self, secret: bytes | None, counters: KeyCounters, single_use: SingleUseTokens) -> None:
        """Use the deployment's shared state (Redis): its counters and spent-token ids, and its token
        secret when none is configured, so a token minted by one instance works on every other."""
        if secret is not None:
            self.use_secret(secret)
        self.counters = counters
        self.single_use = single_use

    def use_secret(self, secret: bytes) -> None:
        """The deployment's shared token secret (RESERVE_TOKEN_SECRET, when set, wins)."""
        if self.secret_is_random:
            self.signer = TokenSigner(secret, clock=self._clock)
            self.keys = ApiKeys(
                parse_keys_list(self.settings.api_keys.get_secret_value()),
                self.settings.api_keys_file,
                id_secret=secret,
            )
            self.keys.load()
            self.secret_is_random = False
        self.awaiting_secret = False

    def _check_secret(self) -> None:
        if self.awaiting_secret:
            raise Overloaded("waiting for Redis to share the token secret; try again shortly", retry_after_s=2)

    @property
    def disabled(self) -> bool:
        return self.settings.auth_disabled

    def start(self) -> None:
        """Load the keys; refuse to run with none unless auth is explicitly disabled."""
        try:
            self.keys.load()
        except KeysFileError as exc:
            raise AuthConfigError(f"Reserve cannot start: {exc}") from None
        if self.disabled:
            log.warning(
                "AUTHENTICATION IS DISABLED (RESERVE_AUTH_DISABLED=true): anyone who can reach this port may "
                "create sessions. For local development only; set RESERVE_API_KEYS or RESERVE_API_KEYS_FILE."
            )
        elif self.keys.count == 0:
            raise AuthConfigError(
                "Reserve cannot start: no API keys configured. Set RESERVE_API_KEYS (comma-separated) or "
                "RESERVE_API_KEYS_FILE (one key per line), or RESERVE_AUTH_DISABLED=true for local development."
            )
        else:
            log.info("client authentication on: %d API keys", self.keys.count)
        if self.secret_is_random:
            log.info("RESERVE_TOKEN_SECRET not set: browser tokens are signed with a random per-process key")

    # -- callers -------------------------------------------------------------------
    def api_key(self, credential: str | None) -> Principal:
        """An API key (``POST /v1/tokens``): missing 401, not a configured key 403."""
        self._check_secret()  # key ids are keyed by the secret
        if credential and not looks_signed(credential):
            key_id = self.keys.identify(credential)
            if key_id is not None:
                return Principal(key_id)
        if self.disabled:
            return Principal(ANONYMOUS)
        if not credential:
            raise Unauthorized("this needs an API key: Authorization: Bearer <key>")
        if looks_signed(credential):
            raise Forbidden("tokens cannot ask for tokens; use an API key")
        raise Forbidden("the API key is not valid")

    def creator(self, credential: str | None) -> Principal:
        """Who creates a session: an API key, or a ``session:create`` token standing in for one.
        The token is checked here and spent by ``admit`` just before the session is made."""
        if credential and looks_signed(credential):
            self._check_secret()
            claims = self.signer.verify(credential)
            if claims.scope != CREATE_SCOPE:
                raise Forbidden(f"this token's scope is {claims.scope!r}, not {CREATE_SCOPE!r}")
            return Principal(claims.key_id or ANONYMOUS, claims)
        return self.api_key(credential)

    def issue(self, principal: Principal, scope: str, ttl_s: float, *, owner: str | None = None) -> IssuedToken:
        """A token for ``scope``; a session's scope only for the key that created that session."""
        if scope != CREATE_SCOPE and (principal.anonymous or owner != principal.key_id):
            raise Forbidden("a session's token can only be issued to the API key that created the session")
        token, claims = self.signer.issue(scope, ttl_s, "" if principal.anonymous else principal.key_id)
        return IssuedToken(token, claims)

    # -- single use and limits, around creating a session ----------------------------
    async def admit(self, principal: Principal) -> str:
        """Spend the principal's single-use token (403 if already spent), then count a session
        against the key's limits (429). The token goes first, so replaying a spent token cannot
        use up its key's allowance. Returns the ticket that ``release`` takes once the session
        ends (on whichever instance ends it) or could not be created after all."""
        if principal.claims is not None:
            await self.single_use.consume(principal.claims)
        ticket = secrets.token_urlsafe(12)
        try:
            refusal = await self.counters.admit(principal.key_id, ticket)
        except BaseException:  # shared state failed (503): no session, so the token is still good
            with trio.CancelScope(shield=True):
                await self._unspend(principal)
            raise
        if refusal is not None:
            await self._unspend(principal)  # no session was made: the token is still good
            raise RateLimited(f"this API key is at its limit of {refusal.limit}", retry_after_s=refusal.retry_after_s)
        return ticket

    async def not_created(self, principal: Principal, ticket: str) -> None:
        """Undo ``admit``: the session could not be created, so its token may be used again.
        Best effort: it runs while another error is on its way to the client."""
        with contextlib.suppress(StateUnavailable):
            await self.counters.release(principal.key_id, ticket)
        await self._unspend(principal)

    async def _unspend(self, principal: Principal) -> None:
        if principal.claims is not None:
            with contextlib.suppress(StateUnavailable):  # Redis is failing: the token stays spent
                await self.single_use.forget(principal.claims)

    # -- a session's own resources ----------------------------------------------------
    def check_session(
        self, session_id: str, check_token: Callable[[str | None], None], credential: str | None, *, scoped_ok: bool
    ) -> None:
        """The session's token (``check_token``: missing 401, wrong 403) or, where ``scoped_ok``,
        a ``session:<id>`` token for this very session."""
        if credential and looks_signed(credential):
            self._check_secret()
            claims = self.signer.verify(credential)
            if claims.scope != session_scope(session_id):
                raise Forbidden("this token is not for this session")
            if not scoped_ok:
                raise Forbidden("a session-scoped token opens only the session's audio and events")
            return
        check_token(credential)
