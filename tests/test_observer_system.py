"""Observers: injection, subscription, ordering, isolation, disabling, weak refs, re-entrancy."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest

from callpyback import (
    BaseObserver,
    CallPyBack,
    ConfigurationError,
    ExecutionResult,
    MockTimeSource,
    ObserverDisabledWarning,
    Phase,
    create_callback_observer,
    on_call,
    on_completion,
    on_error,
    on_failure,
    on_success,
)
from callpyback import (
    ExecutionState as S,
)


def test_injection_by_parameter_name(clock: MockTimeSource) -> None:
    """Each documented name receives its value; defaults of unknown names are kept."""
    got: dict[str, Any] = {}

    def cb(
        context,
        function_signature,
        arguments,
        state,
        result,
        local_variables,
        metadata,
        timestamp,
        execution_time,
        exception,
        value,
        args,
        kwargs,
        function,
        attempt,
        i=7,
    ):
        got.update(locals())

    @CallPyBack(observers=[on_success(cb)], time_source=clock)
    def f(a: int, b: int = 1) -> int:
        clock.advance(0.25)
        return a + b

    assert f(2, b=3) == 5
    assert got["state"] is S.POST_SUCCESS
    assert got["value"] == 5 and got["exception"] is None
    assert isinstance(got["result"], ExecutionResult) and got["result"].value == 5
    assert got["execution_time"] == pytest.approx(0.25)
    assert got["timestamp"] == pytest.approx(1_000_000.0)
    # what the function is called with: every positional parameter by position, defaults applied
    assert got["args"] == (2, 3) and got["kwargs"] == {}
    assert dict(got["arguments"]) == {"a": 2, "b": 3}
    assert got["function"] is f.__wrapped__ and got["attempt"] == 1
    assert list(got["function_signature"].parameters) == ["a", "b"]
    assert got["context"].function_info.name == "f" and got["i"] == 7
    assert dict(got["local_variables"]) == {} and got["metadata"] == {}


def test_kwargs_receives_everything() -> None:
    """A ``**kwargs`` callback gets every injectable name."""
    got: dict[str, Any] = {}
    CallPyBack(observers=[on_failure(lambda **kw: got.update(kw))])(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        CallPyBack(observers=[on_failure(lambda **kw: got.update(kw))])(lambda: 1 / 0)()
    assert isinstance(got["exception"], ZeroDivisionError)
    assert got["state"] is S.POST_FAILURE
    assert {"context", "value", "args", "function", "execution_time"} <= set(got)


def test_unknown_parameter_is_rejected_at_creation() -> None:
    """An unknown name without default fails when the observer is made, naming it and the fix."""

    def my_callback(reslt):
        pass

    with pytest.raises(ConfigurationError) as info:
        on_success(my_callback)
    text = str(info.value)
    assert "my_callback" in text and "test_observer_system.py:" in text
    assert "'reslt'" in text and "Did you mean 'result'?" in text
    assert "Allowed names: context," in text


def test_factories_subscribe_to_their_state() -> None:
    """on_call/on_success/on_failure/on_completion/on_error each see only their state."""
    log: list[str] = []
    deco = CallPyBack(
        observers=[
            on_call(lambda: log.append("call")),
            on_success(lambda: log.append("success")),
            on_failure(lambda: log.append("failure")),
            on_completion(lambda: log.append("completion")),
            on_error(lambda: log.append("error")),
        ]
    )
    deco(lambda: None)()
    assert log == ["call", "success", "completion"]
    log.clear()
    with pytest.raises(ZeroDivisionError):
        deco(lambda: 1 / 0)()
    assert log == ["call", "failure", "completion"]
    log.clear()

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        deco(interrupted)()
    assert log == ["call", "error"]


def test_states_phases_and_names() -> None:
    """States and phases can be given as enums or names; bad ones are explained."""
    seen: list[S] = []
    obs = create_callback_observer(
        lambda state: seen.append(state), phases=["before_call", Phase.AFTER_SUCCESS]
    )
    CallPyBack(observers=[obs])(lambda: 1)()
    assert seen == [S.PRE_EXECUTION, S.POST_SUCCESS]
    with pytest.raises(ConfigurationError, match="did you mean 'AFTER_SUCCESS'"):
        create_callback_observer(lambda: None, phases=["after_sucess"])
    with pytest.raises(ConfigurationError, match="internal and never notified"):
        create_callback_observer(lambda: None, states=[S.EXECUTING])


def test_base_observer_without_states_gets_everything() -> None:
    """A BaseObserver that declares nothing receives every notified state."""

    class All(BaseObserver):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[S] = []

        def update(self, context: Any) -> None:
            self.seen.append(context.state)

    obs = All()
    CallPyBack(observers=[obs])(lambda: 1)()
    assert obs.seen == [S.PRE_EXECUTION, S.POST_SUCCESS, S.COMPLETED]


def test_priority_then_registration_order() -> None:
    """Higher priority runs first; equal priorities run in registration order."""
    order: list[str] = []
    deco = CallPyBack(
        observers=[
            on_success(lambda: order.append("a0"), priority=0),
            on_success(lambda: order.append("b5"), priority=5),
            on_success(lambda: order.append("c0"), priority=0),
            on_success(lambda: order.append("d-1"), priority=-1),
        ]
    )
    deco.add_observer(on_success(lambda: order.append("e5"), priority=5))
    deco(lambda: None)()
    assert order == ["b5", "e5", "a0", "c0", "d-1"]


def test_failing_observer_is_isolated_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """A raising observer does not change the call; it is logged once per streak, and counted."""
    later: list[int] = []

    def bad(value: int) -> None:
        raise RuntimeError("observer bug")

    deco = CallPyBack(
        observers=[on_success(bad, name="bad"), on_success(lambda value: later.append(value))],
        max_observer_failures=None,
    )
    f = deco(lambda x: x * 2)
    with caplog.at_level(logging.ERROR, logger="callpyback"):
        assert [f(i) for i in range(3)] == [0, 2, 4]
    assert later == [0, 2, 4]
    records = [r for r in caplog.records if "observer 'bad' raised" in r.getMessage()]
    assert len(records) == 1 and records[0].exc_info is not None
    reg = next(r for r in deco.registrations if r.name == "bad")
    assert reg.failures == 3 and reg.total_failures == 3


def test_observer_failures_on_failure_path_keep_the_original_exception() -> None:
    """An observer raising on POST_FAILURE never replaces the function's exception."""

    def bad() -> None:
        raise RuntimeError("observer bug")

    f = CallPyBack(observers=[on_failure(bad), on_completion(bad)], max_observer_failures=None)(
        lambda: 1 / 0
    )
    with pytest.raises(ZeroDivisionError):
        f()


