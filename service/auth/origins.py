"""Which browser origins may call the API (CORS) and open the audio socket.

Same-origin is always allowed; other origins only when listed in ``RESERVE_CORS_ORIGINS``
(exact ``scheme://host[:port]``, never a wildcard). A request without an ``Origin``
header does not come from a browser page, so there is nothing to check: its credentials
decide. This module is pure; ``service/api/cors.py`` applies it.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit


class OriginPolicy:
    def __init__(self, allowed: Iterable[str]) -> None:
        self.allowed = frozenset(origin.lower().rstrip("/") for origin in allowed)

    def cross_origin_allowed(self, origin: str) -> bool:
        """A listed origin (for CORS response headers)."""
        return origin.lower() in self.allowed

    def websocket_allowed(self, origin: str | None, host: str | None) -> bool:
        """An upgrade from no page, from the page's own host, or from a listed origin."""
        if origin is None:
            return True
        if self.cross_origin_allowed(origin):
            return True
        return same_origin(origin, host)


def same_origin(origin: str, host: str | None) -> bool:
    """``Origin`` names the host the request went to (``Host``): the page is our own.

    The scheme is not compared: the socket is ``ws``/``wss`` while the page is
    ``http``/``https``, and a TLS-terminating proxy hides the outer scheme anyway."""
    if not host or origin == "null":
        return False
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    netloc = parts.netloc.lower()
    host = host.lower()
    default_port = {"http": ":80", "https": ":443"}[parts.scheme]
    return netloc == host or netloc + default_port == host or netloc == host.removesuffix(default_port)
