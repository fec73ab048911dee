"""Realtime transcription in OpenAI's and NVIDIA's dialects: the WebSocket ``/v1/realtime`` and the
endpoints that mint its short-lived client secrets (Reserve ``session:create`` tokens)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec
import trio
from quart import Blueprint, Response, jsonify, request, websocket

from service.api.common import api_credential, bearer_token, guard, registry
from service.api.models import check_offered
from service.api.openai_errors import openai_errors
from service.auth.tokens import CREATE_SCOPE, looks_signed
from service.errors import BadRequest, Forbidden, OriginNotAllowed, ReserveError
from service.realtime.connection import Connection
from service.realtime.dialect import Dialect
from service.realtime.messages import EventError, error_event
from service.realtime.nvidia import Nvidia
from service.realtime.openai import OpenAIBeta, OpenAIGA
from service.sessions.config import RecognitionSettings
from service.sessions.driven import DrivenSession

blueprint = Blueprint("realtime", __name__)
log = logging.getLogger("reserve.realtime")

REALTIME_SUBPROTOCOL = "realtime"
TOKEN_SUBPROTOCOLS = ("openai-insecure-api-key.", "realtime-token.")
BETA_SUBPROTOCOL = "openai-beta.realtime-v1"
DEFAULT_SECRET_TTL_S = 600.0  # OpenAI's client secrets live 10 minutes; capped by RESERVE_TOKEN_MAX_TTL_S


def pick_dialect(headers: Any, offered: list[str], query: Any) -> Dialect:
    """Beta by its header or subprotocol; NVIDIA by its ``realtime-token.`` subprotocol (or
    ``?dialect=nvidia``, for a client without a secret); otherwise OpenAI GA."""
    chosen = query.get("dialect")
    if chosen == "nvidia" or any(p.startswith("realtime-token.") for p in offered):
        return Nvidia()
    if chosen == "openai-beta" or "realtime=v1" in headers.get("OpenAI-Beta", "") or BETA_SUBPROTOCOL in offered:
        return OpenAIBeta()
    return OpenAIGA()


def socket_credential() -> str | None:
    """``Authorization: Bearer`` (API key or token), else a token offered as a subprotocol."""
    header = bearer_token(websocket.headers.get("Authorization"), None)
    if header is not None:
        return header
    for offered in websocket.requested_subprotocols:
        for prefix in TOKEN_SUBPROTOCOLS:
            if offered.startswith(prefix) and len(offered) > len(prefix):
                value = offered[len(prefix) :]
                if not looks_signed(value):
                    raise Forbidden(
                        "an API key must never be sent from a browser: offer a client secret from "
                        "POST /v1/realtime/client_secrets (or /v1/realtime/transcription_sessions) instead"
                    )
                return value
    return None


@blueprint.websocket("/v1/realtime")
async def realtime() -> None:
    with registry().socket_waiting() as starting:
        await _realtime(starting)


async def _realtime(starting: Callable[[], None]) -> None:
    """``starting``: called as the socket's session is created (from then on the registry
    counts the session, not the socket)."""
    offered = list(websocket.requested_subprotocols)
    subprotocol = REALTIME_SUBPROTOCOL if REALTIME_SUBPROTOCOL in offered else None
    dialect = pick_dialect(websocket.headers, offered, websocket.args)
    auth = guard()
    try:
        if not auth.origins.websocket_allowed(websocket.headers.get("Origin"), websocket.headers.get("Host")):
            raise OriginNotAllowed("this page's origin may not open realtime sockets here (RESERVE_CORS_ORIGINS)")
        intent = websocket.args.get("intent", "transcription")
        if intent != "transcription":
            raise BadRequest(f"intent={intent!r}: this gateway serves intent=transcription only")
        principal = auth.creator(socket_credential())
        ticket = await auth.admit(principal)  # the key's limits, a single-use secret spent
    except ReserveError as error:
        registry().runtime.metrics.realtime_error(error.code)
        await websocket.accept(subprotocol=subprotocol)
        await _send(error_event(EventError.from_reserve(error)))
        await websocket.close(error.ws_close_code, error.code)
        return
    await websocket.accept(subprotocol=subprotocol)

    async def release() -> None:
        await auth.counters.release(principal.key_id, ticket)

    async def open_session(settings: RecognitionSettings) -> DrivenSession:
        await check_offered(settings)
        starting()
        driven = await DrivenSession.start(
            registry(), settings, protocol=dialect.name, owner=principal.key_id, ticket=ticket, on_end=release
        )
        log.info(
            "realtime connection (%s) streams into session %s",
            dialect.name,
            driven.session.id,
            extra={"session_id": driven.session.id},
        )
        return driven

    bounds = registry().runtime.settings
    metrics = registry().runtime.metrics

    async def send(event: dict[str, Any]) -> None:
        if event["type"] == "error":
            metrics.realtime_error(str(event["error"]["code"]))
        await _send(event)

    connection = Connection(
        dialect,
        send=send,
        open_session=open_session,
        max_audio_bytes=bounds.max_frame_bytes,
        idle_timeout_s=bounds.idle_session_timeout_s,
    )
    try:
        await connection.run(websocket.receive)
    finally:
        if connection.driven is None:
            with trio.CancelScope(shield=True):
                await release()  # no session was made: the key's live count goes back
    await websocket.close(connection.close_code, connection.close_reason[:120])


async def _send(event: dict[str, Any]) -> None:
    await websocket.send(msgspec.json.encode(event).decode())


# -- client secrets -------------------------------------------------------------------------
def _expiry_seconds(body: dict[str, Any]) -> float:
    settings = guard().settings
    expires = body.get("expires_after")
    wanted = expires.get("seconds") if isinstance(expires, dict) else None
    if wanted is None:
        wanted = DEFAULT_SECRET_TTL_S
    if not isinstance(wanted, int | float) or isinstance(wanted, bool) or wanted <= 0:
        raise BadRequest("expires_after.seconds must be a positive number", param="expires_after.seconds")
    return float(min(wanted, settings.token_max_ttl_s))


async def _json_body() -> dict[str, Any]:
    raw = await request.get_data(cache=False)
    if not raw or not raw.strip():
        return {}
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _mint(ttl_s: float) -> tuple[str, int]:
    auth = guard()
    principal = auth.api_key(api_credential())  # an API key (or auth disabled); never a token
    issued = auth.issue(principal, CREATE_SCOPE, ttl_s)
    return issued.token, int(issued.claims.expires_at)


def _configured(dialect: Dialect, session: Any) -> Any:
    config = dialect.default_config()
    if session is not None:
        if not isinstance(session, dict):
            raise BadRequest("session must be an object", param="session")
        try:
            dialect.apply_update(config, session, None)
            config.to_settings()
        except EventError as error:
            raise BadRequest(error.message, param=error.param) from None
    return config


def _no_store(payload: dict[str, Any]) -> Response:
    response = jsonify(payload)
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.post("/v1/realtime/client_secrets")
@openai_errors
async def client_secrets() -> Response:
    """OpenAI GA: a client secret for a browser; its ``session`` is the defaults with what was asked
    applied (send it again with ``session.update``: the secret carries no settings)."""
    body = await _json_body()
    config = _configured(OpenAIGA(), body.get("session"))
    value, expires_at = _mint(_expiry_seconds(body))
    session_id = f"sess_{int(time.time() * 1000):x}"
    return _no_store(
        {"value": value, "expires_at": expires_at, "session": OpenAIGA().session_object(config, session_id)}
    )


@blueprint.post("/v1/realtime/transcription_sessions")
@openai_errors
async def transcription_sessions() -> Response:
    """OpenAI beta (its SDK sends an ``OpenAI-Beta`` header) and NVIDIA: the whole session object,
    in the asker's dialect, with ``client_secret``."""
    body = await _json_body()
    dialect: Dialect = OpenAIBeta() if "OpenAI-Beta" in request.headers else Nvidia()
    config = _configured(dialect, body or None)
    value, expires_at = _mint(_expiry_seconds(body))
    session = dialect.session_object(config, f"sess_{int(time.time() * 1000):x}")
    session["client_secret"] = {"value": value, "expires_at": expires_at}
    return _no_store(session)
