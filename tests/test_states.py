"""The transition table and the path checker."""

from __future__ import annotations

from callpyback.states import (
    NOTIFIED_STATES,
    PHASE_STATES,
    TRANSITIONS,
    Phase,
    is_valid_path,
)
from callpyback.states import (
    ExecutionState as S,
)


def test_every_state_has_a_row() -> None:
    """The table covers every state, and terminal states have no exits."""
    assert set(TRANSITIONS) == set(S)
    assert TRANSITIONS[S.COMPLETED] == frozenset()
    assert TRANSITIONS[S.ERROR] == frozenset()


def test_internal_states_are_not_notified() -> None:
    """INITIALIZED and EXECUTING are internal; each phase names one notified state."""
    assert S.INITIALIZED not in NOTIFIED_STATES and S.EXECUTING not in NOTIFIED_STATES
    assert set(PHASE_STATES.values()) == NOTIFIED_STATES
    assert PHASE_STATES[Phase.BEFORE_CALL] is S.PRE_EXECUTION


def test_valid_and_invalid_paths() -> None:
    """is_valid_path accepts the five outcomes and rejects shortcuts and dangling paths."""
    ok = [
        [S.INITIALIZED, S.PRE_EXECUTION, S.EXECUTING, S.POST_SUCCESS, S.COMPLETED],
        [S.INITIALIZED, S.PRE_EXECUTION, S.EXECUTING, S.POST_FAILURE, S.COMPLETED],
        [
            S.INITIALIZED,
            S.PRE_EXECUTION,
            S.EXECUTING,
            S.POST_FAILURE,
            S.EXECUTING,
            S.POST_SUCCESS,
            S.COMPLETED,
        ],
        [S.INITIALIZED, S.PRE_EXECUTION, S.EXECUTING, S.COMPLETED],
        [S.INITIALIZED, S.PRE_EXECUTION, S.EXECUTING, S.ERROR],
        [S.INITIALIZED, S.PRE_EXECUTION, S.EXECUTING, S.POST_FAILURE, S.ERROR],
    ]
    for path in ok:
        assert is_valid_path(path), path
    bad = [
        [],
        [S.PRE_EXECUTION, S.EXECUTING, S.POST_SUCCESS, S.COMPLETED],
        [S.INITIALIZED, S.EXECUTING, S.POST_SUCCESS, S.COMPLETED],
        [S.INITIALIZED, S.PRE_EXECUTION, S.EXECUTING, S.POST_SUCCESS],
        [S.INITIALIZED, S.PRE_EXECUTION, S.EXECUTING, S.POST_SUCCESS, S.ERROR],
        [S.INITIALIZED, S.PRE_EXECUTION, S.EXECUTING, S.COMPLETED, S.COMPLETED],
    ]
    for path in bad:
        assert not is_valid_path(path), path
