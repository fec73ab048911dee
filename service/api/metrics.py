"""Prometheus scrape endpoint: the app's own registry, in the text exposition format."""

from __future__ import annotations

from quart import Blueprint, Response

from service.api.common import gateway
from service.observability.metrics import CONTENT_TYPE

blueprint = Blueprint("metrics", __name__)


@blueprint.get("/metrics")
async def metrics() -> Response:
    return Response(gateway().metrics.exposition(), status=200, content_type=CONTENT_TYPE)
