"""Shared fixtures for the core tests."""

from __future__ import annotations

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
