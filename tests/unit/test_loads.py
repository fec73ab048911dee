"""Where a new session goes among several workers, and the counts each worker shares."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from service.gateway import Gateway
from service.serving.colocation import NEW_SESSION, Colocation
from service.serving.loads import AWAY, EXPECTED_S, LoadBoard, choose
from service.serving.siblings import Siblings
from service.serving.supervisor import placement
from service.settings import Settings


def test_every_worker_reads_what_each_writes_of_its_own_count(tmp_path: Path) -> None:
    first, second = LoadBoard(tmp_path / "loads", 3), LoadBoard(tmp_path / "loads", 3)
    assert first.loads() == [0, 0, 0], "a worker not started yet carries nothing"
    first.set(1, 120)
    second.set(3, AWAY)
    assert second.loads() == first.loads() == [120, 0, AWAY]
    assert [second.load(slot) for slot in (1, 2, 3)] == [120, 0, AWAY]
    first.close()
    second.close()
    again = LoadBoard(tmp_path / "loads", 3)
    assert again.loads() == [120, 0, AWAY], "a restarted worker's siblings keep their counts"
    again.close()


@pytest.mark.parametrize(
    ("loads", "here", "fill", "slot"),
    [
        ([0, 0], 2, 200, 1),  # the first worker fills first, wherever the request landed
        ([199, 0], 2, 200, 1),
        ([200, 0], 1, 200, 2),  # full to the fill: the next
        ([200, 200, 5], 1, 200, 3),
        ([250, 210], 1, 200, 2),  # every worker past the fill: the least loaded
        ([230, 230], 2, 200, 2),  # a tie: where it is (no handoff)
        ([230, 230, 230], 2, 200, 2),
        ([AWAY, 0], 2, 200, 2),  # draining: never chosen
        ([AWAY, 250, 240], 2, 200, 3),
        ([500, 500], 1, 200, None),  # all at their limit: served (and refused) where it landed
        ([AWAY, AWAY], 1, 200, None),
        ([40, 10, 10], 1, 0, 2),  # fill 0: spread, to the least loaded
        ([10, 10, 10], 3, 0, 3),
    ],
)
def test_new_sessions_fill_one_worker_before_the_next(loads: list[int], here: int, fill: int, slot: int | None) -> None:
    assert choose(loads, here=here, fill=fill, limit=500) == slot


@pytest.mark.parametrize(
    ("line", "placed"),
    [
        (b"POST /v1/sessions HTTP/1.1\r\n", True),
        (b"POST /v1/sessions?x=1 HTTP/1.1\r\n", True),
        (b"GET /v1/realtime?intent=transcription HTTP/1.1\r\n", True),
        (b"GET /v1/realtime HTTP/1.1\r\n", True),
        (b"POST /v1/sessionsx HTTP/1.1\r\n", False),
        (b"POST /v1/realtime/client_secrets HTTP/1.1\r\n", False),
        (b"GET /v1/sessions HTTP/1.1\r\n", False),
        (b"POST /v1/sessi", False),  # cut short: served where it landed
    ],
)
def test_only_what_creates_a_session_is_placed_as_new(line: bytes, placed: bool) -> None:
    assert (NEW_SESSION.match(line) is not None) is placed


def colocation(tmp_path: Path, slot: int, count: int, **settings: object) -> Colocation:
    return Colocation(Siblings(tmp_path, slot, count), Gateway(Settings(max_sessions=10, **settings)))  # type: ignore[arg-type]


def test_a_worker_sends_new_sessions_to_the_one_filling_and_each_session_to_its_own(tmp_path: Path) -> None:
    first, second = colocation(tmp_path, 1, 2, worker_fill=3), colocation(tmp_path, 2, 2, worker_fill=3)
    create = b"POST /v1/sessions HTTP/1.1\r\n"
    assert second.destination(create) == 1 and first.destination(create) is None
    first.carrying(3)
    assert second.destination(create) is None and first.destination(create) == 2

    ids = [first.new_id() for _ in range(50)]
    assert {first.siblings.slot_for(session_id) for session_id in ids} == {1}, "its connections come here"
    assert len(set(ids)) == 50
    events = f"GET /v1/sessions/{ids[0]}/events HTTP/1.1\r\n".encode()
    assert second.destination(events) == 1 and first.destination(events) is None
    first.carrying(10)  # at RESERVE_MAX_SESSIONS: its own sessions' connections still go there
    assert second.destination(events) == 1 and second.destination(create) is None
    first.withdraw()
    assert second.destination(events) is None and second.destination(create) is None
    first.carrying(0)  # a draining worker's sessions end: it still takes nothing
    assert second.destination(create) is None
    assert second.destination(b"GET /v1/models HTTP/1.1\r\n") is None


def test_a_session_taken_over_while_its_worker_was_away_stays_where_it_runs_once_that_worker_is_full(
    tmp_path: Path,
) -> None:
    """Its worker at its limit could only refuse a session it does not run (a move needs a
    place), so the worker that runs it serves it; a worker that does not hands it on."""

    held: set[str] = set()

    class Running(Colocation):  # what the registry would say, without running sessions
        def holds(self, session_id: str) -> bool:
            return session_id in held

    first = colocation(tmp_path, 1, 2)
    second = Running(Siblings(tmp_path, 2, 2), Gateway(Settings(max_sessions=10)))
    session_id = first.new_id()
    held.add(session_id)  # taken over here while the first worker restarted
    audio = f"GET /v1/sessions/{session_id}/audio HTTP/1.1\r\n".encode()
    assert second.destination(audio) == 1, "room there: it goes back to its worker (a move)"
    first.carrying(10)
    assert second.destination(audio) is None
    held.clear()
    assert second.destination(audio) == 1, "not here: its worker may run it"


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        ({}, "new sessions fill the first worker up to 200 live sessions before the next gets any"),
        ({"worker_fill": 0}, "new sessions go to the least loaded worker (RESERVE_WORKER_FILL=0)"),
        ({"worker_handoff": False}, "sessions run where the kernel puts their connections"),
    ],
)
def test_the_supervisor_says_where_new_sessions_go(settings: dict[str, object], said: str) -> None:
    assert said in placement(Settings(**settings))  # type: ignore[arg-type]


def test_a_creation_kept_here_counts_at_once_until_the_registry_has_it(tmp_path: Path) -> None:
    """In a burst a worker reads hundreds of creations before their handlers run: each it keeps
    counts for its siblings at once, until it holds its place in the registry or, if it never
    gets there (refused, say), for ``EXPECTED_S``."""
    now = [0.0]
    first = Colocation(Siblings(tmp_path, 1, 2), Gateway(Settings(max_sessions=3)), clock=lambda: now[0])
    second = Colocation(Siblings(tmp_path, 2, 2), Gateway(Settings(max_sessions=3)))
    create = b"POST /v1/sessions HTTP/1.1\r\n"
    assert [first.destination(create) for _ in range(3)] == [None, None, None]
    assert first.board.loads() == [3, 0]
    assert first.destination(create) == 2 and second.destination(create) is None, "full with the three"
    first.arriving()  # one of them holds its place in the registry
    first.carrying(1)
    assert first.board.loads()[0] == 3
    now[0] += EXPECTED_S + 0.1  # the other two never got there
    first.carrying(1)
    assert first.board.loads()[0] == 1


async def test_a_creation_that_never_arrives_is_counted_out_where_nothing_else_happens(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """An idle worker's count changes only with its registry's, so one it expected that never
    came (its key refused, say) would be read by its siblings until its next session."""
    first = Colocation(Siblings(tmp_path, 1, 2), Gateway(Settings(max_sessions=3)), clock=trio.current_time)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(first.load.expire)
        assert first.destination(b"POST /v1/sessions HTTP/1.1\r\n") is None
        assert first.board.loads() == [1, 0]
        await trio.sleep(EXPECTED_S * 0.9)
        assert first.board.loads() == [1, 0], "still expected"
        await trio.sleep(EXPECTED_S * 0.2)
        assert first.board.loads() == [0, 0]
        first.load.expect()
        first.load.arrived()  # arrived: nothing left to count out
        await trio.sleep(EXPECTED_S * 2)
        assert first.board.loads() == [0, 0]
        nursery.cancel_scope.cancel()
