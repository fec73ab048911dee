"""In-memory logs' readers woken together (service.events.wakes), on trio's mock clock so that
"within one interval" is exact."""

from __future__ import annotations

import trio
import trio.testing

from service.events.log import MemoryEventLog
from service.events.wakes import Wakes

INTERVAL_S = 0.005


def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def woken_at(event_log: MemoryEventLog, after_id: int, into: list[float]) -> None:
    await event_log.wait_after(after_id)
    into.append(trio.current_time())


def test_readers_of_every_changed_log_wake_in_one_pass_within_an_interval() -> None:
    async def main() -> None:
        wakes = Wakes(INTERVAL_S)
        logs = [MemoryEventLog(wakes) for _ in range(3)]
        woken: list[float] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wakes.run)
            for event_log in logs:
                nursery.start_soon(woken_at, event_log, 0, woken)
            await trio.sleep(1)
            started = trio.current_time()
            for event_log in logs:
                event_log.append("transcript", b"{}")
                await trio.sleep(INTERVAL_S / 10)  # spread over part of an interval
            await trio.sleep(2 * INTERVAL_S)
            assert len(woken) == 3
            assert len(set(woken)) == 1  # one pass for all three
            assert started < woken[0] <= started + INTERVAL_S
            nursery.cancel_scope.cancel()

    trio.run(main, clock=clock())


def test_a_reader_is_not_woken_before_the_pass() -> None:
    async def main() -> None:
        wakes = Wakes(INTERVAL_S)
        event_log = MemoryEventLog(wakes)
        woken: list[float] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wakes.run)
            nursery.start_soon(woken_at, event_log, 0, woken)
            await trio.sleep(1)
            event_log.append("transcript", b"{}")
            await trio.sleep(INTERVAL_S / 2)
            assert woken == []
            await trio.sleep(INTERVAL_S)
            assert len(woken) == 1
            nursery.cancel_scope.cancel()

    trio.run(main, clock=clock())


def test_a_close_and_a_nudge_wake_at_once() -> None:
    async def main() -> None:
        wakes = Wakes(INTERVAL_S)
        closing, nudged = MemoryEventLog(wakes), MemoryEventLog(wakes)
        woken: list[float] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wakes.run)
            nursery.start_soon(woken_at, closing, 0, woken)
            nursery.start_soon(woken_at, nudged, 0, woken)
            await trio.sleep(1)
            closing.close()
            nudged.nudge()
            await trio.testing.wait_all_tasks_blocked()
            assert woken == [1.0, 1.0]
            nursery.cancel_scope.cancel()

    trio.run(main, clock=clock())


def test_without_the_task_or_with_interval_zero_a_reader_wakes_at_every_event() -> None:
    async def main() -> None:
        for wakes, start in ((Wakes(INTERVAL_S), False), (Wakes(0), True)):
            event_log = MemoryEventLog(wakes)
            woken: list[float] = []
            async with trio.open_nursery() as nursery:
                if start:
                    nursery.start_soon(wakes.run)  # returns at once: nothing to gather
                nursery.start_soon(woken_at, event_log, 0, woken)
                await trio.testing.wait_all_tasks_blocked()
                now = trio.current_time()
                event_log.append("transcript", b"{}")
                await trio.testing.wait_all_tasks_blocked()
                assert woken == [now]

    trio.run(main, clock=clock())


def test_events_due_when_the_task_is_cancelled_wake_their_readers() -> None:
    async def main() -> None:
        wakes = Wakes(INTERVAL_S)
        event_log = MemoryEventLog(wakes)
        woken: list[float] = []
        async with trio.open_nursery() as outer:
            outer.start_soon(woken_at, event_log, 0, woken)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(wakes.run)
                await trio.testing.wait_all_tasks_blocked()
                event_log.append("transcript", b"{}")
                nursery.cancel_scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert woken == [0.0]  # at the cancellation, not an interval later
            outer.start_soon(woken_at, event_log, 1, woken)  # and from then on at every event
            await trio.testing.wait_all_tasks_blocked()
            event_log.append("transcript", b"{}")
            await trio.testing.wait_all_tasks_blocked()
            assert woken == [0.0, 0.0]

    trio.run(main, clock=clock())
