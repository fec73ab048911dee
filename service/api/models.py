"""What the configured Riva offers, so clients can choose a language and model."""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

from service.api.common import gateway
from service.errors import UpstreamUnavailable
from service.riva.catalog import Catalog
from service.sessions.config import RecognitionSettings

blueprint = Blueprint("models", __name__)


def catalog() -> Catalog:
    found = gateway().catalog
    if found is None:
        raise UpstreamUnavailable("the gateway is still starting; Riva has not been asked yet")
    return found


@blueprint.get("/v1/models")
async def list_models() -> Response:
    """Streaming models and languages, from Riva's GetRivaSpeechRecognitionConfig (cached)."""
    offer = await catalog().offer()
    return jsonify(offer.to_json())


async def check_offered(config: RecognitionSettings) -> None:
    """422 if Riva does not offer the requested language or model. When Riva cannot be
    asked right now the session is created anyway, and Riva judges its stream."""
    found = gateway().catalog
    offer = await found.offer_or_none() if found is not None else None
    if offer is not None:
        offer.check(config.language_code, config.model)
