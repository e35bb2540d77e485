"""Defects adversarial tests found in the previous engine; each test failed on it."""

from __future__ import annotations

import asyncio
import gc
import sys
import types
import weakref
from typing import Any, List

import pytest

import callpyback as cpb
from callpyback import (
    CallPyBack,
    ConfigurationError,
    MetricsObserver,
    MockTimeSource,
    TimingObserver,
    _engine,
    on_call,
    on_completion,
    on_success,
)
from callpyback.handlers import CircuitBreakerHandler, CircuitOpenError


class LimitExceeded(Exception):
    pass


class Limit:
    """A guard handler: refuses transfers above a limit before they run."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def before_attempt(self, context: Any) -> None:
        if context.arguments["amount"] > self.limit:
            raise LimitExceeded(context.arguments["amount"])

    def handle(self, exception: BaseException, context: Any) -> None:
        return None


def audited_transfer() -> Any:
    paid: List[int] = []
    audit: List[Any] = []

    @CallPyBack(
        observers=[
            on_completion(lambda arguments, outcome: audit.append((arguments["amount"], outcome)))
        ],
        error_handlers=[Limit(1_000)],
    )
    def transfer(amount: int) -> int:
        paid.append(amount)
        return amount

    return transfer, paid, audit


def test_a_call_from_inside_an_observer_keeps_its_handlers_and_other_observers() -> None:
    """The re-entrancy guard suppresses observers observing themselves, nothing else: a
    transfer made by another function's observer is still limited, and still audited."""
    transfer, paid, audit = audited_transfer()
    refused: List[BaseException] = []

    def settle() -> None:
        try:
            transfer(50_000)
        except LimitExceeded as exc:
            refused.append(exc)

    @CallPyBack(observers=[on_completion(settle)])
    def close_day() -> str:
        return "closed"

    assert close_day() == "closed"
    assert paid == [] and len(refused) == 1
    assert audit == [(50_000, "failure")]


def test_default_return_applies_to_a_call_made_by_an_observer() -> None:
    """Recovery is a handler decision: it applies inside observers too."""
    got: List[Any] = []
    risky = CallPyBack(default_return="fallback")(lambda: 1 / 0)
    CallPyBack(observers=[on_success(lambda: got.append(risky()))])(lambda: 1)()
    assert got == ["fallback"]


def test_a_background_observer_calling_a_guarded_function_is_limited_and_audited() -> None:
    transfer, paid, audit = audited_transfer()
    refused: List[BaseException] = []

    def settle() -> None:
        try:
            transfer(50_000)
        except LimitExceeded as exc:
            refused.append(exc)

    CallPyBack(observers=[on_completion(settle, background=True)])(lambda: 1)()
    assert cpb.flush(10)
    assert paid == [] and len(refused) == 1 and audit == [(50_000, "failure")]


def test_the_guard_follows_asyncio_to_thread() -> None:
    """An async observer that runs the observed coroutine again in a worker thread
    (``asyncio.to_thread``, a copied context, a new event loop there) does not observe itself:
    it sees the outer call once, not a chain 50 deep."""
    seen: List[int] = []

    async def observer(context: Any) -> None:
        depth = context.arguments["depth"]
        seen.append(depth)
        if depth < 60:
            await asyncio.to_thread(asyncio.run, work(depth + 1))

    @CallPyBack(observers=[on_completion(observer)])
    async def work(depth: int) -> int:
        return depth

    assert asyncio.run(work(0)) == 0
    assert seen == [0]


class Custom(BaseException):
    """A BaseException that is neither KeyboardInterrupt nor SystemExit."""


@pytest.mark.parametrize("raised", [Custom("odd"), GeneratorExit()])
def test_an_odd_base_exception_from_an_observer_is_isolated(raised: BaseException) -> None:
    def bad() -> None:
        raise raised

    f = CallPyBack(observers=[on_success(bad)])(lambda: 42)
    assert f() == 42


