"""The per-call state machine: states, subscription phases and the one transition table.

``INITIALIZED`` and ``EXECUTING`` are internal: observers are only notified of the other five.
"""

from __future__ import annotations

import enum
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Sequence, Union

from .errors import ConfigurationError

__all__ = [
    "NOTIFIED_STATES",
    "PHASE_STATES",
    "TRANSITIONS",
    "ExecutionState",
    "Phase",
    "StateSpec",
    "is_valid_path",
    "resolve_states",
]


class ExecutionState(enum.Enum):
    """The states of one call; ``TRANSITIONS`` says which may follow which."""

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

#: What subscribing accepts: a state, a phase, or the name of either.
StateSpec = Union[ExecutionState, Phase, str]

#: Each phase and the state it stands for.
PHASE_STATES: Dict[Phase, ExecutionState] = {
    Phase.BEFORE_CALL: S.PRE_EXECUTION,
    Phase.AFTER_SUCCESS: S.POST_SUCCESS,
    Phase.AFTER_FAILURE: S.POST_FAILURE,
    Phase.AFTER_COMPLETION: S.COMPLETED,
    Phase.ON_ERROR: S.ERROR,
}

#: The states observers are notified of (``INITIALIZED`` and ``EXECUTING`` are internal).
NOTIFIED_STATES: FrozenSet[ExecutionState] = frozenset(PHASE_STATES.values())

#: The single source of truth for legal transitions (the engine follows it; in checking mode it
#: asserts every step against it).  ``POST_FAILURE -> EXECUTING`` is a retry decided by an error
#: handler; ``EXECUTING -> COMPLETED`` is a cancelled call (a generator closed by its consumer, or
#: ``asyncio.CancelledError``); any other ``BaseException`` goes to ``ERROR``, also from
#: ``PRE_EXECUTION`` when a PRE_EXECUTION observer raises ``KeyboardInterrupt``/``SystemExit``
#: (the call then does not run).
TRANSITIONS: Dict[ExecutionState, FrozenSet[ExecutionState]] = {
    S.INITIALIZED: frozenset({S.PRE_EXECUTION}),
    S.PRE_EXECUTION: frozenset({S.EXECUTING, S.ERROR}),
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


def resolve_states(
    states: Optional[Iterable[StateSpec]] = None,
    phases: Optional[Iterable[StateSpec]] = None,
    *,
    owner: str = "observer",
) -> Optional[frozenset[ExecutionState]]:
    """Normalise ``states``/``phases`` (enums or their names) to notified states; None means all."""
    if states is None and phases is None:
        return None
    out: set[ExecutionState] = set()
    for spec in [*(_as_iter(states, "states", owner)), *(_as_iter(phases, "phases", owner))]:
        out.add(_to_state(spec, owner))
    if not out:
        raise ConfigurationError(
            f"{owner}: an empty list of states/phases would never be notified; "
            "pass None to receive every state"
        )
    return frozenset(out)


def _as_iter(value: Any, what: str, owner: str) -> List[Any]:
    if value is None:
        return []
    if isinstance(value, (str, ExecutionState, Phase)):
        return [value]
    try:
        return list(value)
    except TypeError:
        raise ConfigurationError(
            f"{owner}: {what}={value!r} must be a state, a phase or a list of them"
        ) from None


def _to_state(spec: Any, owner: str) -> ExecutionState:
    if isinstance(spec, Phase):
        return PHASE_STATES[spec]
    if isinstance(spec, ExecutionState):
        if spec not in NOTIFIED_STATES:
            raise ConfigurationError(
                f"{owner}: {spec!r} is internal and never notified; choose from "
                f"{sorted(s.name for s in NOTIFIED_STATES)}"
            )
        return spec
    if isinstance(spec, str):
        key = spec.strip().upper()
        if key in Phase.__members__:
            return PHASE_STATES[Phase[key]]
        if key in ExecutionState.__members__:
            return _to_state(ExecutionState[key], owner)
        allowed = sorted(Phase.__members__) + sorted(s.name for s in NOTIFIED_STATES)
        import difflib

        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigurationError(
            f"{owner}: unknown state or phase {spec!r}; allowed: {allowed}{hint}"
        )
    raise ConfigurationError(
        f"{owner}: {spec!r} is not a state or phase (use ExecutionState, Phase or their names)"
    )