def test_observer_disabled_after_consecutive_failures_and_reenabled() -> None:
    """After N consecutive failures an observer is disabled with a warning; it can be re-enabled."""
    calls: list[int] = []
    fail = {"on": True}

    def flaky(value: int) -> None:
        calls.append(value)
        if fail["on"]:
            raise RuntimeError("down")

    obs = on_success(flaky, name="flaky")
    deco = CallPyBack(observers=[obs], max_observer_failures=3)
    f = deco(lambda x: x)
    with pytest.warns(ObserverDisabledWarning, match="'flaky' failed 3 times in a row"):
        for i in range(5):
            f(i)
    assert calls == [0, 1, 2]  # disabled after the third
    fail["on"] = False
    assert deco.enable_observer(obs)
    f(9)
    assert calls == [0, 1, 2, 9]


def test_a_success_resets_the_consecutive_count() -> None:
    """Only consecutive failures count towards disabling."""
    pattern = iter([True, True, False, True, True, False, True, True])

    def sometimes(value: int) -> None:
        if next(pattern):
            raise RuntimeError("x")

    obs = on_success(sometimes)
    deco = CallPyBack(observers=[obs], max_observer_failures=3)
    f = deco(lambda x: x)
    for i in range(8):
        f(i)
    assert not deco.registrations[0].disabled


def test_weak_observer_disappears_when_collected() -> None:
    """weak=True holds the observer weakly; once collected it is no longer dispatched."""
    seen: list[int] = []

    class Obs:
        def update(self, context: Any) -> None:
            seen.append(context.value)

    deco = CallPyBack()
    f = deco(lambda x: x)
    obs = Obs()
    deco.add_observer(obs, phases=["after_success"], weak=True)
    f(1)
    del obs
    gc.collect()
    f(2)
    assert seen == [1]
    assert deco.registrations == ()


