"""The busy loop's pause before each wait for I/O: when it pauses, for how long, and that it gathers."""

from __future__ import annotations

import socket
import time

import trio

from service.serving.io_coalescing import BUSY_WAKES_PER_S, WINDOW_S, IoCoalescing

BUSY_WAITS = int(BUSY_WAKES_PER_S * WINDOW_S)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _coalescing(pause_s: float = 0.002) -> tuple[IoCoalescing, _Clock]:
    clock = _Clock()
    return IoCoalescing(pause_s, sleep=clock.sleep, clock=lambda: clock.now), clock


def _waits(coalescing: IoCoalescing, clock: _Clock, count: int, *, every_s: float, timeout: float = 1.0) -> None:
    for _ in range(count):
        coalescing.before_io_wait(timeout)
        clock.now += every_s


def test_a_quiet_loop_waits_for_io_at_once() -> None:
    coalescing, clock = _coalescing()
    _waits(coalescing, clock, 50, every_s=WINDOW_S / (BUSY_WAITS - 1))  # just under the busy rate, two windows
    assert clock.slept == []


def test_a_busy_window_makes_the_next_one_pause_at_most_until_the_next_deadline() -> None:
    coalescing, clock = _coalescing(0.002)
    _waits(coalescing, clock, BUSY_WAITS, every_s=WINDOW_S / (BUSY_WAITS + 1))
    assert clock.slept == []  # the first window only counts
    clock.now += WINDOW_S / 10  # the next window starts
    coalescing.before_io_wait(1.0)
    coalescing.before_io_wait(0.0005)  # a timer due sooner than the pause
    coalescing.before_io_wait(0)  # tasks ready to run: trio only polls
    assert clock.slept == [0.002, 0.0005]


def test_a_loop_running_tasks_most_of_the_time_does_not_pause() -> None:
    """Waking as often as a busy loop, but running for 3 ms of every 3.5: it is loaded."""
    for running_s, pauses in ((0.003, False), (0.0005, True)):
        coalescing, clock = _coalescing()
        for _ in range(2 * BUSY_WAITS + 10):  # two windows and more
            coalescing.before_io_wait(1.0)
            clock.now += 0.0035 - running_s  # waiting for I/O
            coalescing.after_io_wait(1.0)
            clock.now += running_s  # running what woke
        assert bool(clock.slept) is pauses


def test_a_pause_longer_than_the_busy_rate_allows_keeps_pausing() -> None:
    """Pausing 5 ms, a loop can wake only 20 times a window, under the 25 that make it busy:
    while it pauses, half of what it can do keeps it busy. It stopped pausing every other
    window before (found by the real-loop test below on a contended machine)."""
    coalescing, clock = _coalescing(0.005)
    _waits(coalescing, clock, BUSY_WAITS, every_s=WINDOW_S / (BUSY_WAITS + 1))  # busy
    clock.now += WINDOW_S / 10  # the next window starts, pausing
    for window in range(4):
        before = len(clock.slept)
        _waits(coalescing, clock, 19, every_s=0)  # each wait pauses 5 ms: 19 fill 95 ms
        clock.now += WINDOW_S - 19 * 0.005 + 0.0001
        assert len(clock.slept) - before == 19, f"window {window} stopped pausing"
    _waits(coalescing, clock, 9, every_s=0.01)  # under half of what a pausing loop can: quiet again
    before = len(clock.slept)
    _waits(coalescing, clock, 5, every_s=0.01)
    assert len(clock.slept) == before


def test_a_long_idle_gap_makes_the_loop_quiet_again() -> None:
    coalescing, clock = _coalescing()
    _waits(coalescing, clock, BUSY_WAITS, every_s=WINDOW_S / (BUSY_WAITS + 1))
    clock.now += 5.0  # nothing happened for seconds: the busy window is long past
    _waits(coalescing, clock, 3, every_s=0.001)
    assert clock.slept == []


async def test_a_busy_loop_handles_a_stream_of_small_reads_in_few_wakes() -> None:
    """A real loop and socket: bytes written every 0.2 ms wake it at most once per pause once busy.
    The loaded rule is off here (the fake clock's tests cover it): on a machine busy with other
    work, time the loop spends descheduled counts as running, and a CI run saw it stop pausing."""
    pause_s = 0.004
    coalescing = IoCoalescing(pause_s, loaded_fraction=2.0)
    wakes: list[float] = []

    class CountWakes(trio.abc.Instrument):
        def after_io_wait(self, timeout: float) -> None:
            if timeout > 0:
                wakes.append(time.monotonic())

    reader, writer = socket.socketpair()
    stop = trio.Event()
    received = 0

    def write_for(seconds: float) -> None:
        ends = time.monotonic() + seconds
        while time.monotonic() < ends:
            writer.send(b"x")
            time.sleep(0.0002)

    async def read() -> None:
        nonlocal received
        sock = trio.socket.from_stdlib_socket(reader)
        while not stop.is_set():
            received += len(await sock.recv(65536))

    with reader, writer:
        trio.lowlevel.add_instrument(coalescing)
        trio.lowlevel.add_instrument(CountWakes())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            started = time.monotonic()
            await trio.to_thread.run_sync(write_for, 0.5)
            stop.set()
            writer.send(b"x")  # wakes the reader to see ``stop``
        trio.lowlevel.remove_instrument(coalescing)
    busy_from = started + 2 * WINDOW_S  # one window to count, then pausing
    late = [t for t in wakes if busy_from <= t <= started + 0.5]
    assert received > 500  # the writer kept the loop busy
    assert len(late) <= (0.5 - 2 * WINDOW_S) / pause_s + 2
