"""The Redis event log's local side, with a stand-in for the process's hub (no Redis here:
the e2e tests run it against a real one)."""

from __future__ import annotations

import contextlib

import pytest
import trio
import trio.testing

from service.api.events import _follow
from service.errors import StateUnavailable
from service.events import sse
from service.events.log import Event, HistoryLost
from service.events.readers import Readers
from service.shared.redis.failures import RedisUnavailable
from service.shared.redis.log import RECORD_REFRESH_S, RedisEventLog, TextWrite


class StoredStream:
    """What Redis would hold for the session: ``fetch`` answers like XRANGE."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.publisher_wakes = 0
        self.followed: list[RedisEventLog] = []

    def wake_publisher(self, event_log: RedisEventLog) -> None:
        self.publisher_wakes += 1

    def wake_follower(self, event_log: RedisEventLog) -> None:
        self.followed.append(event_log)

    async def fetch(self, session_id: str, after_id: int, limit: int) -> list[Event]:
        return [e for e in self.events if e.id > after_id][:limit]


async def read_all(log: RedisEventLog, after_id: int) -> list[Event]:
    """What a reader gets, batch after batch, until it has caught up."""
    events: list[Event] = []
    while batch := await log.read(events[-1].id if events else after_id):
        events += batch
    return events


def event(event_id: int, name: str = "transcript") -> Event:
    return Event(event_id, name, sse.frame(event_id, name, b'{"n":%d}' % event_id))


async def test_the_owners_appends_are_seen_only_once_written() -> None:
    stored = StoredStream()
    log = RedisEventLog("s", stored, window_bytes=1 << 20)
    log.own(0, {"token_hash": "x"})
    log.append("transcript", b"{}")
    log.append("transcript", b"{}")
    assert stored.publisher_wakes == 2 and log.dirty
    assert await log.read(0) == [] and log.last_id == 0, "not in Redis yet: nobody sees it"
    batch = log.take_batch(whole_record=True)
    assert batch.first == 1 and [e.id for e in batch.events] == [1, 2] and batch.fields == {"token_hash": "x"}
    assert not log.confirmed, "no lease to renew before the first write takes it"
    log.append("end", b"{}")
    log.close()
    assert not log.closed, "closed only once the end is written"
    log.committed(batch)
    assert log.confirmed
    assert [e.id for e in await log.read(0)] == [1, 2] and not log.closed
    batch = log.take_batch(whole_record=False)
    assert batch.first == 3
    log.committed(batch)
    assert log.closed and not log.dirty and log.size_bytes == 0


async def test_only_the_record_fields_that_changed_are_written_and_now_and_then_all_of_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stored = StoredStream()
    log = RedisEventLog("s", stored, window_bytes=1 << 20)
    log.own(0, {"token_hash": "x"})
    record = {"state": "streaming", "seq": "1", "counters": "{}"}
    log.note_state(lambda: dict(record))
    batch = log.take_batch(whole_record=False)
    assert batch.fields == record, "the first write after taking ownership carries every field"
    log.committed(batch)
    record["seq"] = "2"
    log.note_state(lambda: dict(record))
    batch = log.take_batch(whole_record=False)
    assert batch.fields == {"seq": "2"}
    log.committed(batch)
    log.note_state(lambda: dict(record))
    assert log.take_batch(whole_record=True).fields == {"token_hash": "x", **record}, "Redis lost it: all again"
    await trio.sleep(RECORD_REFRESH_S)  # autojump clock
    log.note_state(lambda: dict(record))
    assert log.take_batch(whole_record=False).fields == record, "refreshed whole now and then"


async def test_a_whole_record_written_again_restarts_the_refresh_clock(autojump_clock: trio.testing.MockClock) -> None:
    log = RedisEventLog("s", StoredStream(), window_bytes=1 << 20)
    log.own(0, {"token_hash": "x"})
    record = {"state": "streaming", "seq": "1"}
    log.note_state(lambda: dict(record))
    log.committed(log.take_batch(whole_record=False))
    await trio.sleep(RECORD_REFRESH_S)  # autojump clock
    log.note_state(lambda: dict(record))
    log.committed(log.take_batch(whole_record=True))  # Redis lost it, a refresh being due anyway
    record["seq"] = "2"
    log.note_state(lambda: dict(record))
    assert log.take_batch(whole_record=False).fields == {"seq": "2"}


async def test_the_final_transcript_goes_as_what_was_added_to_it(autojump_clock: trio.testing.MockClock) -> None:
    log = RedisEventLog("s", StoredStream(), window_bytes=1 << 20)
    log.own(0, {"token_hash": "x"})
    record = {"seq": "1", "final_text": "héllo"}
    log.note_state(lambda: dict(record))
    batch = log.take_batch(whole_record=False)
    assert batch.fields == {"seq": "1"}, "the transcript is not a record field"
    assert batch.text == TextWrite("héllo".encode(), at=None), "not known to be in Redis: written whole"
    log.committed(batch)
    record["final_text"] = "héllo world"
    log.note_state(lambda: dict(record))
    batch = log.take_batch(whole_record=False)
    assert batch.text == TextWrite(b" world", at=6), "appended where Redis holds the 6 bytes written"
    log.committed(batch)
    record["seq"] = "2"
    log.note_state(lambda: dict(record))
    assert log.take_batch(whole_record=False).text is None, "unchanged: nothing to write"
    await trio.sleep(RECORD_REFRESH_S)  # autojump clock
    log.note_state(lambda: dict(record))
    assert log.take_batch(whole_record=False).text is None, "a refresh leaves it (appends are checked instead)"
    batch = log.take_batch(whole_record=True)
    assert batch.text == TextWrite("héllo world".encode(), at=None), "Redis lost something: whole again"
    record["final_text"] = "another"
    log.note_state(lambda: dict(record))
    assert log.take_batch(whole_record=False).text == TextWrite(b"another", at=None), "not a continuation: whole"
    log.own(0, {"token_hash": "x"})
    log.note_state(lambda: dict(record))
    assert log.take_batch(whole_record=False).text == TextWrite(b"another", at=None), "owned again: whole"


async def test_a_follower_reports_history_it_cannot_serve_instead_of_skipping_it() -> None:
    stored = StoredStream()
    stored.events = [event(i) for i in range(5, 9)]  # 1-4 were trimmed (or lost with Redis)
    log = RedisEventLog("s", stored, window_bytes=1 << 20)
    log.deliver(stored.events)
    assert [e.id for e in await log.read(6)] == [7, 8]
    with pytest.raises(HistoryLost) as lost:
        await log.read(0)
    assert (lost.value.missing_from, lost.value.resumes_at) == (1, 5)
    log.deliver([event(9), event(10, "end")])
    assert log.closed and log.last_id == 10


async def test_the_local_window_is_bounded_and_older_events_come_from_redis() -> None:
    stored = StoredStream()
    stored.events = [event(i) for i in range(1, 201)]
    log = RedisEventLog("s", stored, window_bytes=2000)
    log.deliver(stored.events)
    assert len(log._window) < 200, "the window keeps only the newest events"
    assert log._window_bytes <= 2000
    assert [e.id for e in await log.read(0, limit=3)] == [1, 2, 3]  # fetched, not cached
    assert [e.id for e in await log.read(199)] == [200]
    assert [e.id for e in await read_all(log, 150)] == list(range(151, 201))  # fetched, then cached
    for i in range(201, 401):  # one at a time: trimmed in steps, never past the bound
        stored.events.append(event(i))
        log.deliver([stored.events[-1]])
        assert log._window_bytes <= 2000 and log._window[-1].id == i
        assert log._base + len(log._window) == i
    assert [e.id for e in await read_all(log, 0)] == list(range(1, 401))


async def test_waiters_wake_on_delivery_and_a_disowned_log_drops_what_it_could_not_write() -> None:
    stored = StoredStream()
    log = RedisEventLog("s", stored, window_bytes=1 << 20)
    woke = trio.Event()

    async def wait() -> None:
        await log.wait_after(0)
        woke.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.sleep(0.01)
        assert log.waiters == 1 and not woke.is_set()
        assert stored.followed == [log], "a reader waiting on a log someone else owns asks to follow it"
        log.deliver([event(1)])
    assert woke.is_set()
    log.own(1, {})
    log.append("transcript", b"{}")
    log.disown()  # fenced: another instance owns it now
    assert stored.followed == [log, log], "its readers here follow it from Redis now"
    assert not log.dirty and log.size_bytes == 0
    with pytest.raises(RuntimeError):
        log.append("transcript", b"{}")


class FailingStoredStream(StoredStream):
    """Redis gone for the first ``failures`` reads of older history."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def fetch(self, session_id: str, after_id: int, limit: int) -> list[Event]:
        if self.failures:
            self.failures -= 1
            raise RedisUnavailable("XRANGE: ConnectionError: refused")
        return await super().fetch(session_id, after_id, limit)


def test_a_reader_of_older_history_waits_out_a_redis_outage_and_misses_nothing() -> None:
    async def main() -> None:
        stored = FailingStoredStream(failures=3)
        stored.events = [event(i) for i in range(1, 201)]
        log = RedisEventLog("s", stored, window_bytes=2000)
        log.deliver(stored.events)
        log.deliver([Event(201, "end", sse.frame(201, "end", b"{}"))])
        assert log._base > 0, "the oldest events are only in Redis"
        with pytest.raises(StateUnavailable):  # typed for every reader, not Redis's own error
            await log.read(0)
        stored.failures = 3
        readers = Readers(8.0)
        chunks: list[bytes] = []
        async with contextlib.aclosing(_follow(log, 0, readers)) as stream:
            async for chunk in stream:
                chunks.append(chunk)
        frames = b"".join(chunk for chunk in chunks[1:] if chunk != sse.HEARTBEAT)
        ids = [int(line[4:]) for line in frames.split(b"\n") if line.startswith(b"id: ")]
        assert ids == list(range(1, 202)), "every event once, in order, no gap event"
        assert chunks.count(sse.HEARTBEAT) == 3, "a comment while it waits for Redis"
        assert b"event: gap" not in frames

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
