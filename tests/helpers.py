"""Helpers shared by the core tests."""

from __future__ import annotations

from typing import Iterable, List

from callpyback.states import ExecutionState as S
from callpyback.states import is_valid_path


def full_path(notified: Iterable[S]) -> List[S]:
    """Rebuild the whole state path from the notified states, inserting the internal ones.

    INITIALIZED starts every path; EXECUTING precedes each attempt's outcome, and a retry shows
    as POST_FAILURE followed by another outcome.
    """
    path = [S.INITIALIZED]
    for state in notified:
        last = path[-1]
        if (state in (S.POST_SUCCESS, S.POST_FAILURE) or (
            state in (S.COMPLETED, S.ERROR) and last in (S.INITIALIZED, S.PRE_EXECUTION)
        )) and last is not S.EXECUTING:
            if last is S.INITIALIZED:
                path.append(S.PRE_EXECUTION)
            path.append(S.EXECUTING)
        path.append(state)
    return path


def assert_valid(notified: Iterable[S]) -> None:
    path = full_path(notified)
    assert is_valid_path(path), f"illegal path {[s.name for s in path]}"
