"""callpyback.state: the backend seam, selection, in-process windows, and the breaker's hot flag."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, Iterator, List

import pytest

import callpyback as cpb
from callpyback import ConfigurationError, state
from callpyback.handlers import CircuitBreakerHandler, CircuitOpenError


@pytest.fixture(autouse=True)
def _memory_after() -> Iterator[None]:
    yield
    state.use(state.MEMORY)


class RecordingBackend:
    """A backend that keeps every breaker in its process but records what bound to it."""

    name = "recording"

    def __init__(self) -> None:
        self.bound: List[str] = []
        self.windows: List[str] = []
        self.closed = False

    def bind_breaker(self, sink: Any) -> None:
        assert isinstance(sink, state.BreakerSink)
        self.bound.append(sink.name)

    def window(self, name: str, limit: int, seconds: float, max_keys: int) -> Any:
        self.windows.append(name)
        return state.MemoryWindow(limit, seconds, max_keys)

    def close(self) -> None:
        self.closed = True


def test_the_default_is_in_process() -> None:
    handler = CircuitBreakerHandler("state-default")
    assert state.current() is state.MEMORY and handler.breaker.backend is state.MEMORY
    assert isinstance(state.MEMORY, state.StateBackend)


def test_use_binds_by_pattern_before_and_after_and_respects_shared() -> None:
    early = CircuitBreakerHandler("db-primary")
    pinned = CircuitBreakerHandler("db-local", shared=False)
    other = CircuitBreakerHandler("search")
    forced = CircuitBreakerHandler("search-forced", shared=True)
    assert forced.breaker.backend is state.MEMORY  # nothing selected yet
    backend = RecordingBackend()
    previous = state.use(backend, breakers=["db-*"], exclude=["*-local"], windows=["velocity"])
    assert previous is state.MEMORY
    late = CircuitBreakerHandler("db-replica")
    assert sorted(backend.bound) == ["db-primary", "db-replica", "search-forced"]
    assert early.breaker.backend is backend and late.breaker.backend is backend
    assert pinned.breaker.backend is state.MEMORY and other.breaker.backend is state.MEMORY
    window = state.window("velocity", 2, 60)
    assert window.backend is backend and backend.windows == ["velocity"]
    assert state.window("other", 2, 60).backend is state.MEMORY
    assert state.use(state.MEMORY) is backend
    assert early.breaker.backend is state.MEMORY and window.backend is state.MEMORY


def test_use_refuses_what_is_not_a_backend() -> None:
    with pytest.raises(ConfigurationError, match="not a state backend"):
        state.use("redis://localhost")
    with pytest.raises(ConfigurationError, match="name patterns"):
        state.use(state.MEMORY, breakers=[""])
    with pytest.raises(ConfigurationError, match=r"shared=...\) must be True, False or None"):
        CircuitBreakerHandler("x", shared="yes")


def test_memory_window_slides_and_bounds_memory() -> None:
    window = state.window("logins", 2, 10.0, max_keys=5)
    assert [window.hit("a", t).over for t in (0.0, 1.0, 2.0)] == [False, False, True]
    assert window.hit("a", 10.5).over is False  # the event at 0.0 left the window
    assert window.hit("a", 10.6, record_over=True).events == 3  # flag mode records anyway
    for i in range(50):
        window.hit(f"k{i}", 100.0 + i * 20)
    assert len(window.impl._events) <= 6
    with pytest.raises(ConfigurationError, match="limit must be an int"):
        state.window("bad", 0, 1.0)


def test_hot_idle_follows_the_breaker() -> None:
    """Idle (nothing to tell the breaker) exactly while closed with no failure counted, and
    never in failure-rate mode (every success is recorded in the window)."""
    clock = cpb.MockTimeSource()
    handler = CircuitBreakerHandler("idle-flag", failure_threshold=2, recovery_timeout=5)
    failing = {"on": False}

    @cpb.CallPyBack(error_handlers=[handler], time_source=clock)
    def call() -> str:
        if failing["on"]:
            raise ConnectionError("down")
        return "ok"

    assert handler.hot.idle
    failing["on"] = True
    with pytest.raises(ConnectionError):
        call()
    assert not handler.hot.idle  # one failure counted
    failing["on"] = False
    call()
    assert handler.hot.idle  # the success reset it
    failing["on"] = True
    for _ in range(2):
        with pytest.raises(ConnectionError):
            call()
    assert not handler.hot.idle  # open
    clock.advance(5)
    failing["on"] = False
    call()
    assert handler.hot.idle  # the trial closed it
    assert not CircuitBreakerHandler("idle-rate", failure_rate=0.5).hot.idle


def test_the_engine_skips_the_hooks_while_idle() -> None:
    """While hot.idle, neither before_attempt nor after_success runs; successes are still
    counted (hot.count) and the first failure makes the hooks run again."""
    calls: List[str] = []

    class Counting(CircuitBreakerHandler):
        def before_attempt(self, context: Any) -> None:
            calls.append("before")
            super().before_attempt(context)

        def after_success(self, context: Any) -> None:
            calls.append("after")
            super().after_success(context)

    handler = Counting("idle-engine", failure_threshold=3)
    failing = {"on": False}

    @cpb.CallPyBack(error_handlers=[handler])
    def call() -> str:
        if failing["on"]:
            raise ConnectionError("down")
        return "ok"

    for _ in range(100):
        call()
    assert calls == [] and handler.stats.successes == 100
    failing["on"] = True
    with pytest.raises(ConnectionError):
        call()
    failing["on"] = False
    call()
    # The failing call was admitted idle (no hook); the next one, with a failure counted, ran both.
    assert calls == ["before", "after"]
    handler.reset()
    call()
    assert handler.stats.successes == 1  # reset counts from zero again


def test_an_open_breaker_still_rejects_with_the_hot_flag() -> None:
    """Also when opened by hand before any call gave it a clock (it takes the system's)."""
    handler = CircuitBreakerHandler("idle-open", failure_threshold=1, recovery_timeout=60)
    handler.breaker.open()
    f = cpb.CallPyBack(error_handlers=[handler])(lambda: "ran")
    with pytest.raises(CircuitOpenError):
        f()


def test_importing_state_starts_nothing() -> None:
    code = (
        "import threading, sys, callpyback.state\n"
        "print(threading.active_count(), 'redis' in sys.modules, 'pydantic' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "False", "False"]
