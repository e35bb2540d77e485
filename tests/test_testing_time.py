"""use_time_source() / mock_time(): one clock for every pipeline, without patching global ones."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Iterator, List

import pytest

from callpyback import CallPyBack, MockTimeSource, SystemTimeSource, on_completion
from callpyback.handlers import CircuitBreakerHandler, CircuitOpenError, RetryHandler
from callpyback.testing import capture, mock_time, use_config, use_time_source
from tests.autoinstrument_support import Packages, packages_in


@pytest.fixture
def packages(tmp_path: Path) -> Iterator[Packages]:
    yield from packages_in(tmp_path)


def test_a_decorator_made_earlier_times_and_stamps_with_the_mock_clock() -> None:
    seen: List[Any] = []
    clock_box: List[MockTimeSource] = []

    @CallPyBack(
        observers=[
            on_completion(
                lambda timestamp, execution_time: seen.append((timestamp, execution_time))
            )
        ]
    )
    def work() -> None:
        clock_box[0].advance(0.25)

    with mock_time(1_000.0) as clock:
        clock_box.append(clock)
        work()
        assert work.__callpyback__.time_source is clock  # type: ignore[attr-defined]
    assert seen == [(1_000.0, 0.25)]


def test_retry_back_off_sleeps_on_the_mock_clock_and_returns_at_once() -> None:
    attempts = {"n": 0}

    @CallPyBack(error_handlers=[RetryHandler(4, backoff=1.0, multiplier=2.0, jitter=None)])
    def flaky() -> str:
        attempts["n"] += 1
        if attempts["n"] < 4:
            raise ConnectionError("down")
        return "ok"

    with mock_time() as clock, capture() as calls:
        assert flaky() == "ok"
    assert clock.sleeps == [1.0, 2.0, 4.0]
    [call] = calls
    assert (call.attempts, call.duration) == (4, 7.0)


def test_threads_started_in_the_block_back_off_on_the_mock_clock() -> None:
    """The override is process-wide: each worker thread's retrying call sleeps on the mock
    clock (recorded there, not waited for)."""
    import threading

    def flaky_twice() -> Any:
        failures = {"left": 2}

        @CallPyBack(error_handlers=[RetryHandler(3, backoff=1.0, multiplier=2.0, jitter=None)])
        def call() -> str:
            if failures["left"]:
                failures["left"] -= 1
                raise ConnectionError("down")
            return "ok"

        return call

    workers = [flaky_twice(), flaky_twice()]
    with mock_time() as clock, capture() as calls:
        threads = [threading.Thread(target=w, name=f"worker-{i}") for i, w in enumerate(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(clock.sleeps) == [1.0, 1.0, 2.0, 2.0]
    assert sorted((r.thread, r.outcome, r.attempts) for r in calls) == [
        ("worker-0", "success", 3),
        ("worker-1", "success", 3),
    ]


def test_async_retry_sleeps_on_the_mock_clock_while_asyncio_sleep_stays_real() -> None:
    """No global clock is patched: the test's own asyncio.sleep still sleeps (and returns)."""
    attempts = {"n": 0}

    @CallPyBack(error_handlers=[RetryHandler(3, backoff=5.0, jitter=None)])
    async def flaky() -> str:
        attempts["n"] += 1
        if attempts["n"] < 3:
            raise ConnectionError("down")
        return "ok"

    async def main() -> str:
        before = time.monotonic()
        await asyncio.sleep(0.01)
        assert time.monotonic() - before >= 0.005
        return await flaky()

    with mock_time() as clock:
        assert time.perf_counter is not clock.monotonic
        assert asyncio.run(main()) == "ok"
    assert clock.sleeps == [5.0, 10.0]


def test_breaker_recovery_timeout_runs_on_the_mock_clock() -> None:
    handler = CircuitBreakerHandler("test-testing-time", failure_threshold=2, recovery_timeout=30.0)

    @CallPyBack(error_handlers=[handler])
    def call(fail: bool) -> str:
        if fail:
            raise ConnectionError("down")
        return "ok"

    with mock_time() as clock:
        for _ in range(2):
            with pytest.raises(ConnectionError):
                call(True)
        with pytest.raises(CircuitOpenError):
            call(False)
        clock.advance(29.0)
        with pytest.raises(CircuitOpenError):
            call(False)
        clock.advance(1.0)
        assert call(False) == "ok"  # the trial call closes it
    assert handler.breaker.state.value == "closed"


def test_pipelines_of_the_import_hook_use_it(packages: Packages) -> None:
    packages.write("{p}svc/__init__.py")
    packages.write("{p}svc/api.py", "import time\ndef slow(clock):\n    clock.advance(2.5)\n")
    mod = packages.name("svc")
    toml = f'[[pipelines]]\nmatch = ["{mod}.*"]\nobservers = ["metrics"]\n'
    with use_config(toml):
        api = __import__(f"{mod}.api", fromlist=["slow"])
        with mock_time() as clock, capture() as calls:
            api.slow(clock)
    assert calls[0].duration == 2.5


def test_time_sources_are_back_afterwards_and_blocks_nest() -> None:
    own = MockTimeSource(5.0)

    @CallPyBack(time_source=own)
    def f() -> None:
        pass

    @CallPyBack
    def g() -> None:
        pass

    outer, inner = MockTimeSource(), MockTimeSource()
    with use_time_source(outer):
        with use_time_source(inner):
            assert f.__callpyback__.time_source is inner  # type: ignore[attr-defined]
        assert f.__callpyback__.time_source is outer  # type: ignore[attr-defined]
        assert g.__callpyback__._pipeline_now.time_source is outer  # type: ignore[attr-defined]
    assert f.__callpyback__.time_source is own  # type: ignore[attr-defined]
    assert isinstance(g.__callpyback__.time_source, SystemTimeSource)  # type: ignore[attr-defined]


def test_restored_even_when_the_block_raises() -> None:
    @CallPyBack
    def g() -> None:
        pass

    with pytest.raises(RuntimeError), mock_time():
        raise RuntimeError("boom")
    assert isinstance(g.__callpyback__.time_source, SystemTimeSource)  # type: ignore[attr-defined]


def test_a_time_source_without_the_protocol_is_refused() -> None:
    from callpyback.errors import ConfigurationError

    with (
        pytest.raises(ConfigurationError, match=r"lacks \['sleep'\]"),
        use_time_source(type("Half", (), {"now": time.time, "monotonic": time.monotonic})()),
    ):
        pass
