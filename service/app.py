"""create_app(settings): routes, error mapping and the gateway's lifespan.

``app`` at the bottom is what hypercorn serves: ``hypercorn --config hypercorn.toml service.app:app``.
"""

from __future__ import annotations

import logging

from quart import Response, jsonify
from quart_schema import QuartSchema
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from service.api import audio, events, health, sessions, web
from service.api.common import error_response
from service.errors import InternalError, ReserveError
from service.gateway import Gateway
from service.settings import Settings

log = logging.getLogger("reserve")


def create_app(settings: Settings | None = None) -> QuartTrio:
    settings = settings or Settings()
    _configure_logging(settings)
    app = QuartTrio("reserve", static_folder=None)  # web/ is served by api/web.py
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        BODY_TIMEOUT=30,
        RESPONSE_TIMEOUT=60,
        BACKGROUND_TASK_SHUTDOWN_TIMEOUT=5,
        RESERVE_WEB_DIR=settings.web_dir,
    )
    QuartSchema(
        app,
        openapi_path="/openapi.json",
        redoc_ui_path=None,
        scalar_ui_path=None,
        swagger_ui_path=None,
        info={"title": "Reserve", "version": "0.1.0"},
    )
    for module in (sessions, audio, events, health, web):
        app.register_blueprint(module.blueprint)
    gateway = Gateway(settings)
    app.extensions["reserve.gateway"] = gateway

    @app.before_serving
    async def start_gateway() -> None:
        app.extensions["reserve.registry"] = await app.nursery.start(gateway.run)

    @app.after_serving
    async def stop_gateway() -> None:
        await gateway.stop()

    @app.errorhandler(ReserveError)
    async def reserve_error(error: ReserveError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        code = (error.name or "error").lower().replace(" ", "_")
        response = jsonify({"error": {"code": code, "message": error.description or error.name}})
        response.status_code = error.code or 500
        return response

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        log.exception("unhandled error", exc_info=error)
        return error_response(InternalError("internal error; the gateway logged the details"))

    return app


def _configure_logging(settings: Settings) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("reserve").setLevel(settings.log_level)


app = create_app()
