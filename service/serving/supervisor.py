"""Several workers on one port: this process binds the listening sockets once, starts the
workers (fresh interpreters that inherit only those sockets), restarts one that dies with
backoff while the others keep serving, and on SIGTERM/SIGINT drains every worker.

Unlike hypercorn's own multi-worker mode, one worker exiting never stops the others, and a
stop waits for each worker's drain (sessions' grace, then their finals) before killing any."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import trio
from hypercorn.config import Config, Sockets

from service.observability.logging import configure_logging
from service.serving import worker
from service.serving.checks import StartupError
from service.serving.host import stop_signals
from service.serving.siblings import Siblings
from service.settings import Settings

log = logging.getLogger("reserve.serve")

RESTART_FIRST_S = 0.5  # the first restart of a dead worker; doubles while it keeps dying
RESTART_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0  # a worker that lived this long starts the backoff afresh
START_FAILURES_LIMIT = 5  # this many exits in a row before ready: the workers cannot start at all
STOP_MARGIN_S = 10.0  # beyond the drain's own deadlines, before stragglers are killed


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
        return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


def placement(settings: Settings) -> str:
    """Where new sessions go, said once at start: an idle second worker is the design, not a fault."""
    if not settings.worker_handoff:
        return "sessions run where the kernel puts their connections (RESERVE_WORKER_HANDOFF=false)"
    if settings.worker_fill == 0:
        return "new sessions go to the least loaded worker (RESERVE_WORKER_FILL=0)"
    return (
        f"new sessions fill the first worker up to {settings.worker_fill} live sessions before the next"
        " gets any (RESERVE_WORKER_FILL; 0 spreads them)"
    )


class Supervisor:
    def __init__(
        self, settings: Settings, config: Config, config_path: Path | None, sockets: Sockets, workers: int
    ) -> None:
        self.settings = settings
        self.config = config
        self.config_path = config_path
        self.sockets = sockets
        self.workers = workers
        self.fds = [(s.fileno(), True) for s in sockets.secure_sockets]
        self.fds += [(s.fileno(), False) for s in sockets.insecure_sockets]
        # each worker drains within its grace, its finals' deadline and hypercorn's graceful stop
        self.stop_deadline_s = (
            settings.shutdown_grace_s + settings.finish_timeout_s + float(config.graceful_timeout) + STOP_MARGIN_S
        )
        # the workers' sockets for handing connections to each other (``siblings``); private to us
        try:
            self.handoff_dir = Path(tempfile.mkdtemp(prefix="reserve-workers-"))
        except OSError as exc:
            self._close_sockets()  # ours to close, as run() would have
            problem = f"cannot make the workers' socket directory in {tempfile.gettempdir()}: {exc.strerror or exc}"
            raise StartupError([problem]) from None
        self._running: dict[int, trio.Process] = {}
        self._stopping = trio.Event()
        self._failed = False

    def run(self) -> int:
        """Supervise until stopped; 0 when every worker drained and exited, 1 otherwise."""
        configure_logging(self.settings.log_level, self.settings.log_format)
        try:
            trio.run(self._supervise)
        finally:
            self._close_sockets()
            shutil.rmtree(self.handoff_dir, ignore_errors=True)
        return 1 if self._failed else 0

    def _close_sockets(self) -> None:
        for sock in [*self.sockets.secure_sockets, *self.sockets.insecure_sockets]:
            sock.close()

    async def _supervise(self) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self._receive_signals, nursery)
            binds = ", ".join(self.config.bind)
            log.info("serving %s with %d workers (supervisor pid %d)", binds, self.workers, os.getpid())
            log.info("%s", placement(self.settings))
            async with trio.open_nursery() as slots:
                for slot in range(1, self.workers + 1):
                    slots.start_soon(self._keep_running, slot, nursery)
            nursery.cancel_scope.cancel()
        log.info("all workers stopped")

    async def _receive_signals(self, nursery: trio.Nursery, *, task_status: trio.TaskStatus[None]) -> None:
        with trio.open_signal_receiver(*stop_signals()) as signals:
            task_status.started()
            async for number in signals:
                self._stop(signal.Signals(number).name, nursery)

    def _stop(self, why: str, nursery: trio.Nursery) -> None:
        """First ask: every worker drains (SIGTERM); a second: they stop without waiting."""
        if self._stopping.is_set():
            log.warning("%s again: asking %d workers to stop at once", why, len(self._running))
        else:
            self._stopping.set()
            log.warning(
                "%s: draining %d workers; any still running after %g s is killed",
                why,
                len(self._running),
                self.stop_deadline_s,
            )
            nursery.start_soon(self._kill_stragglers)
        for process in self._running.values():
            process.send_signal(signal.SIGTERM)

    async def _kill_stragglers(self) -> None:
        await trio.sleep(self.stop_deadline_s)
        for slot, process in self._running.items():
            log.error("worker %d (pid %d) still running after %g s: killed", slot, process.pid, self.stop_deadline_s)
            process.kill()
            self._failed = True

    async def _keep_running(self, slot: int, nursery: trio.Nursery) -> None:
        """One worker slot: start, wait, restart with backoff, until the supervisor stops."""
        deaths = 0
        start_failures = 0
        while not self._stopping.is_set():
            started = trio.current_time()
            returncode, pid, ready = await self._run_worker(slot)
            if self._stopping.is_set():
                log.info("worker %d (pid %d) stopped: %s", slot, pid, describe_exit(returncode))
                return
            deaths = 1 if trio.current_time() - started >= HEALTHY_AFTER_S else deaths + 1
            start_failures = 0 if ready else start_failures + 1
            if start_failures >= START_FAILURES_LIMIT:
                log.error(
                    "worker %d (pid %d) %s before it was ready, %d times in a row: stopping",
                    slot,
                    pid,
                    describe_exit(returncode),
                    start_failures,
                )
                self._failed = True
                self._stop("workers cannot start", nursery)
                return
            delay_s = min(RESTART_FIRST_S * 2 ** (deaths - 1), RESTART_MAX_S)
            log.error("worker %d (pid %d) %s; restarting it in %.1f s", slot, pid, describe_exit(returncode), delay_s)
            with trio.move_on_after(delay_s):
                await self._stopping.wait()

    async def _run_worker(self, slot: int) -> tuple[int, int, bool]:
        """Start one worker and wait for it to exit: (returncode, pid, whether it became ready)."""
        ready_read, ready_write = os.pipe()
        try:
            process = await trio.lowlevel.open_process(
                worker.command(self.config_path, self.fds, ready_write, Siblings(self.handoff_dir, slot, self.workers)),
                stdin=subprocess.PIPE,  # never written: its end tells the worker we are gone
                pass_fds=(*(fd for fd, _ in self.fds), ready_write),
                process_group=0,  # Ctrl-C reaches us alone; we forward the drain
            )
        finally:
            os.close(ready_write)
        self._running[slot] = process
        log.info("worker %d started (pid %d)", slot, process.pid)
        if self._stopping.is_set():  # asked to stop while it was starting
            process.send_signal(signal.SIGTERM)
        ready = False

        async def wait_ready() -> None:
            nonlocal ready
            async with trio.lowlevel.FdStream(ready_read) as stream:
                ready = (await stream.receive_some(len(worker.READY))) == worker.READY
            if ready:
                log.info("worker %d ready (pid %d)", slot, process.pid)

        try:
            async with trio.open_nursery() as watch:
                watch.start_soon(wait_ready)
                returncode = await process.wait()
                watch.cancel_scope.cancel()
        finally:
            del self._running[slot]
            with trio.CancelScope(shield=True):
                assert process.stdin is not None
                await process.stdin.aclose()
        return returncode, process.pid, ready
