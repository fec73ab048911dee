"""What every handler needs: the registry, the session's credentials, JSON errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from quart import Response, current_app, jsonify, request, websocket

from service.errors import ReserveError
from service.sessions.registry import Registry
from service.sessions.session import Session

if TYPE_CHECKING:
    from service.gateway import Gateway


def registry() -> Registry:
    return cast(Registry, current_app.extensions["reserve.registry"])


def gateway() -> Gateway:
    """What the lifespan owns: metrics, Riva's catalog, the registry once started."""
    return cast("Gateway", current_app.extensions["reserve.gateway"])


def bearer_token(authorization: str | None, query_token: str | None) -> str | None:
    """The token from ``Authorization: Bearer`` or, for browsers, the ``token`` query parameter."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return query_token or None


def authorized_session(session_id: str, *, from_websocket: bool = False) -> Session:
    """Look the session up, then check its token: unknown is 404, missing 401, wrong 403."""
    source: Any = websocket if from_websocket else request
    session = registry().get(session_id)
    session.check_token(bearer_token(source.headers.get("Authorization"), source.args.get("token")))
    return session


def error_response(error: ReserveError) -> Response:
    response = jsonify({"error": error.to_json()})
    response.status_code = error.http_status
    retry_after = error.details.get("retry_after_s")
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response
