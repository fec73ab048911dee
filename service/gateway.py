"""The gateway's lifetime: Riva target, optional bundled recognizer, the session registry.

Started by the app's lifespan before the first request is accepted and stopped after
the last, so nothing it starts (threads, gRPC servers, sessions) outlives the app.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import threading

import trio

from service.events.wakes import Wakes
from service.observability.metrics import Metrics
from service.riva.catalog import Catalog
from service.riva.channel import open_target
from service.riva.stream import open_transport
from service.riva.targets import TargetPool
from service.serving.gc_tuning import tune_gc
from service.serving.io_coalescing import IoCoalescing
from service.sessions.places import Placing
from service.sessions.registry import Registry
from service.sessions.runtime import Runtime
from service.settings import Settings
from service.shared.redis.hub import RedisHub
from service.shared.redis.state import Shared

log = logging.getLogger("reserve")
AT_ONCE_S = 5.0  # bound on ending every session at once (their cancellation is shielded cleanup)


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry: Registry | None = None
        self.metrics = Metrics()
        self.catalog: Catalog | None = None  # what Riva offers; set once the target is open
        self._embedded: object | None = None
        self._targets: TargetPool | None = None
        self._scope = trio.CancelScope()
        self._stopped = trio.Event()
        # hypercorn's CLI leaves SIGTERM to the app; ``reserve serve`` handles it and clears this
        self.watch_signals = True
        self.hub: RedisHub | None = None
        self.shared: Shared | None = None  # the deployment's token secret, counters, spent tokens
        self.placing: Placing | None = None  # ``reserve serve --workers N``: set before it runs

    async def run(self, *, task_status: trio.TaskStatus[Registry] = trio.TASK_STATUS_IGNORED) -> None:
        settings = self.settings
        tune_gc(settings.gc_threshold)
        try:
            uris = [u.strip() for u in settings.riva_uri.split(",") if u.strip()] or [await self._start_embedded()]
            self._targets = targets = TargetPool([open_target(settings, uri) for uri in uris])
            uri = targets.uris
            self.catalog = Catalog(targets, ttl_s=settings.readiness_cache_s, timeout_s=settings.readiness_timeout_s)
            log.info(
                "Riva target %s (tls=%s, transport=%s); at most %d sessions",
                uri,
                settings.riva_tls,
                settings.riva_transport,
                settings.max_sessions,
            )
            # Redis outlives the sessions (their last events and leases are written as they end)
            async with trio.open_nursery() as shared_nursery:
                if settings.redis_url:
                    self.hub = hub = RedisHub(settings, self.metrics)
                    await shared_nursery.start(hub.run)
                    self.shared = Shared(hub, settings)
                try:
                    await self._serve(targets, task_status)
                finally:
                    shared_nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self._close()
            self._stopped.set()

    async def _serve(self, targets: TargetPool, task_status: trio.TaskStatus[Registry]) -> None:
        settings = self.settings
        with self._scope:
            # the transport outlives the sessions' nursery, which closes first
            async with open_transport(settings, targets) as transport, trio.open_nursery() as nursery:
                counters = self.shared.counters if self.shared is not None else None
                wakes = Wakes(settings.event_wake_interval_s)
                runtime = Runtime(settings, targets, transport, self.metrics, self.hub, counters, wakes)
                self.registry = Registry(runtime, nursery, self.placing)
                self.metrics.watch(self.registry, transport.limiter)
                nursery.start_soon(wakes.run)
                nursery.start_soon(self.registry.readers.tick)
                nursery.start_soon(
                    functools.partial(
                        targets.probe_down_targets,
                        interval_s=settings.riva_probe_interval_s,
                        timeout_s=settings.readiness_timeout_s,
                        ask=transport.probe,
                    )
                )
                if self.hub is not None:
                    nursery.start_soon(self.registry.adopt_orphans)
                if self.watch_signals and threading.current_thread() is threading.main_thread():
                    nursery.start_soon(self._drain_on_sigterm)
                task_status.started(self.registry)
                await self._coalescing_io()

    async def _coalescing_io(self) -> None:
        """Until cancelled, a busy loop gathers I/O (``service.serving.io_coalescing``)."""
        pause_s = self.settings.io_coalesce_s
        if pause_s <= 0:
            await trio.sleep_forever()
        coalescing = IoCoalescing(pause_s)
        trio.lowlevel.add_instrument(coalescing)
        try:
            await trio.sleep_forever()
        finally:
            trio.lowlevel.remove_instrument(coalescing)

    async def stop(self) -> None:
        """Cancel every session (their readers get ``end``), then release Riva resources."""
        if self.registry is not None:
            self.registry.cancel_all("shutdown")
        self._scope.cancel()
        await self._stopped.wait()

    async def drain(self, *, at_once: bool = False) -> None:
        """No new sessions; live ones get ``RESERVE_SHUTDOWN_GRACE_S`` to end by themselves, then
        are finalized (finals delivered, ``end`` reason ``shutdown``). Returns once none is live.
        ``at_once`` (a second stop request): no grace and no wait for finals; they end now."""
        if self.registry is None:  # not started yet: nothing to drain
            return
        settings = self.settings
        if at_once:
            with trio.move_on_after(AT_ONCE_S):
                await self.registry.drain(grace_s=0, finish_s=0)
        else:
            await self.registry.drain(grace_s=settings.shutdown_grace_s, finish_s=settings.finish_timeout_s)
        # sessions handed over (shared mode) go on elsewhere: their readers here reconnect there
        self.registry.readers.stop()
        await trio.sleep(0.2)  # let event streams flush their last bytes
        log.info("sessions drained; stopping the server")

    @trio.lowlevel.enable_ki_protection  # the KeyboardInterrupt we deliver must reach hypercorn's main task
    async def _drain_on_sigterm(self) -> None:
        """Under hypercorn's own CLI (``hypercorn service.app:app``), which leaves SIGTERM to the
        process: drain the sessions first, then stop hypercorn as Ctrl-C does. ``reserve serve``
        owns the signals instead (``watch_signals = False``) and stops hypercorn through its
        shutdown trigger."""
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                break
        log.warning("SIGTERM: draining sessions for up to %.0f s", self.settings.shutdown_grace_s)
        await self.drain()
        stop_hypercorn_cli()

    async def _start_embedded(self) -> str:
        from fake_riva import FakeRiva

        name = self.settings.embedded_recognizer
        server = FakeRiva(recognizer=name, host="127.0.0.1", port=0, max_streams=self.settings.max_sessions)
        await trio.to_thread.run_sync(server.start)
        self._embedded = server
        log.warning(
            "No Riva configured: using the bundled local recognizer (%s) on %s. "
            "Set RESERVE_RIVA_URI=host:port to use NVIDIA Riva instead.",
            name,
            server.target,
        )
        return server.target

    async def _close(self) -> None:
        if self._targets is not None:
            self._targets.close()
        if self._embedded is not None:
            from fake_riva import FakeRiva

            assert isinstance(self._embedded, FakeRiva)
            await trio.to_thread.run_sync(self._embedded.stop, 1.0)


def stop_hypercorn_cli() -> None:
    """Stop hypercorn's CLI worker the way Ctrl-C does: a KeyboardInterrupt in trio's main task.

    With SIGINT ignored (a shell script's background job), trio installed no SIGINT handler and
    a SIGINT to ourselves would be lost, so the interrupt is handed to trio's runner directly,
    which is what trio's own SIGINT handler does."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        os.kill(os.getpid(), signal.SIGINT)
        return
    from trio._core._run import GLOBAL_RUN_CONTEXT  # no public API delivers KeyboardInterrupt

    runner = getattr(GLOBAL_RUN_CONTEXT, "runner", None)
    if runner is None or not hasattr(runner, "deliver_ki"):
        log.error("SIGINT is ignored and trio offers no way to stop hypercorn: use 'python -m service serve'")
        return
    runner.deliver_ki()
