"""Fixtures: a real ``redis-server`` for each test that needs one (127.0.0.1, a free port,
persistence off, always stopped, even when the test fails or left the server stopped), and
child processes (see child.py)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from redis_support import Child, RedisServer

from callpyback import plugins, state

_namespaces = itertools.count()


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One server for the tests that leave it running (each uses its own namespace)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        _release_state()
        server.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own (outage tests stop, kill and restart it)."""
    own = RedisServer(tmp_path)
    try:
        yield own
    finally:
        _release_state()  # before the server goes: its threads would report an outage
        own.stop()


@pytest.fixture
def namespace() -> str:
    return f"t{os.getpid()}-{next(_namespaces)}"


def _release_state() -> None:
    state.use(state.MEMORY).close()


@pytest.fixture(autouse=True)
def _in_process_state_after() -> Iterator[None]:
    """Every test ends with in-process state and its backends closed."""
    yield
    _release_state()
    plugins.reset()


@pytest.fixture
def children() -> Iterator[Any]:
    """``children(n, config)`` starts n child processes; all are stopped after the test."""
    started: List[Child] = []

    def start(n: int, config: Dict[str, Any]) -> List[Child]:
        new = [Child(config) for _ in range(n)]
        started.extend(new)
        return new

    try:
        yield start
    finally:
        for child in started:
            child.stop()
