"""create_app(settings): routes, error mapping and the gateway's lifespan.

``app`` at the bottom is what hypercorn serves: ``hypercorn --config hypercorn.toml service.app:app``.
"""

from __future__ import annotations

import logging
from types import TracebackType

import trio
from pydantic import ValidationError
from quart import Response, jsonify
from quart_schema import QuartSchema
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from service import hypercorn_tcp, startup
from service.api import audio, cors, events, health, metrics, models, realtime, sessions, tokens, transcriptions, web
from service.api.bodies import bound_body
from service.api.common import error_response
from service.api.direct_socket import WebsocketConnection
from service.auth.guard import AuthConfigError, Guard
from service.errors import InternalError, ReserveError
from service.gateway import Gateway
from service.observability.logging import configure_logging
from service.settings import Settings

log = logging.getLogger("reserve")


class ReserveApp(QuartTrio):
    asgi_websocket_class = WebsocketConnection  # audio sockets skip Quart's relay task

    def log_exception(
        self, exception_info: tuple[type, BaseException, TracebackType] | tuple[None, None, None]
    ) -> None:
        if isinstance(exception_info[1], startup.StartupRefused):
            return  # its lines go to stderr as the process ends, without a traceback
        super().log_exception(exception_info)


def create_app(settings: Settings | None = None) -> QuartTrio:
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = ReserveApp("reserve", static_folder=None)  # web/ is served by api/web.py
    app.config.update(
        MAX_CONTENT_LENGTH=max(settings.max_body_bytes, settings.max_upload_bytes),  # lowered per route: api/bodies.py
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
    for module in (sessions, tokens, audio, events, health, metrics, models, web, realtime, transcriptions):
        app.register_blueprint(module.blueprint)
    guard = Guard(settings)
    app.extensions["reserve.auth"] = guard
    cors.install(app, guard.origins)
    gateway = Gateway(settings)
    app.extensions["reserve.gateway"] = gateway

    @app.before_request
    async def limit_body() -> None:
        bound_body(settings.max_body_bytes, settings.max_upload_bytes)

    @app.before_serving
    async def start_gateway() -> None:
        # here, not at import: tests import this module without any keys
        problems = startup.configuration_problems(settings)
        if problems:
            raise startup.StartupRefused(problems)
        try:
            guard.start()
        except AuthConfigError as exc:  # the keys file changed since the check
            raise startup.StartupRefused([str(exc).removeprefix(startup.PREFIX)]) from None
        app.extensions["reserve.registry"] = await app.nursery.start(gateway.run)
        if gateway.shared is not None:  # one secret, one count, one spent-token list for every instance
            shared = gateway.shared
            guard.share(None, shared.counters, shared.single_use)
            if shared.needs_secret:
                guard.awaiting_secret = True
                app.nursery.start_soon(shared.fetch_secret, guard.use_secret)
                with trio.move_on_after(settings.redis_timeout_s):  # Redis away: serve, and say so in /readyz
                    await shared.ready.wait()

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


def load_settings() -> Settings:
    """Settings from the environment; a bad value stops start-up with one line per problem."""
    return startup.load_settings_or_exit()


def settings_error_message(exc: ValidationError) -> str:
    return "\n".join(startup.PREFIX + problem for problem in startup.validation_problems(exc))


startup.report_refusals_instead_of_tracebacks()
hypercorn_tcp.apply()
app = create_app()
