"""A worker process started by the supervisor: serves the app on the listening sockets the
supervisor bound and passed down, says ``ready`` on a pipe, drains on SIGTERM, and drains on
its own if the supervisor disappears (its stdin, a pipe from the supervisor, ends)."""

from __future__ import annotations

import argparse
import functools
import os
import socket
import sys
from pathlib import Path

import trio
from hypercorn.config import Config, Sockets
from quart_trio import QuartTrio

from service.serving.config import hypercorn_config
from service.serving.host import serve_app
from service.serving.siblings import Siblings
from service.serving.single import run_gateway

READY = b"ready\n"


def command(config_path: Path | None, fds: list[tuple[int, bool]], ready_fd: int, siblings: Siblings) -> list[str]:
    """How the supervisor starts a worker (a fresh interpreter: nothing inherited but the fds)."""
    args = [sys.executable, "-m", "service.serving.worker", "--ready-fd", str(ready_fd)]
    args += ["--siblings", str(siblings.directory), "--slot", str(siblings.slot), "--of", str(siblings.count)]
    if config_path is not None:
        args += ["--config", str(config_path)]
    for fd, secure in fds:
        args += ["--fd", f"{fd}:{'secure' if secure else 'insecure'}"]
    return args


def main(argv: list[str] | None = None) -> int:
    parse = argparse.ArgumentParser(prog="reserve-worker")
    parse.add_argument("--config", type=Path)
    parse.add_argument("--fd", action="append", default=[], help="N:secure or N:insecure")
    parse.add_argument("--ready-fd", type=int, required=True)
    parse.add_argument("--siblings", type=Path, required=True, help="the directory of the workers' handoff sockets")
    parse.add_argument("--slot", type=int, required=True, help="this worker's number, 1 to --of")
    parse.add_argument("--of", type=int, required=True, help="how many workers the supervisor runs")
    args = parse.parse_args(argv)
    config = hypercorn_config(args.config)
    sockets = Sockets([], [], [])
    for spec in args.fd:
        number, kind = spec.split(":")
        sock = socket.socket(fileno=int(number))
        (sockets.secure_sockets if kind == "secure" else sockets.insecure_sockets).append(sock)
    from service.app import app  # the supervisor checked the settings

    siblings = Siblings(args.siblings, args.slot, args.of)
    return run_gateway(f"reserve worker {os.getpid()}", _serve, app, config, sockets, siblings, args.ready_fd)


async def _serve(app: QuartTrio, config: Config, sockets: Sockets, siblings: Siblings, ready_fd: int) -> None:
    parent = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(serve_app, app, config, sockets, parent=parent, siblings=siblings))
        os.write(ready_fd, READY)
        os.close(ready_fd)


if __name__ == "__main__":
    raise SystemExit(main())
