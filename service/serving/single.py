"""``reserve serve`` with one worker: the app in this process, on sockets bound already."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable

import trio
from hypercorn.config import Config, Sockets
from hypercorn.utils import LifespanFailureError, LifespanTimeoutError

from service.serving.host import serve_app


def run_here(config: Config, sockets: Sockets) -> int:
    from service.app import app  # the settings were checked: importing builds the app from them

    return run_gateway("reserve serve", serve_app, app, config, sockets)


def run_gateway(who: str, main: Callable[..., Awaitable[object]], *args: object) -> int:
    """``trio.run(main, *args)``; exit status 0, or 1 with one line, as ``who``, for a gateway that
    failed to start (anything else propagates)."""
    try:
        trio.run(main, *args)
    except BaseException as exc:
        reason = startup_failure(exc)
        if reason is None:
            raise
        print(f"{who}: {reason}", file=sys.stderr)
        return 1
    return 0


def startup_failure(exc: BaseException) -> str | None:
    """One line for a gateway that failed to start (its own log said why in full), else None."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, LifespanFailureError | LifespanTimeoutError):
        return f"the gateway failed to start: {exc}"
    return None