@pytest.mark.parametrize("phase", ["on_call", "on_success"])
def test_keyboard_interrupt_from_an_observer_propagates_after_the_bookkeeping(phase: str) -> None:
    """KeyboardInterrupt/SystemExit from an observer propagate, but MetricsObserver still
    counts the call and never keeps it in flight."""
    metrics = MetricsObserver()

    def stop() -> None:
        raise KeyboardInterrupt

    factory = on_call if phase == "on_call" else on_success
    f = CallPyBack(observers=[metrics, factory(stop)])(lambda: 1)
    with pytest.raises(KeyboardInterrupt):
        f()
    (stats,) = metrics.get_metrics().values()
    assert stats["in_flight"] == 0 and stats["calls"] == 1
    assert stats["interrupted" if phase == "on_call" else "successes"] == 1


def test_system_exit_from_an_observer_propagates_after_the_bookkeeping() -> None:
    metrics = MetricsObserver()

    def leave() -> None:
        raise SystemExit(3)

    f = CallPyBack(observers=[on_success(leave), metrics])(lambda: 1)
    with pytest.raises(SystemExit):
        f()
    (stats,) = metrics.get_metrics().values()
    assert stats["in_flight"] == 0 and stats["successes"] == 1


def test_the_function_s_recursion_error_is_its_own_and_the_books_balance() -> None:
    """Near the recursion limit the failure path never raises an exception of its own: the
    caller gets the function's RecursionError, and no call is left in flight."""
    metrics = MetricsObserver()

    @CallPyBack(observers=[metrics])
    def deep(n: int) -> int:
        return deep(n + 1)

    with pytest.raises(RecursionError) as info:
        deep(0)
    frames = [tb.tb_frame.f_code.co_filename for tb in _tb(info.value.__traceback__)]
    if not _engine._Checking.on:  # checking mode runs a helper per transition, by design
        assert not any("callpyback/_engine.py" in f for f in frames)  # not raised by our helpers
    gc.collect()
    (stats,) = metrics.get_metrics().values()
    assert stats["in_flight"] == 0


_UNDER_A_TRACER = """
import sys
from callpyback import CallPyBack, MetricsObserver
metrics = MetricsObserver()

@CallPyBack(observers=[metrics])
def deep(n):
    return deep(n + 1)

try:
    deep(0)
except RecursionError:
    pass
(stats,) = metrics.get_metrics().values()
print(stats["in_flight"], stats["calls"] == stats["failures"] > 0)
"""


def test_the_books_balance_at_the_recursion_limit_under_a_c_tracer(tmp_path: Any) -> None:
    """coverage's C tracer makes the failure step's frame fail as it starts, before its own
    handler: that step must be deferred whole, not taken for one that ran part-way."""
    import subprocess

    script = tmp_path / "deep.py"
    script.write_text(_UNDER_A_TRACER)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "coverage",
            "run",
            "--branch",
            "--data-file",
            str(tmp_path / "cov"),
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "True"]


def _tb(tb: Any) -> List[Any]:
    out = []
    while tb is not None:
        out.append(tb)
        tb = tb.tb_next
    return out


def test_observers_cannot_change_what_the_function_is_called_with() -> None:
    """What observers are given never aliases the call: a kwargs update is refused (and
    isolated), so the function and its retry both get the caller's amount."""
    received: List[int] = []
    attempts = iter([ConnectionError("flaky"), None])

    @CallPyBack(
        observers=[on_call(lambda kwargs: kwargs.update(amount=0))],  # type: ignore[attr-defined]
        error_handlers=[cpb.RetryHandler(2, backoff=0, exceptions=[ConnectionError])],
        time_source=MockTimeSource(),
    )
    def pay(*, amount: int) -> int:
        received.append(amount)
        step = next(attempts)
        if step is not None:
            raise step
        return amount

    assert pay(amount=100) == 100
    assert received == [100, 100]


