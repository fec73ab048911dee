"""Liveness (the process answers) and readiness (Riva answers, Redis answers where it holds the
shared state, and sessions are taken)."""

from __future__ import annotations

import os
from typing import Any

from quart import Blueprint, Response, current_app, jsonify

from service.api.common import gateway, registry
from service.errors import ReserveError

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
async def healthz() -> Response:
    reg = registry()
    # pid: which worker answered, when several share the port (reserve serve --workers N)
    return jsonify({"status": "ok", "live_sessions": reg.live_sessions, "pid": os.getpid()})


@blueprint.get("/readyz")
async def readyz() -> Response:
    """200 when a new session could stream now; 503 with the reason when not. Riva is asked
    through the cached model list, so probes every few seconds cost at most one call per
    ``RESERVE_READINESS_CACHE_S``."""
    catalog = gateway().catalog
    reg = current_app.extensions.get("reserve.registry")
    if catalog is None or reg is None:
        return _not_ready("starting", "the gateway is starting")
    if reg.draining:
        return _not_ready("draining", "the gateway is shutting down and takes no new sessions")
    hub = gateway().hub
    if hub is not None and hub.error is not None:
        return _not_ready("redis_unavailable", f"Redis (shared state) does not answer: {hub.error}")
    shared = gateway().shared
    if shared is not None and not shared.ready.is_set():
        return _not_ready("redis_unavailable", "waiting for Redis to share the token secret")
    try:
        offer = await catalog.offer()
    except ReserveError as error:
        return _not_ready(error.code, f"Riva at {catalog.uri} cannot be asked: {error.message}")
    if not offer.streaming_models:
        return _not_ready("no_models", f"Riva at {catalog.uri} offers no streaming ASR model")
    return jsonify(
        {
            "status": "ready",
            "riva": {
                "uri": catalog.uri,
                "streaming_models": len(offer.streaming_models),
                "models": [m.name for m in offer.streaming_models],
                "languages": offer.languages,
                "checked_at": offer.checked_at,
            },
            "live_sessions": reg.live_sessions,
        }
    )


def _not_ready(code: str, reason: str) -> Response:
    body: dict[str, Any] = {"status": "not_ready", "code": code, "reason": reason}
    response = jsonify(body)
    response.status_code = 503
    return response
