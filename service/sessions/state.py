"""A session's lifecycle as a table: every allowed transition, and nothing else.

waiting ──attach──▶ streaming ──end_of_audio──▶ finishing ──flushed──▶ finished
   │                   │  ▲                         │
   │                   │  └─────── (finalize stays in streaming)
   └──── fail / cancel from any live state ──▶ failed | cancelled
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    WAITING = "waiting"
    STREAMING = "streaming"
    FINISHING = "finishing"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


class Trigger(enum.Enum):
    ATTACH = "attach"  # an audio socket connected
    END_OF_AUDIO = "end_of_audio"
    FLUSHED = "flushed"  # Riva delivered its last finals
    FAIL = "fail"
    CANCEL = "cancel"


TERMINAL = frozenset({State.FINISHED, State.FAILED, State.CANCELLED})
LIVE = (State.WAITING, State.STREAMING, State.FINISHING)

TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (State.WAITING, Trigger.ATTACH): State.STREAMING,
    (State.STREAMING, Trigger.ATTACH): State.STREAMING,  # reconnect after a dropped socket
    (State.STREAMING, Trigger.END_OF_AUDIO): State.FINISHING,
    (State.FINISHING, Trigger.FLUSHED): State.FINISHED,
    **{(s, Trigger.FAIL): State.FAILED for s in LIVE},
    **{(s, Trigger.CANCEL): State.CANCELLED for s in LIVE},
}


class InvalidTransition(RuntimeError):
    pass


def next_state(state: State, trigger: Trigger) -> State:
    """The state after ``trigger``; raise InvalidTransition where the table has no row."""
    try:
        return TRANSITIONS[(state, trigger)]
    except KeyError:
        raise InvalidTransition(f"{trigger.value} is not allowed in state {state.value}") from None
