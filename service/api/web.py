"""The browser page: plain files from ``web/``, no build step."""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response, current_app, send_from_directory

DEFAULT_WEB_DIR = Path(__file__).resolve().parent.parent.parent / "web"
blueprint = Blueprint("web", __name__)

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "media-src 'self' blob:; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a #token=... fragment is never sent anyway; the path tells nothing either
    "Permissions-Policy": "microphone=(self), camera=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


@blueprint.get("/")
async def index() -> Response:
    response = await send_from_directory(_web_dir(), "index.html")
    response.headers.update(PAGE_HEADERS)
    return response


@blueprint.get("/static/<path:name>")
async def static_file(name: str) -> Response:
    response = await send_from_directory(_web_dir(), name)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _web_dir() -> Path:
    configured: Path | None = current_app.config.get("RESERVE_WEB_DIR")
    return configured or DEFAULT_WEB_DIR
