"""hypercorn 0.18's trio ``worker_serve``, with one addition: where the connections go.

The loop is hypercorn's (lifespan, listeners, the shutdown trigger, the graceful deadline),
less HTTP/3, which ``reserve serve`` refuses, and with a moment between the last accept and the
close of idle connections (``LAST_REQUEST_GRACE_S``). With ``colocation`` (several workers), a plain
connection is served by a loop that may hand it to its session's worker before any request,
and the connections siblings hand over are served here exactly as accepted ones: same app,
config, worker context and state, in the same nursery under the same graceful deadline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from random import randint

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState, LifespanState
from hypercorn.utils import ShutdownError, raise_shutdown, repr_socket_addr

from service.serving.colocation import Colocation

# A connection accepted in a worker's last moment is idle until its client's request arrives, and
# hypercorn closes idle connections as soon as it stops: that client got no answer ("server
# disconnected") though another worker would have served it. Its request is on its way; it is
# served if it arrives within this moment (``service.hypercorn_tcp`` keeps waiting requests).
LAST_REQUEST_GRACE_S = 0.1


async def worker_serve(
    app: AppWrapper,
    config: Config,
    *,
    sockets: Sockets,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    colocation: Colocation | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    config.set_statsd_logger_class(StatsdLogger)
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(app, config, lifespan_state)
    max_requests = None
    if config.max_requests is not None:
        max_requests = config.max_requests + randint(0, config.max_requests_jitter)
    context = WorkerContext(max_requests)

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()

        async with trio.open_nursery() as server_nursery:
            ssl_context = config.create_ssl_context()
            secure: list[trio.SSLListener[trio.SocketStream]] = []
            plain: list[trio.SocketListener] = []
            binds = []
            for sock in sockets.secure_sockets:
                assert ssl_context is not None  # secure sockets are made only where TLS is set up
                listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
                secure.append(trio.SSLListener(listener, ssl_context, https_compatible=True))
                binds.append(f"https://{repr_socket_addr(sock.family, sock.getsockname())}")
            for sock in sockets.insecure_sockets:
                plain.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
                binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
            for bind in binds:
                await config.log.info(f"Running on {bind} (CTRL + C to quit)")

            state = ConnectionState(lifespan_state.copy())  # one per worker, as hypercorn has it
            serve = partial(TCPServer, app, config, context, state)
            serve_plain = serve if colocation is None else colocation.server(app, config, context, state)
            task_status.started(binds)
            try:
                async with trio.open_nursery(strict_exception_groups=True) as nursery:
                    if shutdown_trigger is not None:
                        nursery.start_soon(raise_shutdown, shutdown_trigger)
                    nursery.start_soon(raise_shutdown, context.terminate.wait)
                    if plain and colocation is not None:  # what siblings hand over is served as accepted here
                        await nursery.start(colocation.receive, serve_plain, server_nursery)
                        nursery.start_soon(colocation.load.expire)
                    if secure:
                        nursery.start_soon(partial(trio.serve_listeners, serve, secure, handler_nursery=server_nursery))
                    if plain:
                        nursery.start_soon(
                            partial(trio.serve_listeners, serve_plain, plain, handler_nursery=server_nursery)
                        )
                    await trio.sleep_forever()
            except BaseExceptionGroup as error:
                _, other_errors = error.split((ShutdownError, KeyboardInterrupt))
                if other_errors is not None:
                    raise other_errors from error
            finally:
                with trio.CancelScope(shield=True):
                    await trio.sleep(LAST_REQUEST_GRACE_S)
                await context.terminated.set()
                server_nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout

        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
