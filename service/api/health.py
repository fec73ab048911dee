"""Liveness: the process answers. (Readiness, which asks Riva, is separate.)"""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

from service.api.common import registry

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
async def healthz() -> Response:
    reg = registry()
    return jsonify({"status": "ok", "live_sessions": reg.live_sessions})
