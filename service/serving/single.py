"""``reserve serve`` with one worker: the app in this process, on sockets bound already."""

from __future__ import annotations

import sys

import trio
from hypercorn.config import Config, Sockets
from hypercorn.utils import LifespanFailureError, LifespanTimeoutError

from service.serving.host import serve_app


def run_here(config: Config, sockets: Sockets) -> int:
    from service.app import app  # the settings were checked: importing builds the app from them

    try:
        trio.run(serve_app, app, config, sockets)
    except (LifespanFailureError, LifespanTimeoutError) as exc:
        print(f"reserve serve: the gateway failed to start: {exc}", file=sys.stderr)
        return 1
    return 0
