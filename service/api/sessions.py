"""REST: create, inspect and cancel sessions."""

from __future__ import annotations

from typing import Any

import trio
from pydantic import ValidationError
from quart import Blueprint, Response, jsonify, request
from quart_schema import document_request

from service.api.common import api_credential, authorized_session, guard, registry
from service.api.models import check_offered
from service.errors import BadRequest, InvalidConfig
from service.sessions.config import RecognitionSettings

blueprint = Blueprint("sessions", __name__)


def parse_settings(body: bytes) -> RecognitionSettings:
    """Validate the body; 422 names every bad field and why."""
    try:
        return RecognitionSettings.model_validate_json(body or b"{}")
    except ValidationError as exc:
        fields = [
            {"field": ".".join(str(p) for p in err["loc"]) or "(body)", "reason": err["msg"]}
            for err in exc.errors(include_url=False)
        ]
        if any(err["type"] == "json_invalid" for err in exc.errors()):
            raise BadRequest("the body is not valid JSON", fields=fields) from None
        summary = "; ".join(f"{f['field']}: {f['reason']}" for f in fields[:5])
        raise InvalidConfig(f"invalid session settings: {summary}", fields=fields) from None


@blueprint.post("/v1/sessions")
@document_request(RecognitionSettings)
async def create_session() -> tuple[Response, int]:
    auth = guard()
    principal = auth.creator(api_credential())  # an API key or a session:create token, before anything else
    body = await request.get_data(cache=False)
    if not isinstance(body, bytes):  # pragma: no cover - get_data(as_text=False) gives bytes
        body = body.encode()
    if body.strip() and request.mimetype not in ("application/json", ""):
        raise BadRequest("send the settings as application/json")
    settings = parse_settings(body)
    await check_offered(settings)  # 422 with the choices when Riva offers no such language or model
    ticket = await auth.admit(principal)  # 429 over the key's limits; spends a single-use token

    async def release() -> None:
        await auth.counters.release(principal.key_id, ticket)

    try:
        session = await registry().create(settings, owner=principal.key_id, ticket=ticket, on_end=release)
    except BaseException:
        with trio.CancelScope(shield=True):
            await auth.not_created(principal, ticket)
        raise
    base = f"/v1/sessions/{session.id}"
    payload: dict[str, Any] = {
        "id": session.id,
        "token": session.token,
        "audio_url": f"{base}/audio",
        "events_url": f"{base}/events",
        "state": session.state.value,
        "config": settings.model_dump(),
    }
    response = jsonify(payload)
    response.headers["Location"] = base
    response.headers["Cache-Control"] = "no-store"
    return response, 201


@blueprint.get("/v1/sessions/<session_id>")
async def get_session(session_id: str) -> Response:
    return jsonify((await authorized_session(session_id)).describe())


@blueprint.delete("/v1/sessions/<session_id>")
async def delete_session(session_id: str) -> Response:
    session = await authorized_session(session_id)
    return jsonify(await registry().cancel(session, "cancelled"))
