"""One worker, in this process: hypercorn serves the app until a stop is asked for; then the
sessions drain and hypercorn stops through its shutdown trigger (never through SIGINT, which a
shell's background job ignores)."""

from __future__ import annotations

import contextlib
import logging
import signal
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config, Sockets
from hypercorn.utils import wrap_app

from service.serving.colocation import Colocation
from service.serving.hypercorn_serve import worker_serve

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from service.gateway import Gateway
    from service.serving.siblings import Siblings

log = logging.getLogger("reserve.serve")
STOP_ASKS = 4  # a bound on queued stop requests: only the first two mean anything
SUPERVISOR_GONE = "supervisor gone"


def stop_signals() -> list[signal.Signals]:
    """SIGTERM always; SIGINT unless this process was started with it ignored (a shell's
    background job), which we respect, as Ctrl-C in that shell is not meant for us."""
    wanted = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        wanted.append(signal.SIGINT)
    return wanted


async def serve_app(
    app: QuartTrio,
    config: Config,
    sockets: Sockets,
    *,
    parent: trio.abc.ReceiveStream | None = None,
    siblings: Siblings | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until SIGTERM/SIGINT (or, in a worker, until ``parent`` reaches end of file: the
    supervisor is gone). The first ask drains the sessions, a second stops without waiting.
    A worker among ``siblings`` serves each session's connections at its home worker."""
    gateway: Gateway = app.extensions["reserve.gateway"]
    gateway.watch_signals = False  # the signals are ours here
    stop = trio.Event()
    asks_in, asks = trio.open_memory_channel[str](STOP_ASKS)
    colocation = None
    if siblings is not None and gateway.settings.worker_handoff:
        gateway.placing = colocation = Colocation(siblings, gateway)
    with colocation or contextlib.nullcontext():
        async with trio.open_nursery() as nursery:
            await nursery.start(_receive_signals, asks_in.clone())
            if parent is not None:
                nursery.start_soon(_watch_parent, parent, asks_in.clone())
            asks_in.close()
            nursery.start_soon(_drain_then_stop, gateway, colocation, asks, stop)
            binds = await nursery.start(_run_server, app, config, sockets, stop, colocation, nursery.cancel_scope)
            if gateway.registry is None:  # hypercorn goes on after a failed start-up; its error follows
                await trio.sleep_forever()
            task_status.started(binds)


async def _run_server(
    app: QuartTrio,
    config: Config,
    sockets: Sockets,
    stop: trio.Event,
    colocation: Colocation | None,
    done: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[list[str]],
) -> None:
    await worker_serve(
        wrap_app(app, config.wsgi_max_body_size, None),
        config,
        sockets=sockets,
        shutdown_trigger=stop.wait,
        colocation=colocation,
        task_status=task_status,
    )
    done.cancel()


async def _receive_signals(asks: trio.MemorySendChannel[str], *, task_status: trio.TaskStatus[None]) -> None:
    with asks, trio.open_signal_receiver(*stop_signals()) as signals:
        task_status.started()
        async for number in signals:
            _ask(asks, signal.Signals(number).name)


async def _watch_parent(parent: trio.abc.ReceiveStream, asks: trio.MemorySendChannel[str]) -> None:
    """The supervisor holds the other end of this pipe and never writes: end of file means it
    died (kill -9), and a worker without its supervisor drains and stops rather than linger."""
    with asks:
        async with parent:
            while await parent.receive_some(64):
                pass
        _ask(asks, SUPERVISOR_GONE)


def _ask(asks: trio.MemorySendChannel[str], why: str) -> None:
    with contextlib.suppress(trio.WouldBlock):  # asked enough already: nothing more to do
        asks.send_nowait(why)


async def _drain_then_stop(
    gateway: Gateway, colocation: Colocation | None, asks: trio.MemoryReceiveChannel[str], stop: trio.Event
) -> None:
    why = await asks.receive()
    if colocation is not None:  # siblings serve what they accept themselves from now on
        colocation.withdraw()
        colocation.orphaned = why == SUPERVISOR_GONE
    log.warning(
        "%s: draining sessions for up to %g s, then stopping (again to stop at once)",
        why,
        gateway.settings.shutdown_grace_s,
    )
    with trio.CancelScope() as drain:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_hurry, asks, drain)
            await gateway.drain()
            nursery.cancel_scope.cancel()
    if drain.cancelled_caught:
        await gateway.drain(at_once=True)
    stop.set()


async def _hurry(asks: trio.MemoryReceiveChannel[str], drain: trio.CancelScope) -> None:
    why = await asks.receive()
    log.warning("%s again: ending live sessions now, without waiting for their finals", why)
    drain.cancel()
