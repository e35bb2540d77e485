"""The per-call state machine: states, subscription phases and the one transition table.

``INITIALIZED`` and ``EXECUTING`` are internal: observers are only notified of the other five.
"""

from __future__ import annotations

import enum
from typing import Dict, FrozenSet, Iterable, Sequence

__all__ = [
    "NOTIFIED_STATES",
    "PHASE_STATES",
    "TRANSITIONS",
    "ExecutionState",
    "Phase",
    "is_valid_path",
]


class ExecutionState(enum.Enum):
    INITIALIZED = "initialized"
    PRE_EXECUTION = "pre_execution"
    EXECUTING = "executing"
    POST_SUCCESS = "post_success"
    POST_FAILURE = "post_failure"
    COMPLETED = "completed"
    ERROR = "error"

    def __repr__(self) -> str:
        return f"ExecutionState.{self.name}"


class Phase(enum.Enum):
    """Names for subscribing to the notified states."""

    BEFORE_CALL = "before_call"
    AFTER_SUCCESS = "after_success"
    AFTER_FAILURE = "after_failure"
    AFTER_COMPLETION = "after_completion"
    ON_ERROR = "on_error"

    def __repr__(self) -> str:
        return f"Phase.{self.name}"


S = ExecutionState

PHASE_STATES: Dict[Phase, ExecutionState] = {
    Phase.BEFORE_CALL: S.PRE_EXECUTION,
    Phase.AFTER_SUCCESS: S.POST_SUCCESS,
    Phase.AFTER_FAILURE: S.POST_FAILURE,
    Phase.AFTER_COMPLETION: S.COMPLETED,
    Phase.ON_ERROR: S.ERROR,
}

NOTIFIED_STATES: FrozenSet[ExecutionState] = frozenset(PHASE_STATES.values())

#: The single source of truth for legal transitions.  ``POST_FAILURE -> EXECUTING`` is a retry
#: decided by an error handler; ``EXECUTING -> COMPLETED`` is a cancelled call (a generator closed
#: by its consumer, or ``asyncio.CancelledError``); any other ``BaseException`` goes to ``ERROR``.
TRANSITIONS: Dict[ExecutionState, FrozenSet[ExecutionState]] = {
    S.INITIALIZED: frozenset({S.PRE_EXECUTION}),
    S.PRE_EXECUTION: frozenset({S.EXECUTING}),
    S.EXECUTING: frozenset({S.POST_SUCCESS, S.POST_FAILURE, S.COMPLETED, S.ERROR}),
    S.POST_SUCCESS: frozenset({S.COMPLETED}),
    S.POST_FAILURE: frozenset({S.EXECUTING, S.COMPLETED, S.ERROR}),
    S.COMPLETED: frozenset(),
    S.ERROR: frozenset(),
}


def is_valid_path(states: Sequence[ExecutionState] | Iterable[ExecutionState]) -> bool:
    """Whether ``states`` starts at INITIALIZED and follows :data:`TRANSITIONS` to an end."""
    seq = list(states)
    if not seq or seq[0] is not S.INITIALIZED:
        return False
    for current, following in zip(seq, seq[1:]):
        if following not in TRANSITIONS[current]:
            return False
    return not TRANSITIONS[seq[-1]]
