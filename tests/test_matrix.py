"""Callable shapes x outcomes: observer order, states, results and what the caller sees."""

from __future__ import annotations

import asyncio
import traceback
from typing import Any, Callable, List, Tuple

import pytest

from callpyback import CallPyBack, ExecutionFailure, ExecutionResult, _engine
from callpyback import ExecutionState as S
from callpyback.states import is_valid_path

INIT, PRE, EXEC, OK, FAIL, DONE, ERROR = (
    S.INITIALIZED,
    S.PRE_EXECUTION,
    S.EXECUTING,
    S.POST_SUCCESS,
    S.POST_FAILURE,
    S.COMPLETED,
    S.ERROR,
)


@pytest.fixture(autouse=True)
def checking() -> Any:
    """Every wrapper in this module checks each transition it takes against TRANSITIONS and
    records it; the tests compare the path the engine really took (never one rebuilt here)."""
    _engine.checking(True)
    _engine.VIOLATIONS.clear()
    yield
    _engine.checking(False)
    assert _engine.VIOLATIONS == []


class Interrupt(KeyboardInterrupt):
    """A BaseException that is not an Exception (a KeyboardInterrupt we can tell apart)."""


class Boom(ValueError):
    pass


class Recorder:
    def __init__(self) -> None:
        self.events: List[Tuple[S, Any]] = []
        self.path: List[S] = []

    def update(self, context: Any) -> None:
        self.events.append((context.state, context.result))
        if context.state in (DONE, ERROR):
            self.path = list(context.path)  # the states the engine took, internal ones too

    @property
    def seen(self) -> List[S]:
        return [s for s, _ in self.events]


def body(outcome: str, x: int) -> int:
    if outcome == "raise":
        raise Boom(f"bad {x}")
    if outcome == "interrupt":
        raise Interrupt()
    return x * 2


def build(shape: str, outcome: str, deco: CallPyBack) -> Callable[[int], Any]:
    """A driver calling the decorated shape and returning its result."""
    if shape == "function":
        f = deco(lambda x: body(outcome, x))
        return f
    if shape in (
        "method",
        "classmethod_above",
        "classmethod_below",
        "staticmethod_above",
        "staticmethod_below",
    ):

        class K:
            @deco
            def method(self, x: int) -> int:
                return body(outcome, x)

            @deco
            @classmethod
            def cm_above(cls, x: int) -> int:
                return body(outcome, x)

            @classmethod
            @deco
            def cm_below(cls, x: int) -> int:
                return body(outcome, x)

            @deco
            @staticmethod
            def sm_above(x: int) -> int:
                return body(outcome, x)

            @staticmethod
            @deco
            def sm_below(x: int) -> int:
                return body(outcome, x)

        return {
            "method": K().method,
            "classmethod_above": K.cm_above,
            "classmethod_below": K.cm_below,
            "staticmethod_above": K.sm_above,
            "staticmethod_below": K.sm_below,
        }[shape]
    if shape == "callable_object":

        class Callable_:
            def __call__(self, x: int) -> int:
                return body(outcome, x)

        return deco(Callable_())
    if shape == "coroutine":

        @deco
        async def co(x: int) -> int:
            await asyncio.sleep(0)
            return body(outcome, x)

        return lambda x: asyncio.run(co(x))
    if shape == "generator":

        @deco
        def gen(x: int) -> Any:
            yield x
            return body(outcome, x)

        def drive(x: int) -> Any:
            g = gen(x)
            assert next(g) == x
            try:
                next(g)
            except StopIteration as stop:
                return stop.value
            raise AssertionError("generator did not finish")

        return drive
    if shape == "async_generator":

        @deco
        async def agen(x: int) -> Any:
            yield x
            body(outcome, x)
            yield x * 2

        async def adrive(x: int) -> Any:
            return [item async for item in agen(x)][-1]

        return lambda x: asyncio.run(adrive(x))
    raise AssertionError(shape)


SHAPES = [
    "function",
    "method",
    "classmethod_above",
    "classmethod_below",
    "staticmethod_above",
    "staticmethod_below",
    "callable_object",
    "coroutine",
    "generator",
    "async_generator",
]


