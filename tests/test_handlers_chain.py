"""The handler chain: decisions, composition, handlers that raise, observers, import cost."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys

import pytest

import callpyback as cpb
from callpyback._handling import HandlerChain
from callpyback.handlers import (
    ErrorHandler,
    FallbackHandler,
    Raise,
    Recover,
    Retry,
    RetryHandler,
)


class Rec:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def update(self, ctx) -> None:
        self.events.append((ctx.state.name, ctx.attempt, ctx.result))


def test_import_callpyback_stays_cheap():
    """Neither logging nor the handlers package is imported by ``import callpyback``."""
    code = (
        "import sys, callpyback; "
        "print(sorted(m for m in ('logging', 'callpyback.handlers', 'concurrent.futures', "
        "'asyncio') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_names_resolve_lazily():
    for name in (
        "ErrorHandler",
        "RetryHandler",
        "CircuitBreakerHandler",
        "CircuitOpenError",
        "TimeoutHandler",
        "ExceptionMappingHandler",
        "LoggingErrorHandler",
        "ConditionalErrorHandler",
        "FallbackHandler",
        "ErrorHandlerBuilder",
        "CallTimeoutError",
        "ReraiseHandler",
    ):
        assert getattr(cpb, name) is getattr(cpb.handlers, name)
    assert cpb.handlers.DefaultErrorHandler is cpb.DefaultErrorHandler


def test_plain_callables_are_handlers():
    """``f(exception, context)`` returning a Decision or None is a handler."""
    seen = []

    def first(exc, ctx):
        seen.append("first")
        return None

    def second(exc, ctx):
        seen.append("second")
        return Recover(f"recovered {exc}")

    f = cpb.CallPyBack(error_handlers=[first, second])(lambda: 1 / 0)
    assert f() == "recovered division by zero"
    assert seen == ["first", "second"]


def test_raise_decision_chains_from_the_original():
    class DomainError(Exception):
        pass

    original = ZeroDivisionError("boom")

    def boom():
        raise original

    f = cpb.CallPyBack(error_handlers=[lambda e, c: Raise(DomainError("mapped"))])(boom)
    with pytest.raises(DomainError) as info:
        f()
    assert info.value.__cause__ is original


def test_a_handler_that_raises_is_logged_and_chained(caplog):
    """Its exception is raised, chained to the original, and logged with the handler's name."""

    class Broken(ErrorHandler):
        def handle(self, exception, context):
            raise RuntimeError("handler bug")

    original = KeyError("k")

    def boom():
        raise original

    later = []
    f = cpb.CallPyBack(error_handlers=[Broken(name="broken"), lambda e, c: later.append(e)])(boom)
    with (
        caplog.at_level(logging.ERROR, logger="callpyback.handlers"),
        pytest.raises(RuntimeError, match="handler bug") as info,
    ):
        f()
    assert info.value.__cause__ is original
    assert later == []  # the chain stopped there
    assert "error handler broken raised RuntimeError('handler bug')" in caplog.text


def test_a_handler_returning_nonsense_is_reported():
    f = cpb.CallPyBack(error_handlers=[lambda e, c: "a value"])(lambda: 1 / 0)
    with pytest.raises(cpb.ConfigurationError, match="return Recover") as info:
        f()
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_not_a_handler():
    with pytest.raises(cpb.ConfigurationError, match="must have a handle"):
        cpb.CallPyBack(error_handlers=[42])


def test_default_return_becomes_the_last_handler():
    f = cpb.CallPyBack(
        error_handlers=[RetryHandler(2, backoff=0)],
        default_return=-1,
        exception_classes=(ZeroDivisionError,),
        time_source=cpb.MockTimeSource(),
    )(lambda: 1 / 0)
    assert f() == -1
    handlers = f.__callpyback__.chain.handlers
    assert type(handlers[-1]) is cpb.DefaultErrorHandler


def test_observers_see_the_truth_of_a_recovered_call(clock):
    """POST_FAILURE per failed attempt, then COMPLETED with a result marked as recovered."""
    rec = Rec()
    f = cpb.CallPyBack(
        [rec], error_handlers=[RetryHandler(2), FallbackHandler("fb")], time_source=clock
    )(lambda: 1 / 0)
    assert f() == "fb"
    assert [(s, a) for s, a, _ in rec.events] == [
        ("PRE_EXECUTION", 0),
        ("POST_FAILURE", 1),
        ("POST_FAILURE", 2),
        ("COMPLETED", 2),
    ]
    result = rec.events[-1][2]
    assert result.recovered and result.recovered_by == "fallback" and result.value == "fb"


def test_async_handlers_only_on_async_functions():
    """An ``async def`` fallback factory is a ConfigurationError on a sync function."""

    async def factory(ctx):
        return "async fallback"

    handler = FallbackHandler(factory=factory)
    with pytest.raises(cpb.ConfigurationError, match="async and can only handle coroutine"):
        cpb.CallPyBack(error_handlers=[handler])(lambda: 1)

    async def boom():
        raise OSError

    f = cpb.CallPyBack(error_handlers=[handler])(boom)
    assert asyncio.run(f()) == "async fallback"


def test_async_callable_handler():
    async def handler(exc, ctx):
        await asyncio.sleep(0)
        return Recover("from async handler")

    async def boom():
        raise OSError

    f = cpb.CallPyBack(error_handlers=[handler])(boom)
    assert asyncio.run(f()) == "from async handler"


def test_chain_hooks_are_found_once_and_composed():
    class A:
        def handle(self, e, c):
            return None

        def call_sync(self, func, args, kwargs, ctx):
            return ("A", func(*args, **kwargs))

        async def call_async(self, func, args, kwargs, ctx):
            return ("A", await func(*args, **kwargs))

    class B(A):
        def call_sync(self, func, args, kwargs, ctx):
            return ("B", func(*args, **kwargs))

        async def call_async(self, func, args, kwargs, ctx):
            return ("B", await func(*args, **kwargs))

    chain = HandlerChain([A(), RetryHandler(2), B()])
    assert len(chain.call_sync) == 1 and len(chain.call_async) == 1
    assert chain.call_sync[0](lambda x: x + 1, (1,), {}, None) == ("A", ("B", 2))

    async def plus(x):
        return x + 1

    assert asyncio.run(chain.call_async[0](plus, (1,), {}, None)) == ("A", ("B", 2))
    single = HandlerChain([A()])
    assert single.call_sync[0].__self__.__class__ is A  # no wrapper for one hook


def test_generator_skips_retry_and_reaches_the_fallback(clock):
    def gen():
        yield 1
        raise OSError("mid-stream")

    g = cpb.CallPyBack(
        error_handlers=[lambda e, c: Retry(1), FallbackHandler("end")], time_source=clock
    )(gen)
    out = []
    it = g()
    out.append(next(it))
    with pytest.raises(StopIteration) as stop:
        next(it)
    assert stop.value.value == "end"
    assert clock.sleeps == []
