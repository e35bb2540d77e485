"""System and mock time sources."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from callpyback import (
    CallPyBack,
    ConfigurationError,
    MockTimeSource,
    SystemTimeSource,
    on_completion,
)


def test_system_time_source_uses_real_clocks() -> None:
    """now() is wall-clock seconds; monotonic() never goes back."""
    ts = SystemTimeSource()
    assert abs(ts.now() - time.time()) < 5
    a = ts.monotonic()
    b = ts.monotonic()
    assert b >= a


def test_mock_advance_set_time_and_sleep() -> None:
    """advance moves both clocks; set_time sets the wall clock; sleep advances and is recorded."""
    ts = MockTimeSource(100.0)
    assert (ts.now(), ts.monotonic()) == (100.0, 0.0)
    ts.advance(2.5)
    assert (ts.now(), ts.monotonic()) == (102.5, 2.5)
    ts.set_time(200.0)
    assert ts.now() == 200.0 and ts.monotonic() == pytest.approx(100.0)
    ts.set_time(150.0)  # wall clock back, monotonic stays
    assert ts.now() == 150.0 and ts.monotonic() == pytest.approx(100.0)
    ts.sleep(1.0)
    assert ts.sleeps == [1.0] and ts.now() == 151.0
    asyncio.run(ts.asleep(0.5))
    assert ts.sleeps == [1.0, 0.5]


def test_mock_rejects_nonsense() -> None:
    with pytest.raises(ConfigurationError):
        MockTimeSource("soon")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="non-negative"):
        MockTimeSource().advance(-1)


def test_mock_is_thread_safe() -> None:
    """Concurrent advances are never lost."""
    ts = MockTimeSource()

    def work() -> None:
        for _ in range(1000):
            ts.advance(0.001)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ts.monotonic() == pytest.approx(8.0)


def test_all_core_timing_goes_through_the_time_source() -> None:
    """Timestamps and durations come from the injected clock."""
    clock = MockTimeSource(5000.0)
    seen: list[tuple[float, float]] = []

    @CallPyBack(
        observers=[
            on_completion(
                lambda timestamp, execution_time: seen.append((timestamp, execution_time))
            )
        ],
        time_source=clock,
    )
    def work() -> None:
        clock.advance(3.0)

    work()
    assert seen == [(5000.0, 3.0)]
