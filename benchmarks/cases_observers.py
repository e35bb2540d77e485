"""Built-in observers, background dispatch and variable extraction (group "observers")."""

from __future__ import annotations

import logging
from typing import Any, Callable

from _harness import Case, compare, direct, target

from callpyback import (
    BaseObserver,
    CallPyBack,
    ExecutionState,
    LoggingObserver,
    MetricsObserver,
    TimingObserver,
    on_completion,
)


class _Noop(BaseObserver):
    """The floor for any observer that takes the context: the core's own cost."""

    def __init__(self, *states: ExecutionState) -> None:
        super().__init__(states=states)

    def update(self, context: Any) -> None:
        return None


def noop_completed() -> Callable[[], Any]:
    return direct(CallPyBack(observers=[_Noop(ExecutionState.COMPLETED)])(target), 1)


def noop_pre_completed() -> Callable[[], Any]:
    obs = _Noop(ExecutionState.PRE_EXECUTION, ExecutionState.COMPLETED)
    return direct(CallPyBack(observers=[obs])(target), 1)


def metrics() -> Callable[[], Any]:
    return direct(CallPyBack(observers=[MetricsObserver()])(target), 1)


def metrics_no_in_flight() -> Callable[[], Any]:
    return direct(CallPyBack(observers=[MetricsObserver(track_in_flight=False)])(target), 1)


def logging_disabled() -> Callable[[], Any]:
    logger = logging.getLogger("bench.disabled")
    logger.setLevel(logging.WARNING)  # successes log at INFO: disabled
    return direct(CallPyBack(observers=[LoggingObserver(logger)])(target), 1)


def timing() -> Callable[[], Any]:
    return direct(CallPyBack(observers=[TimingObserver(threshold=10.0)])(target), 1)


def background() -> Callable[[], Any]:
    from callpyback import _background

    # A large queue so the caller-side cost is measured, not the overflow path.
    _background.configure(maxsize=1_000_000)
    obs = on_completion(lambda value: None, background=True)
    return direct(CallPyBack(observers=[obs])(target), 1)


def _pair(with_names: Callable[..., Any], without: Callable[..., Any]) -> list[float]:
    return compare(direct(with_names, 1), direct(without, 1), rounds=9).ratios


def extraction_cost() -> Callable[[], list[float]]:
    """variable_names=["x"] vs the same decorator without it."""

    def f(v: int) -> int:
        x = v * 2
        return x

    def g(v: int) -> int:
        x = v * 2
        return x

    obs = on_completion(lambda local_variables: None)
    with_names = CallPyBack(observers=[obs], variable_names=["x"])(f)
    without = CallPyBack(observers=[obs])(g)
    return lambda: _pair(with_names, without)


def no_names_cost() -> Callable[[], list[float]]:
    """A function without variable_names, while another one uses extraction, vs. a process
    where extraction was never used (same observer): ~1.0 means zero cost."""

    def busy(v: int) -> int:
        x = v
        return x

    def plain(v: int) -> int:
        return v

    def plain2(v: int) -> int:
        return v

    obs = on_completion(lambda value: None)
    user = CallPyBack(observers=[obs], variable_names=["x"])(busy)
    after = CallPyBack(observers=[obs])(plain)
    reference = CallPyBack(observers=[obs])(plain2)

    def measure() -> list[float]:
        user(1)  # extraction has been used in this process
        return _pair(after, reference)

    return measure


CASES = [
    Case("floor: no-op BaseObserver (COMPLETED)", noop_completed, group="observers"),
    Case(
        "floor: no-op BaseObserver (PRE_EXECUTION + COMPLETED)",
        noop_pre_completed,
        group="observers",
    ),
    Case("MetricsObserver", metrics, target=3.5, group="observers"),
    Case("MetricsObserver(track_in_flight=False)", metrics_no_in_flight, group="observers"),
    Case("LoggingObserver, level disabled", logging_disabled, target=2.0, group="observers"),
    Case("TimingObserver", timing, target=3.5, group="observers"),
    Case(
        "variable_names vs same decorator without",
        extraction_cost,
        kind="custom",
        target=6,
        group="observers",
        note="ratio to its own no-extraction cost",
    ),
    Case(
        "no variable_names while others extract",
        no_names_cost,
        kind="custom",
        target=1.1,
        group="observers",
        note="ratio to an identical decorator",
    ),
    # Last: its worker keeps draining the queue after the measurement and would slow the others.
    Case(
        "background observer, caller side",
        background,
        target=4,
        group="observers",
        note="snapshot + enqueue; the worker competes for the GIL",
    ),
]
