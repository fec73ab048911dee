"""The browser page: plain files from ``web/``, no build step."""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response, send_from_directory

WEB_DIR = Path(__file__).resolve().parent.parent.parent / "web"
blueprint = Blueprint("web", __name__)

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "media-src 'self' blob:; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "microphone=(self)",
}


@blueprint.get("/")
async def index() -> Response:
    response = await send_from_directory(WEB_DIR, "index.html")
    response.headers.update(PAGE_HEADERS)
    return response


@blueprint.get("/static/<path:name>")
async def static_file(name: str) -> Response:
    response = await send_from_directory(WEB_DIR, name)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
