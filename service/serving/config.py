"""hypercorn's configuration for ``reserve serve``: ``hypercorn.toml`` with ``--bind`` over it."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

from hypercorn.config import Config, Sockets

from service.serving.checks import StartupError

DEFAULT_PATH = Path("hypercorn.toml")


def hypercorn_config(path: Path | None, binds: list[str] | None = None) -> Config:
    """The file given, else ``./hypercorn.toml`` when there is one, else hypercorn's defaults
    (then its loggers feed ours, as the file arranges). Its ``workers`` is for hypercorn's own
    CLI and is not read here: ``--workers`` and ``RESERVE_WORKERS`` are."""
    path = config_path(path)
    if path is None:
        config = Config()
        config.errorlog = logging.getLogger("hypercorn.error")  # a Logger is used as is: printed once, via root
        config.accesslog = logging.getLogger("hypercorn.access")
    else:
        try:
            config = Config.from_toml(path)
        except FileNotFoundError:
            raise StartupError([f"--config {path}: no such file"]) from None
        except (tomllib.TOMLDecodeError, OSError, ValueError, TypeError) as exc:
            raise StartupError([f"--config {path}: {exc}"]) from None
    if binds:
        config.bind = binds
    return config


def config_path(path: Path | None) -> Path | None:
    """The file ``hypercorn_config`` reads, absolute (workers start in the same directory, but
    say so anyway), or None for hypercorn's defaults."""
    if path is None and DEFAULT_PATH.is_file():
        path = DEFAULT_PATH
    return path.resolve() if path is not None else None


def listening_sockets(config: Config) -> Sockets:
    """Bind and listen here, before anything else starts, so a taken port is one clear line."""
    if config.quic_bind:
        raise StartupError(["quic_bind (HTTP/3) is not served by reserve serve"])
    try:
        sockets = config.create_sockets()
    except OSError as exc:
        raise StartupError([f"cannot listen on {', '.join(config.bind)}: {exc.strerror or exc}"]) from None
    for sock in [*sockets.secure_sockets, *sockets.insecure_sockets]:
        sock.listen(config.backlog)
    return sockets
