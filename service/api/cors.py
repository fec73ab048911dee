"""CORS for listed origins, and headers every response carries.

No wildcard, ever, and no ``Access-Control-Allow-Credentials``: the API's credentials are
bearer tokens a page sends on purpose, never cookies a browser would attach by itself.
(quart-cors was considered; its WebSocket check refuses clients that send no ``Origin``,
which every non-browser client is, with a bare 400 before the socket could say why.)
"""

from __future__ import annotations

from quart import Quart, Response, request

from service.auth.origins import OriginPolicy

ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Last-Event-ID"
EXPOSE_HEADERS = "Location, Retry-After, WWW-Authenticate"
PREFLIGHT_MAX_AGE_S = 600
HSTS = "max-age=31536000"


def install(app: Quart, policy: OriginPolicy) -> None:
    @app.after_request
    async def cors_and_security_headers(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if policy.allowed:
            response.vary.add("Origin")
        if origin and policy.cross_origin_allowed(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
            if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
                response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
                response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
                response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_S)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if request.scheme == "https":  # only where this server itself speaks TLS; see README
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        return response