@pytest.mark.parametrize("shape", SHAPES)
def test_return(shape: str) -> None:
    """A return goes PRE_EXECUTION -> POST_SUCCESS -> COMPLETED with the value."""
    rec = Recorder()
    call = build(shape, "return", CallPyBack(observers=[rec]))
    assert call(21) == 42
    assert rec.seen == [S.PRE_EXECUTION, S.POST_SUCCESS, S.COMPLETED]
    assert rec.path == [INIT, PRE, EXEC, OK, DONE] and is_valid_path(rec.path)
    _, result = rec.events[1]
    assert isinstance(result, ExecutionResult) and not result.recovered
    if shape != "async_generator":  # an async generator has no return value
        assert result.value == 42
    assert result.execution_time >= 0


@pytest.mark.parametrize("shape", SHAPES)
def test_raise(shape: str) -> None:
    """An Exception goes to POST_FAILURE then COMPLETED and reaches the caller unchanged."""
    rec = Recorder()
    call = build(shape, "raise", CallPyBack(observers=[rec]))
    with pytest.raises(Boom, match="bad 3") as info:
        call(3)
    assert rec.seen == [S.PRE_EXECUTION, S.POST_FAILURE, S.COMPLETED]
    assert rec.path == [INIT, PRE, EXEC, FAIL, DONE] and is_valid_path(rec.path)
    failure = rec.events[1][1]
    assert isinstance(failure, ExecutionFailure)
    assert failure.exception is info.value
    # the original traceback is kept: the frame that raised is still in it
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "body" in frames


@pytest.mark.parametrize("shape", SHAPES)
def test_base_exception(shape: str) -> None:
    """A BaseException that is not an Exception goes to ERROR, untouched, with no COMPLETED."""
    rec = Recorder()
    call = build(shape, "interrupt", CallPyBack(observers=[rec]))
    with pytest.raises(Interrupt):
        call(1)
    assert rec.seen == [S.PRE_EXECUTION, S.ERROR]
    assert rec.path == [INIT, PRE, EXEC, ERROR] and is_valid_path(rec.path)


@pytest.mark.parametrize("shape", SHAPES)
def test_recovery_by_default_return(shape: str) -> None:
    """default_return recovers: POST_FAILURE, then COMPLETED marked as recovered."""
    rec = Recorder()
    deco = CallPyBack(observers=[rec], default_return=-1, exception_classes=[Boom])
    call = build(shape, "raise", deco)
    out = call(3)
    if shape not in ("async_generator",):
        assert out == -1
    assert rec.seen == [S.PRE_EXECUTION, S.POST_FAILURE, S.COMPLETED]
    assert rec.path == [INIT, PRE, EXEC, FAIL, DONE] and is_valid_path(rec.path)
    final = rec.events[-1][1]
    assert final.recovered and final.recovered_by == "default" and final.value == -1


def test_generator_closed_early_is_cancellation() -> None:
    """Closing a generator early completes the call as cancelled, never as a failure."""
    rec = Recorder()
    seen: list[Any] = []

    @CallPyBack(observers=[rec, lambda context: seen.append(context.cancelled)])
    def gen() -> Any:
        yield 1
        yield 2

    g = gen()
    assert next(g) == 1
    g.close()
    assert rec.seen == [S.PRE_EXECUTION, S.COMPLETED]
    assert rec.path == [INIT, PRE, EXEC, DONE] and is_valid_path(rec.path)
    assert seen[-1] is True


def test_generator_break_in_for_loop_completes() -> None:
    """An early ``break`` completes the call once the generator is released."""
    rec = Recorder()

    @CallPyBack(observers=[rec])
    def gen() -> Any:
        yield from range(10)

    for item in gen():
        if item == 2:
            break
    assert rec.seen == [S.PRE_EXECUTION, S.COMPLETED]


def test_generator_is_not_restarted() -> None:
    """Iterating the wrapped generator twice yields its items once; it is not re-run."""
    runs = []

    @CallPyBack(observers=[Recorder()])
    def gen() -> Any:
        runs.append(1)
        yield 1

    g = gen()
    assert list(g) == [1]
    assert list(g) == []
    assert runs == [1]


