"""The event streams this process is serving, so that a stopping process can end them.

A session handed over to another instance (shared mode) goes on there; its readers here must
not be held open until the server's graceful timeout and then cut. Ending them completes the
response, and an ``EventSource`` reconnects with its last id wherever the load balancer sends
it. Only a reader's idle wait is cancelled, never a write, so no frame is ever cut in half."""

from __future__ import annotations

import trio


class Readers:
    def __init__(self) -> None:
        self.stopping = False
        self._waits: set[trio.CancelScope] = set()

    def waiting(self, scope: trio.CancelScope) -> _Waiting:
        """``with readers.waiting(scope): await ...``: the wait ends early once ``stop`` is called."""
        return _Waiting(self, scope)

    def stop(self) -> None:
        """End every reader once it has sent what the log holds."""
        self.stopping = True
        for scope in self._waits:
            scope.cancel()


class _Waiting:
    __slots__ = ("_readers", "_scope")

    def __init__(self, readers: Readers, scope: trio.CancelScope) -> None:
        self._readers, self._scope = readers, scope

    def __enter__(self) -> None:
        if self._readers.stopping:
            self._scope.cancel()
        self._readers._waits.add(self._scope)

    def __exit__(self, *exc_info: object) -> None:
        self._readers._waits.discard(self._scope)