def test_weak_requires_weakref_support() -> None:
    """An observer that cannot be weakly referenced gets a clear error."""

    class Slotted:
        __slots__ = ()

        def update(self, context: Any) -> None: ...

    with pytest.raises(ConfigurationError, match="does not support weak references"):
        CallPyBack().add_observer(Slotted(), weak=True)


def test_add_and_remove_at_runtime() -> None:
    """Observers added or removed later apply to the next calls."""
    seen: list[int] = []
    deco = CallPyBack()
    f = deco(lambda x: x)
    f(0)
    obs = deco.add_observer(on_success(lambda value: seen.append(value)))
    f(1)
    assert deco.remove_observer(obs) is True
    assert deco.remove_observer(obs) is False
    f(2)
    assert seen == [1]


def test_plain_callable_as_observer_receives_every_state() -> None:
    """A plain callable in observers= is a callback observer for every notified state."""
    seen: list[S] = []
    CallPyBack(observers=[lambda state: seen.append(state)])(lambda: 1)()
    assert seen == [S.PRE_EXECUTION, S.POST_SUCCESS, S.COMPLETED]


def test_reentrancy_guard() -> None:
    """A wrapped function called from an observer is not observed again."""
    calls: list[str] = []
    deco = CallPyBack()

    @deco
    def helper() -> str:
        return "h"

    @deco
    def main() -> str:
        return "m"

    deco.add_observer(on_success(lambda function: calls.append(function.__name__) or helper()))
    assert main() == "m"
    assert calls == ["main"]  # helper() ran inside the observer, unobserved
    assert helper() == "h"
    assert calls == ["main", "helper"]


def test_metadata_carries_state_from_call_to_completion() -> None:
    """One observer can open something before the call and close it at completion, per call."""
    spans: list[tuple[int, str]] = []
    deco = CallPyBack(
        observers=[
            on_call(lambda metadata, args: metadata.__setitem__("span", args[0])),
            on_completion(lambda metadata, state: spans.append((metadata["span"], state.name))),
        ]
    )
    f = deco(lambda x: x)
    f(1)
    f(2)
    assert spans == [(1, "COMPLETED"), (2, "COMPLETED")]


def test_async_observers_are_awaited_on_async_paths() -> None:
    """An async def observer is awaited on coroutine paths, in order."""
    seen: list[str] = []

    async def slow(value: int) -> None:
        await asyncio.sleep(0)
        seen.append(f"async {value}")

    deco = CallPyBack(
        observers=[
            on_success(slow, priority=1),
            on_success(lambda value: seen.append(f"sync {value}")),
        ]
    )

    @deco
    async def f(x: int) -> int:
        return x

    assert asyncio.run(f(3)) == 3
    assert seen == ["async 3", "sync 3"]


def test_async_observer_on_sync_function_is_an_error() -> None:
    """An async observer cannot run on a sync call path (unless in the background)."""

    async def obs(value: int) -> None: ...

    deco = CallPyBack(observers=[on_success(obs)])
    with pytest.raises(ConfigurationError, match="async observers run on coroutine paths only"):
        deco(lambda: 1)
    sync_deco = CallPyBack()
    sync_deco(lambda: 1)
    with pytest.raises(ConfigurationError, match="background=True"):
        sync_deco.add_observer(on_success(obs))


def test_context_is_read_only() -> None:
    """Observers cannot rebind the context's public fields."""
    errors: list[Exception] = []

    def meddle(context: Any) -> None:
        for name in ("state", "result", "value", "arguments", "metadata"):
            try:
                setattr(context, name, None)
            except AttributeError as exc:
                errors.append(exc)

    assert CallPyBack(observers=[on_success(meddle)])(lambda: 4)() == 4
    assert len(errors) == 5


def test_snapshot_is_frozen() -> None:
    """snapshot() keeps the state and metadata as they were."""
    snaps: list[Any] = []

    def take(context: Any) -> None:
        context.metadata["k"] = 1
        snaps.append(context.snapshot())

    deco = CallPyBack(observers=[on_call(take)])
    deco(lambda: 2)()
    snap = snaps[0]
    assert snap.state is S.PRE_EXECUTION and snap.metadata == {"k": 1} and snap.result is None
    assert isinstance(snap.timestamp, float)
