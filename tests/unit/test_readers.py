"""The event streams' heartbeat and stop: one ticking task for every reader (service.events.readers),
driven by trio's mock clock so that the intervals are exact."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import trio
import trio.testing

from service.api.events import _follow
from service.events import sse
from service.events.log import MemoryEventLog
from service.events.readers import Readers

HEARTBEAT_S = 8.0


class Reader:
    """What one event stream wrote, and when (mock-clock seconds)."""

    def __init__(self) -> None:
        self.writes: list[tuple[float, bytes]] = []
        self.done = trio.Event()

    def heartbeats(self) -> list[float]:
        return [at for at, chunk in self.writes if chunk == sse.HEARTBEAT]

    def frames(self) -> bytes:
        return b"".join(chunk for _, chunk in self.writes[1:] if chunk != sse.HEARTBEAT)

    async def run(self, event_log: MemoryEventLog, readers: Readers, after_id: int = 0) -> None:
        async with contextlib.aclosing(_follow(event_log, after_id, readers)) as chunks:
            async for chunk in chunks:
                self.writes.append((trio.current_time(), chunk))
        self.done.set()


@contextlib.asynccontextmanager
async def serving(readers: Readers) -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(readers.tick)
        yield nursery
        nursery.cancel_scope.cancel()


def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def test_an_idle_stream_gets_a_comment_within_every_interval() -> None:
    async def main() -> None:
        readers, event_log, reader = Readers(HEARTBEAT_S), MemoryEventLog(), Reader()
        async with serving(readers) as nursery:
            nursery.start_soon(reader.run, event_log, readers)
            await trio.sleep(5 * HEARTBEAT_S + 0.1)
            event_log.close()
            await reader.done.wait()
        beats = reader.heartbeats()
        assert len(beats) == 5
        gaps = [b - a for a, b in zip([0.0, *beats], beats, strict=False)]
        assert all(0.75 * HEARTBEAT_S <= gap <= HEARTBEAT_S for gap in gaps), gaps

    trio.run(main, clock=clock())


def test_a_stream_with_events_gets_no_comment_and_every_event_in_order() -> None:
    async def main() -> None:
        readers, event_log, reader = Readers(HEARTBEAT_S), MemoryEventLog(), Reader()
        async with serving(readers) as nursery:
            nursery.start_soon(reader.run, event_log, readers)
            for n in range(40):  # one event every half interval, for 20 intervals
                event_log.append("transcript", b'{"n": %d}' % n)
                await trio.sleep(HEARTBEAT_S / 2)
            event_log.close()
            await reader.done.wait()
        assert reader.heartbeats() == []
        assert reader.frames() == b"".join(event.frame for event in event_log.read_after(0))

    trio.run(main, clock=clock())


def test_the_comment_counts_from_the_last_write() -> None:
    async def main() -> None:
        readers, event_log, reader = Readers(HEARTBEAT_S), MemoryEventLog(), Reader()
        async with serving(readers) as nursery:
            nursery.start_soon(reader.run, event_log, readers)
            await trio.sleep(0.9 * HEARTBEAT_S)
            event_log.append("transcript", b"{}")
            await trio.sleep(0.7 * HEARTBEAT_S)
            event_log.close()
            await reader.done.wait()
        assert reader.heartbeats() == []  # neither quiet stretch was a whole interval

    trio.run(main, clock=clock())


def test_stop_ends_every_reader_after_what_its_log_holds() -> None:
    async def main() -> None:
        readers = Readers(HEARTBEAT_S)
        logs = [MemoryEventLog(), MemoryEventLog()]
        ours = [Reader(), Reader(), Reader()]
        async with serving(readers) as nursery:
            for event_log, reader in zip([logs[0], logs[0], logs[1]], ours, strict=True):
                nursery.start_soon(reader.run, event_log, readers)
            await trio.sleep(1)
            logs[0].append("transcript", b"{}")
            readers.stop()
            with trio.fail_after(0.001):  # at once: no tick needed
                for reader in ours:
                    await reader.done.wait()
        assert [reader.frames() for reader in ours] == [logs[0].read_after(0)[0].frame] * 2 + [b""]
        assert not logs[0].closed and not logs[1].closed  # the sessions go on (elsewhere)

    trio.run(main, clock=clock())


def test_a_reader_that_starts_after_the_stop_sends_what_the_log_holds_and_ends() -> None:
    async def main() -> None:
        readers, event_log, reader = Readers(HEARTBEAT_S), MemoryEventLog(), Reader()
        event_log.append("transcript", b"{}")
        readers.stop()
        async with serving(readers) as nursery:
            nursery.start_soon(reader.run, event_log, readers)
            with trio.fail_after(0.001):
                await reader.done.wait()
        assert reader.frames() == event_log.read_after(0)[0].frame

    trio.run(main, clock=clock())


async def test_a_log_is_followed_while_its_readers_are() -> None:
    readers, event_log = Readers(HEARTBEAT_S), MemoryEventLog()
    with readers.following(event_log), readers.following(event_log):
        assert readers._logs == {event_log: 2}
    assert readers._logs == {}


async def test_a_nudge_ends_a_wait_but_not_the_next_one() -> None:
    event_log = MemoryEventLog()
    async with trio.open_nursery() as nursery:
        waits = 0

        async def wait() -> None:
            nonlocal waits
            await event_log.wait_after(0)
            waits += 1

        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        event_log.nudge()
        await trio.testing.wait_all_tasks_blocked()
        assert waits == 1
        nursery.start_soon(wait)  # a nudge before the wait began does not end it
        await trio.testing.wait_all_tasks_blocked()
        assert waits == 1
        event_log.append("transcript", b"{}")
    assert waits == 2
