"""``POST /v1/tokens``: a back end trades its API key for a short-lived token a browser may hold."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from quart import Blueprint, Response, jsonify, request
from quart_schema import document_request

from service.api.common import api_credential, guard, registry
from service.auth.tokens import CREATE_SCOPE, valid_scope
from service.errors import BadRequest, SessionNotFound

blueprint = Blueprint("tokens", __name__)


class TokenRequest(BaseModel):
    """What the token may do, and for how long (capped by ``RESERVE_TOKEN_MAX_TTL_S``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    scope: str = Field(CREATE_SCOPE, description="'session:create' (one session, single use) or 'session:<id>'")
    ttl_s: float | None = Field(None, gt=0, description="Lifetime in seconds; default RESERVE_TOKEN_TTL_S")


@blueprint.post("/v1/tokens")
@document_request(TokenRequest)
async def create_token() -> tuple[Response, int]:
    auth = guard()
    principal = auth.api_key(api_credential())  # only an API key: a token cannot mint tokens
    body = await request.get_data(cache=False)
    try:
        wanted = TokenRequest.model_validate_json(body or b"{}")
    except ValidationError as exc:
        fields = [
            {"field": ".".join(str(p) for p in err["loc"]) or "(body)", "reason": err["msg"]}
            for err in exc.errors(include_url=False)
        ]
        raise BadRequest("invalid token request", fields=fields) from None
    settings = auth.settings
    ttl_s = settings.token_ttl_s if wanted.ttl_s is None else wanted.ttl_s
    if ttl_s > settings.token_max_ttl_s:
        raise BadRequest(
            f"ttl_s is at most {settings.token_max_ttl_s:g}",
            fields=[{"field": "ttl_s", "reason": f"at most {settings.token_max_ttl_s:g}"}],
        )
    if not valid_scope(wanted.scope):
        raise BadRequest(
            "scope is 'session:create' or 'session:<id>'",
            fields=[{"field": "scope", "reason": "'session:create' or 'session:<id>'"}],
        )
    owner: str | None = None
    if wanted.scope != CREATE_SCOPE:
        session_id = wanted.scope.removeprefix("session:")
        try:
            owner = (await registry().find(session_id)).owner
        except SessionNotFound:
            owner = None  # same answer as a session of another key: ids reveal nothing
    issued = auth.issue(principal, wanted.scope, ttl_s, owner=owner)
    response = jsonify(issued.to_json())
    response.headers["Cache-Control"] = "no-store"
    return response, 201
