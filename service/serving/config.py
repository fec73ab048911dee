"""hypercorn's configuration for ``reserve serve``: ``hypercorn.toml`` with ``--bind`` over it,
and the listening sockets, bound before anything else starts."""

from __future__ import annotations

import copy
import logging
import socket
import tomllib
from pathlib import Path

from hypercorn.config import Config, Sockets

from service.serving.checks import StartupError

DEFAULT_PATH = Path("hypercorn.toml")


def config_path(path: Path | None) -> Path | None:
    """The file read: the one given, else ``./hypercorn.toml`` when there is one (absolute, as
    workers read it too), or None for hypercorn's defaults."""
    if path is None and DEFAULT_PATH.is_file():
        path = DEFAULT_PATH
    return path.resolve() if path is not None else None


def hypercorn_config(path: Path | None, binds: list[str] | None = None) -> Config:
    """The file's settings, or hypercorn's defaults (then its loggers feed ours, as the file
    arranges). Its ``workers`` is for hypercorn's own CLI and is not read here: ``--workers``
    and ``RESERVE_WORKERS`` are."""
    found = config_path(path)
    if found is None:
        config = Config()
        config.errorlog = logging.getLogger("hypercorn.error")  # a Logger is used as is: printed once, via root
        config.accesslog = logging.getLogger("hypercorn.access")
    else:
        try:
            config = Config.from_toml(found)
        except FileNotFoundError:
            raise StartupError([f"--config {path}: no such file"]) from None
        except (tomllib.TOMLDecodeError, OSError, ValueError, TypeError) as exc:
            raise StartupError([f"--config {path or found}: {exc}"]) from None
    if binds:
        config.bind = binds
    return config


def listening_sockets(config: Config) -> Sockets:
    """Bind and listen here, before anything else starts, so a taken port is one clear line."""
    if config.quic_bind:
        raise StartupError(["quic_bind (HTTP/3) is not served by reserve serve"])
    secure = config.bind if config.ssl_enabled else []
    insecure = config.insecure_bind if config.ssl_enabled else config.bind
    made: list[socket.socket] = []
    try:
        sockets = Sockets([_bound(config, b, made) for b in secure], [_bound(config, b, made) for b in insecure], [])
        for sock in made:
            sock.listen(config.backlog)
    except OSError as exc:
        for sock in made:
            sock.close()
        raise StartupError([f"cannot listen on {', '.join(config.bind)}: {exc.strerror or exc}"]) from None
    return sockets


def _bound(config: Config, bind: str, made: list[socket.socket]) -> socket.socket:
    """One bound socket, as hypercorn makes it (TCP_NODELAY, SO_REUSEADDR, non-blocking,
    inheritable), closed again if binding fails. ``unix:`` and ``fd://`` binds are hypercorn's."""
    if bind.startswith(("unix:", "fd://")):
        one = copy.copy(config)
        one.bind, one.insecure_bind, one.certfile, one.keyfile = [bind], [], None, None
        (sock,) = one.create_sockets().insecure_sockets
        made.append(sock)
        return sock
    host, _, port = bind.replace("[", "").replace("]", "").rpartition(":")
    if not host or not port.isdigit():
        raise OSError(f"{bind!r} is not HOST:PORT")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    made.append(sock)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    sock.setblocking(False)
    sock.set_inheritable(True)
    return sock