def test_generator_send_and_throw_are_forwarded() -> None:
    """send() and throw() reach the inner generator."""

    @CallPyBack(observers=[Recorder()])
    def echo() -> Any:
        got = None
        while True:
            try:
                got = yield got
            except Boom:
                got = "caught"

    g = echo()
    next(g)
    assert g.send("hi") == "hi"
    assert g.throw(Boom()) == "caught"
    g.close()


def test_async_generator_asend_athrow_aclose() -> None:
    """asend/athrow reach the inner async generator; aclose completes as cancelled."""
    rec = Recorder()

    @CallPyBack(observers=[rec])
    async def echo() -> Any:
        got = None
        while True:
            try:
                got = yield got
            except Boom:
                got = "caught"

    async def main() -> None:
        g = echo()
        assert await g.asend(None) is None
        assert await g.asend("hi") == "hi"
        assert await g.athrow(Boom()) == "caught"
        await g.aclose()

    asyncio.run(main())
    assert rec.seen == [S.PRE_EXECUTION, S.COMPLETED]


def test_coroutine_cancellation_completes_as_cancelled() -> None:
    """asyncio.CancelledError goes EXECUTING -> COMPLETED, is re-raised, never a failure."""
    rec = Recorder()
    flags: list[bool] = []

    @CallPyBack(
        observers=[rec, lambda context: flags.append(context.cancelled)], default_return="never"
    )
    async def slow() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.create_task(slow())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert rec.seen == [S.PRE_EXECUTION, S.COMPLETED]
    assert rec.path == [INIT, PRE, EXEC, DONE] and is_valid_path(rec.path)
    assert flags[-1] is True


def test_coroutine_reports_what_the_coroutine_does() -> None:
    """Success is decided after awaiting, not when the coroutine object is created."""
    rec = Recorder()

    @CallPyBack(observers=[rec])
    async def later() -> int:
        await asyncio.sleep(0)
        raise Boom("late")

    coro = later()
    assert rec.seen == []  # nothing happened yet
    with pytest.raises(Boom):
        asyncio.run(coro)
    assert rec.seen == [S.PRE_EXECUTION, S.POST_FAILURE, S.COMPLETED]


def test_a_retry_takes_the_retry_transition() -> None:
    """POST_FAILURE -> EXECUTING is a retry; the path shows both attempts."""
    from callpyback import MockTimeSource
    from callpyback.handlers import RetryHandler

    rec = Recorder()
    calls = iter([Boom("first"), 5])

    @CallPyBack(observers=[rec], error_handlers=[RetryHandler(2)], time_source=MockTimeSource())
    def flaky() -> int:
        step = next(calls)
        if isinstance(step, BaseException):
            raise step
        return step

    assert flaky() == 5
    assert rec.path == [INIT, PRE, EXEC, FAIL, EXEC, OK, DONE]


def test_an_interrupt_from_a_pre_observer_stops_the_call() -> None:
    """A KeyboardInterrupt raised by a PRE_EXECUTION observer: the function does not run, the
    call goes PRE_EXECUTION -> ERROR (the interrupt), and the interrupt propagates."""
    rec = Recorder()
    ran = []

    def stop() -> None:
        raise Interrupt()

    from callpyback import on_call

    @CallPyBack(observers=[on_call(stop), rec])
    def f() -> None:
        ran.append(1)

    with pytest.raises(Interrupt):
        f()
    assert ran == [] and rec.path == [INIT, PRE, ERROR]


def test_an_illegal_transition_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check is real: a table without POST_SUCCESS -> COMPLETED makes a success illegal."""
    from callpyback import states

    table = dict(states.TRANSITIONS)
    table[OK] = frozenset()
    monkeypatch.setattr(_engine, "TRANSITIONS", table)
    f = CallPyBack(observers=[Recorder()])(lambda: 1)
    with pytest.raises(AssertionError, match="POST_SUCCESS -> COMPLETED"):
        f()
    assert _engine.VIOLATIONS
    _engine.VIOLATIONS.clear()