def test_arguments_and_kwargs_are_read_only_views() -> None:
    seen: List[Any] = []

    def look(context: Any) -> None:
        for view in (context.arguments, context.kwargs):
            try:
                view["x"] = 0  # type: ignore[index]
            except TypeError:
                seen.append("refused")

    assert CallPyBack(observers=[look])(lambda *, x: x)(x=5) == 5
    assert seen == ["refused", "refused"] * 3  # PRE, POST_SUCCESS, COMPLETED


def test_function_info_cannot_be_replaced_by_an_observer() -> None:
    later: List[Any] = []

    def vandal(context: Any) -> None:
        with pytest.raises(AttributeError):
            context.function_info = None

    f = CallPyBack(
        observers=[on_call(vandal), on_success(lambda function_info: later.append(function_info))]
    )(lambda: 1)
    f()
    assert later and later[0] is not None


@pytest.mark.parametrize("make", [MetricsObserver, lambda: TimingObserver(1.0)])
def test_weak_registrations_release_built_in_observers(make: Any) -> None:
    observer = make()
    deco = CallPyBack()
    deco.add_observer(observer, weak=True)
    f = deco(lambda: 1)
    f()
    ref = weakref.ref(observer)
    del observer
    gc.collect()
    assert ref() is None
    assert f() == 1 and deco.observers == []


def test_decorating_a_class_is_refused_clearly() -> None:
    class Shop:
        pass

    with pytest.raises(ConfigurationError, match="not classes"):
        CallPyBack()(Shop)


def test_a_types_coroutine_generator_stays_awaitable() -> None:
    seen: List[str] = []

    @CallPyBack(observers=[on_completion(lambda outcome: seen.append(outcome))])
    @types.coroutine
    def legacy() -> Any:
        yield
        return "done"

    async def main() -> Any:
        return await legacy()

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(main()) == "done"
    finally:
        loop.close()
    assert seen == ["success"]


class Backwards(MockTimeSource):
    """A time source whose monotonic clock is set back an hour after the first reading."""

    def __init__(self) -> None:
        super().__init__()
        self.jumped = False

    def jump_back(self) -> None:
        with self._lock:
            self._mono -= 3600.0


def test_durations_are_never_negative_when_the_clock_goes_backwards() -> None:
    clock = Backwards()
    times: List[float] = []

    @CallPyBack(
        observers=[on_success(lambda execution_time: times.append(execution_time))],
        time_source=clock,
    )
    def f() -> int:
        clock.jump_back()
        return 1

    f()
    assert times == [0.0]


def test_a_breaker_does_not_stay_open_when_the_clock_goes_backwards() -> None:
    clock = Backwards()
    breaker = CircuitBreakerHandler(
        "backwards-clock", failure_threshold=1, recovery_timeout=5, time_source=clock
    )
    f = CallPyBack(error_handlers=[breaker], time_source=clock)(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        f()
    with pytest.raises(CircuitOpenError):
        f()
    clock.jump_back()  # an hour back: the recovery timeout counts from here, not from then
    with pytest.raises(CircuitOpenError):
        f()
    clock.advance(5)
    with pytest.raises(ZeroDivisionError):  # half-open: the trial ran
        f()
    breaker.reset()


def test_one_observer_instead_of_a_list_is_accepted() -> None:
    got: List[int] = []
    f = CallPyBack(observers=on_success(lambda value: got.append(value)))(lambda: 3)
    assert f() == 3 and got == [3]


def test_a_non_iterable_observers_argument_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="observers must be a list"):
        CallPyBack(observers=42)


def test_the_core_imports_neither_observers_nor_handlers() -> None:
    """Callback injection is core behaviour: the engine modules need no observer module."""
    import subprocess

    code = (
        "import sys; import callpyback._decorator, callpyback._engine, callpyback._pipeline; "
        "print(sorted(m for m in sys.modules if m.startswith(('callpyback.observers', "
        "'callpyback.handlers'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    # importing the package facade pulls observers' base module (it re-exports on_success...)
    assert "callpyback.handlers" not in out
    assert "callpyback.observers.metrics" not in out
