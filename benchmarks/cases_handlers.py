"""Error handlers: what a retry + breaker chain costs on the success path, the breaker's fast
fail while open, and the same jobs done by tenacity and pybreaker (``pip install -e .[bench]``).

Ratios of the form "ours / theirs" are below 1 when CallPyBack is faster.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Optional

from _harness import Case, atarget, compare, direct, target

from callpyback import CallPyBack, on_completion
from callpyback.handlers import (
    CircuitBreakerHandler,
    CircuitOpenError,
    RetryHandler,
    TimeoutHandler,
)

_names = itertools.count()


def _pipeline(handlers: list[Any]) -> Callable[..., Any]:
    """The same pipeline (one completion observer) with or without error handlers.

    The observer asks for the duration, as a metrics observer would: a pipeline with handlers
    always reads the clock (a retry's max_time needs it), and one whose observers ask for no
    duration skips it, which would measure that saving rather than the handlers' cost.
    """
    return CallPyBack([on_completion(lambda execution_time: None)], error_handlers=handlers)(target)


def _chain() -> list[Any]:
    return [RetryHandler(3), CircuitBreakerHandler(f"bench-{next(_names)}", failure_threshold=5)]


def _pair(ours: Callable[[], Any], theirs: Callable[[], Any]) -> list[float]:
    return compare(ours, theirs, rounds=9).ratios


def success_with_vs_without_handlers() -> Callable[[], list[float]]:
    return lambda: _pair(direct(_pipeline(_chain()), 1), direct(_pipeline([]), 1))


class _Passive:
    """A handler with no hooks that never decides: isolates the core's handler-path cost."""

    def handle(self, exception: BaseException, context: Any) -> None:
        return None


def success_passive_handler() -> Callable[[], list[float]]:
    return lambda: _pair(direct(_pipeline([_Passive()]), 1), direct(_pipeline([]), 1))


def _open_breaker_op() -> Callable[[], Any]:
    handler = CircuitBreakerHandler(
        f"bench-{next(_names)}", failure_threshold=1, recovery_timeout=3600
    )
    f = CallPyBack(error_handlers=[handler])(target)
    handler.breaker.open(f.__callpyback__.time_source)  # type: ignore[attr-defined]

    def op() -> Any:
        try:
            f(1)
        except CircuitOpenError:
            pass

    return op


def timeout_sync() -> Callable[[], Any]:
    return direct(CallPyBack(error_handlers=[TimeoutHandler(5)])(target), 1)


def timeout_async() -> Callable[[], Any]:
    return direct(CallPyBack(error_handlers=[TimeoutHandler(5)])(atarget), 1, kind="async")


def _missing(case: Case, package: str) -> Callable[[], list[float]]:
    case.note = f"{package} not installed (pip install -e '.[bench]')"
    return lambda: [float("nan")]


def vs_pybreaker_success(case: Case) -> Callable[[], list[float]]:
    try:
        import pybreaker
    except ImportError:
        return _missing(case, "pybreaker")
    theirs = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)(target)
    ours = CallPyBack(error_handlers=[CircuitBreakerHandler(f"bench-{next(_names)}")])(target)
    return lambda: _pair(direct(ours, 1), direct(theirs, 1))


def vs_pybreaker_open(case: Case) -> Callable[[], list[float]]:
    try:
        import pybreaker
    except ImportError:
        return _missing(case, "pybreaker")
    breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=3600)
    protected = breaker(target)
    breaker.open()

    def theirs() -> Any:
        try:
            protected(1)
        except pybreaker.CircuitBreakerError:
            pass

    return lambda: _pair(_open_breaker_op(), theirs)


def vs_tenacity_success(case: Case) -> Callable[[], list[float]]:
    try:
        import tenacity
    except ImportError:
        return _missing(case, "tenacity")
    theirs = tenacity.retry(stop=tenacity.stop_after_attempt(3))(target)
    ours = CallPyBack(error_handlers=[RetryHandler(3)])(target)
    return lambda: _pair(direct(ours, 1), direct(theirs, 1))


def _flaky() -> Callable[[int], int]:
    """Fails twice, then succeeds; and again."""
    counter = itertools.count()

    def flaky(x: int) -> int:
        if next(counter) % 3 != 2:
            raise ConnectionError("transient")
        return x

    return flaky


def vs_tenacity_two_retries(case: Case) -> Callable[[], list[float]]:
    try:
        import tenacity
    except ImportError:
        return _missing(case, "tenacity")
    # No waiting on either side: this measures the retry machinery, not sleep().
    theirs = tenacity.retry(
        stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_none(), sleep=lambda s: None
    )(_flaky())

    class NoSleep:
        now = staticmethod(lambda: 0.0)
        monotonic = staticmethod(lambda: 0.0)
        sleep = staticmethod(lambda s: None)

    ours = CallPyBack(error_handlers=[RetryHandler(3, backoff=0)], time_source=NoSleep())(_flaky())
    return lambda: _pair(direct(ours, 1), direct(theirs, 1))


def _case(
    name: str,
    build: Callable[[Case], Callable[[], Any]],
    note: str,
    kind: str = "custom",
    target_ratio: Optional[float] = None,
) -> Case:
    case = Case(
        name, lambda: build(case), kind=kind, group="handlers", note=note, target=target_ratio
    )
    return case


def retry_alone() -> Callable[[], Any]:
    return direct(CallPyBack(error_handlers=[RetryHandler(3)])(target), 1)


CASES = [
    Case(
        "RetryHandler(3) alone, success path",
        retry_alone,
        group="handlers",
        target=1.1,
        note="vs passthrough: nothing to time until a call fails",
    ),
    Case(
        "retry+breaker chain, success path / same pipeline without handlers",
        success_with_vs_without_handlers,
        kind="custom",
        group="handlers",
        target=1.3,
        note="one completion observer on both sides",
    ),
    Case(
        "one passive handler (no hooks), success / same pipeline without handlers",
        success_passive_handler,
        kind="custom",
        group="handlers",
        note="the core's handler path alone",
    ),
    Case(
        "breaker open: fast fail (CircuitOpenError caught)",
        _open_breaker_op,
        group="handlers",
        note="vs passthrough",
    ),
    Case(
        "timeout(5), sync success (worker-thread hand-off)",
        timeout_sync,
        group="handlers",
        note="vs passthrough",
    ),
    Case(
        "timeout(5), coroutine success (asyncio.timeout, 3.11+)",
        timeout_async,
        kind="async",
        baseline="async",
        group="handlers",
        note="vs async passthrough",
    ),
    _case("breaker success / pybreaker success", vs_pybreaker_success, "ours / theirs"),
    _case("breaker open fast fail / pybreaker open", vs_pybreaker_open, "ours / theirs"),
    _case("retry(3) success / tenacity success", vs_tenacity_success, "ours / theirs"),
    _case(
        "retry, 2 failures then success / tenacity",
        vs_tenacity_two_retries,
        "ours / theirs, no sleep",
    ),
]
