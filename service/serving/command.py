"""``reserve serve [--bind HOST:PORT] [--workers N] [--config hypercorn.toml]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from service.serving.checks import StartupError, load_checked_settings
from service.serving.config import config_path, hypercorn_config, listening_sockets


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        self.exit(2, f"reserve serve: {message} (see reserve serve --help)\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def parser() -> argparse.ArgumentParser:
    parse = _Parser(
        prog="reserve serve",
        description="Serve Reserve with hypercorn: one worker in this process, or several sharing one port.",
    )
    parse.add_argument(
        "--bind",
        action="append",
        metavar="HOST:PORT",
        help="address to listen on (repeatable); default: hypercorn.toml's bind",
    )
    parse.add_argument(
        "--workers",
        type=_positive,
        metavar="N",
        help="worker processes sharing the port (default: RESERVE_WORKERS, 1); more than one needs RESERVE_REDIS_URL",
    )
    parse.add_argument(
        "--config", type=Path, metavar="PATH", help="hypercorn settings (default: ./hypercorn.toml when present)"
    )
    return parse


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        settings, workers = load_checked_settings(args.workers)
        config = hypercorn_config(args.config, args.bind)
        sockets = listening_sockets(config)
        if workers == 1:
            from service.serving.single import run_here

            return run_here(config, sockets)
        from service.serving.supervisor import Supervisor

        return Supervisor(settings, config, config_path(args.config), sockets, workers).run()
    except StartupError as error:
        for problem in error.problems:
            print(f"reserve serve: {problem}", file=sys.stderr)
        return 2
