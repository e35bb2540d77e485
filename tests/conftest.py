"""Shared fixtures for the core tests."""

from __future__ import annotations

import os
from typing import Any

import pytest

import callpyback as cpb


@pytest.fixture
def clock() -> cpb.MockTimeSource:
    """A deterministic clock starting at 1,000,000 s since the epoch."""
    return cpb.MockTimeSource(1_000_000.0)


class Recorder:
    """Records (state name, context) for every notified state."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def update(self, context: object) -> None:
        self.events.append((context.state.name, context))  # type: ignore[attr-defined]

    @property
    def seen(self) -> list[str]:
        return [s for s, _ in self.events]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


# ``CALLPYBACK_CHECK_TRANSITIONS=1 python -m pytest`` runs the whole suite with every wrapper
# checking each transition against states.TRANSITIONS (CI does, for the core tests): any
# illegal one fails the run.
if os.environ.get("CALLPYBACK_CHECK_TRANSITIONS", "") not in ("", "0"):
    from callpyback import _engine

    _engine.checking(True)

    @pytest.fixture(autouse=True)
    def _no_illegal_transitions() -> Any:
        yield
        assert _engine.VIOLATIONS == [], _engine.VIOLATIONS


# .ci/matrix.sh runs the suite against the built wheel installed in a fresh virtualenv: a test
# run that imported the checkout instead would prove nothing about the wheel.
_installed = os.environ.get("CALLPYBACK_TEST_INSTALLED")
if _installed and not os.path.realpath(cpb.__file__).startswith(os.path.realpath(_installed)):
    raise RuntimeError(f"testing {cpb.__file__}, not the wheel installed in {_installed}")
