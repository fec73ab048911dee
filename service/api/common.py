"""What every handler needs: the registry, the session's credentials, JSON errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from quart import Response, current_app, jsonify, request, websocket

from service.auth.guard import Guard
from service.auth.tokens import looks_signed
from service.errors import OriginNotAllowed, ReserveError
from service.sessions.record import RemoteSession
from service.sessions.registry import Registry
from service.sessions.session import Session

if TYPE_CHECKING:
    from service.gateway import Gateway

SUBPROTOCOL = "reserve.v1"  # what the server selects when a client offers it
TOKEN_SUBPROTOCOL_PREFIX = "token."  # a credential offered as a subprotocol: ``token.<token>``


def registry() -> Registry:
    return cast(Registry, current_app.extensions["reserve.registry"])


def gateway() -> Gateway:
    """What the lifespan owns: metrics, Riva's catalog, the registry once started."""
    return cast("Gateway", current_app.extensions["reserve.gateway"])


def guard() -> Guard:
    """Keys, tokens, origins and per-key limits (``service/auth``)."""
    return cast(Guard, current_app.extensions["reserve.auth"])


def bearer_token(authorization: str | None, query_token: str | None) -> str | None:
    """The token from ``Authorization: Bearer`` or, for browsers, the ``token`` query parameter."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return query_token or None


def subprotocol_token(offered: list[str]) -> str | None:
    """A credential offered as ``Sec-WebSocket-Protocol: reserve.v1, token.<token>`` (browsers
    cannot set headers on a WebSocket, and a query string ends up in proxies' logs)."""
    for protocol in offered:
        if protocol.startswith(TOKEN_SUBPROTOCOL_PREFIX) and len(protocol) > len(TOKEN_SUBPROTOCOL_PREFIX):
            return protocol[len(TOKEN_SUBPROTOCOL_PREFIX) :]
    return None


def credential(*, from_websocket: bool = False) -> str | None:
    """The caller's credential: ``Authorization: Bearer``, then (sockets) the subprotocol, then ``?token=``."""
    source: Any = websocket if from_websocket else request
    header = bearer_token(source.headers.get("Authorization"), None)
    if header is None and from_websocket:
        header = subprotocol_token(list(websocket.requested_subprotocols))
    return header or source.args.get("token") or None


def api_credential() -> str | None:
    """What may stand for an API key: ``Authorization: Bearer``, or a signed token in ``?token=``.
    A raw API key in a URL is ignored (URLs end up in proxies' logs and browser histories)."""
    header = bearer_token(request.headers.get("Authorization"), None)
    if header is not None:
        return header
    query = request.args.get("token")
    return query if query and looks_signed(query) else None


def chosen_subprotocol() -> str | None:
    """The subprotocol to accept with: ``reserve.v1`` when offered (a browser that offered any
    fails the connection unless one is selected); never echo a token back."""
    return SUBPROTOCOL if SUBPROTOCOL in websocket.requested_subprotocols else None


async def accept_websocket() -> None:
    await websocket.accept(subprotocol=chosen_subprotocol())


async def authorized_session(
    session_id: str, *, from_websocket: bool = False, scoped_ok: bool = False
) -> Session | RemoteSession:
    """Look the session up, then check its credentials: unknown is 404, missing 401, wrong 403.
    A socket from a browser page of a foreign origin is refused (403) before anything is looked up.
    ``scoped_ok``: a ``session:<id>`` token also opens it (audio and events). With shared state
    the session may be another instance's."""
    auth = guard()
    if from_websocket and not auth.origins.websocket_allowed(
        websocket.headers.get("Origin"), websocket.headers.get("Host")
    ):
        raise OriginNotAllowed("this page's origin may not open audio sockets here (RESERVE_CORS_ORIGINS)")
    session = await registry().find(session_id)
    auth.check_session(session.id, session.check_token, credential(from_websocket=from_websocket), scoped_ok=scoped_ok)
    return session


def error_response(error: ReserveError) -> Response:
    response = jsonify({"error": error.to_json()})
    response.status_code = error.http_status
    retry_after = error.details.get("retry_after_s")
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    if error.http_status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="reserve"'
    return response
