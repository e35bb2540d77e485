"""Fixtures for the finance plugin's tests: components come from the registry, through the
installed distribution's entry point, exactly as a user's config gets them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import callpyback as cpb
from callpyback import plugins


@pytest.fixture(autouse=True)
def _fresh_discovery(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(plugins.ALLOW_ENV, raising=False)
    monkeypatch.delenv(plugins.DENY_ENV, raising=False)
    plugins.reset()
    yield
    plugins.reset()


@pytest.fixture
def create() -> Callable[..., Any]:
    """``create(kind, name, **options)``: build a component by its registered name."""

    def build(kind: str, name: str, **options: Any) -> Any:
        return plugins.get_registry().create(kind, name, options)

    return build


@pytest.fixture
def clock() -> cpb.MockTimeSource:
    return cpb.MockTimeSource(1_700_000_000.0)


@pytest.fixture
def trail(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "transactions.jsonl"
