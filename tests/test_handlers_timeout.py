"""TimeoutHandler: worker-thread timeouts for sync functions, real cancellation for coroutines."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

import callpyback as cpb
from callpyback.handlers import CallTimeoutError, FallbackHandler, RetryHandler, TimeoutHandler

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


@pytest.mark.parametrize("seconds", [0, -1, "5", float("nan"), None])
def test_bad_seconds(seconds):
    with pytest.raises(cpb.ConfigurationError, match=r"TimeoutHandler\(seconds=...\)"):
        TimeoutHandler(seconds)


def test_timeout_error_types():
    err = CallTimeoutError("m:f", 2.0, cancelled=False)
    assert isinstance(err, TimeoutError) and isinstance(err, cpb.CallPyBackError)
    assert "m:f did not finish within 2s" in str(err) and "cannot stop a thread" in str(err)


# --- sync -------------------------------------------------------------------------------------


def test_sync_call_within_time_returns_its_value():
    f = cpb.CallPyBack(error_handlers=[TimeoutHandler(30)])(lambda x, *, y: x + y)
    assert f(1, y=2) == 3


def test_sync_exception_is_the_original_object():
    err = KeyError("k")

    def boom():
        raise err

    f = cpb.CallPyBack(error_handlers=[TimeoutHandler(30)])(boom)
    with pytest.raises(KeyError) as info:
        f()
    assert info.value is err


def test_sync_functions_own_timeout_error_is_not_relabelled():
    own = TimeoutError("socket timed out")

    def boom():
        raise own

    f = cpb.CallPyBack(error_handlers=[TimeoutHandler(30)])(boom)
    with pytest.raises(TimeoutError) as info:
        f()
    assert info.value is own


def test_sync_overrun_raises_call_timeout_error_and_the_thread_finishes_later():
    """The caller stops waiting; the function itself keeps running until it returns."""
    release = threading.Event()
    finished = threading.Event()
    seen = []

    def slow():
        release.wait(30)
        finished.set()
        return "late"

    f = cpb.CallPyBack(
        [
            lambda context: seen.append(
                (context.state.name, type(context.exception).__name__, dict(context.handler_state))
            )
        ],
        error_handlers=[TimeoutHandler(0.05)],
    )(slow)
    with pytest.raises(CallTimeoutError) as info:
        f()
    assert info.value.cancelled is False
    assert info.value.target.endswith("slow")
    assert not finished.is_set()  # honest: still running in its worker thread
    release.set()
    assert finished.wait(30)
    assert seen[-2][:2] == ("POST_FAILURE", "CallTimeoutError")
    assert seen[-1][2]["timed_out_after"] == 0.05


def test_sync_worker_sees_the_callers_context_variables():
    token = REQUEST_ID.set("req-42")
    try:
        f = cpb.CallPyBack(error_handlers=[TimeoutHandler(30)])(lambda: REQUEST_ID.get())
        assert f() == "req-42"
    finally:
        REQUEST_ID.reset(token)


def test_timeout_then_retry_then_success(clock):
    """A timed-out attempt is an ordinary failure: the retry handler runs it again."""
    release = threading.Event()
    calls = []

    def sometimes_slow():
        calls.append(1)
        if len(calls) == 1:
            release.wait(30)
        return "fast enough"

    attempts = []
    f = cpb.CallPyBack(
        [lambda context: attempts.append((context.state.name, context.attempt))],
        # generous: the second attempt must finish in time even on a loaded machine
        error_handlers=[TimeoutHandler(0.3), RetryHandler(2, exceptions=(TimeoutError,))],
        time_source=clock,
    )(sometimes_slow)
    try:
        assert f() == "fast enough"
    finally:
        release.set()
    assert attempts[-3:] == [("POST_FAILURE", 1), ("POST_SUCCESS", 2), ("COMPLETED", 2)]


def test_timeout_with_fallback():
    release = threading.Event()
    f = cpb.CallPyBack(
        error_handlers=[
            TimeoutHandler(0.05),
            FallbackHandler("default", exceptions=CallTimeoutError),
        ]
    )(lambda: release.wait(30))
    try:
        assert f() == "default"
    finally:
        release.set()


def test_several_call_hooks_are_composed_in_chain_order():
    """The first handler's hook wraps the second's, which wraps the function."""
    order = []

    class Wrap:
        def __init__(self, label):
            self.label = label

        def handle(self, exception, context):
            return None

        def call_sync(self, func, args, kwargs, context):
            order.append(f"{self.label} in")
            try:
                return func(*args, **kwargs)
            finally:
                order.append(f"{self.label} out")

    f = cpb.CallPyBack(error_handlers=[Wrap("a"), TimeoutHandler(30), Wrap("b")])(
        lambda x: order.append(f"call {x}") or x
    )
    assert f(5) == 5
    assert order == ["a in", "b in", "call 5", "b out", "a out"]


def test_inner_timeout_of_two_fires():
    release = threading.Event()
    f = cpb.CallPyBack(error_handlers=[TimeoutHandler(30), TimeoutHandler(0.05)])(
        lambda: release.wait(30)
    )
    try:
        with pytest.raises(CallTimeoutError) as info:
            f()
        assert info.value.seconds == 0.05
    finally:
        release.set()


def test_a_timeout_on_a_generator_is_refused():
    """A call hook cannot bound a generator (it runs as it is iterated): refused at decoration."""

    def gen():
        yield 1

    deco = cpb.CallPyBack(error_handlers=[TimeoutHandler(30)])
    with pytest.raises(cpb.ConfigurationError, match="is a generator function"):
        deco(gen)

    async def agen():
        yield 1

    with pytest.raises(cpb.ConfigurationError, match="cannot bound a generator"):
        cpb.CallPyBack(max_execution_time=5)(agen)


def test_max_execution_time_is_a_timeout_handler():
    """CallPyBack(max_execution_time=s) puts a TimeoutHandler first in the chain."""
    deco = cpb.CallPyBack(max_execution_time=2.5, default_return=None)
    first = deco.chain.handlers[0]
    assert isinstance(first, TimeoutHandler) and first.seconds == 2.5
    assert deco(lambda: 7)() == 7


# --- async ------------------------------------------------------------------------------------


def test_async_overrun_is_cancelled():
    """Real cancellation: the coroutine sees CancelledError at its await."""
    cancelled = []

    async def hang():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    seen = []
    f = cpb.CallPyBack(
        [lambda context: seen.append(context.state.name)], error_handlers=[TimeoutHandler(0.05)]
    )(hang)
    with pytest.raises(CallTimeoutError) as info:
        asyncio.run(f())
    assert info.value.cancelled is True
    assert "it was cancelled" in str(info.value)
    assert cancelled == [True]
    assert seen[-2:] == ["POST_FAILURE", "COMPLETED"]


def test_async_within_time():
    async def quick(x):
        await asyncio.sleep(0)
        return x * 2

    f = cpb.CallPyBack(error_handlers=[TimeoutHandler(30)])(quick)
    assert asyncio.run(f(21)) == 42


def test_async_functions_own_timeout_error_passes_through():
    own = TimeoutError("upstream timed out")

    async def boom():
        raise own

    f = cpb.CallPyBack(error_handlers=[TimeoutHandler(30)])(boom)
    with pytest.raises(TimeoutError) as info:
        asyncio.run(f())
    assert info.value is own
    assert not isinstance(info.value, CallTimeoutError)


def test_async_timeout_then_retry(clock):
    calls = []

    async def sometimes_hangs():
        calls.append(1)
        if len(calls) == 1:
            await asyncio.Event().wait()
        return "second time lucky"

    f = cpb.CallPyBack(
        error_handlers=[TimeoutHandler(0.3), RetryHandler(3, exceptions=(CallTimeoutError,))],
        time_source=clock,
    )(sometimes_hangs)
    assert asyncio.run(f()) == "second time lucky"
    assert len(calls) == 2 and len(clock.sleeps) == 1


def test_outer_cancellation_still_propagates():
    """Cancelling the caller is a cancellation, not a timeout."""

    async def hang():
        await asyncio.Event().wait()

    f = cpb.CallPyBack(error_handlers=[TimeoutHandler(30)])(hang)

    async def main():
        task = asyncio.ensure_future(f())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_no_unrelated_flag_is_needed():
    """The original implementation needed enable_async_observers for timeouts; not any more."""
    deco = cpb.CallPyBack(error_handlers=[TimeoutHandler(0.05)])
    assert deco.enable_async_observers is False

    async def hang():
        await asyncio.Event().wait()

    with pytest.raises(CallTimeoutError):
        asyncio.run(deco(hang)())


# --- the worker threads -------------------------------------------------------------------------


def test_workers_are_reused_between_calls():
    f = cpb.CallPyBack(error_handlers=[TimeoutHandler(30)])(threading.get_ident)
    first = f()
    assert first != threading.get_ident()
    assert all(f() == first for _ in range(20))


def test_a_stuck_worker_does_not_hold_up_the_next_call():
    """A worker busy with an overrunning call is not reused; another one serves the next call."""
    release = threading.Event()
    stuck_in = []

    def maybe_stuck(stuck):
        if stuck:
            stuck_in.append(threading.get_ident())
            release.wait(30)
        return threading.get_ident()

    f = cpb.CallPyBack(error_handlers=[TimeoutHandler(0.05)])(maybe_stuck)
    g = cpb.CallPyBack(error_handlers=[TimeoutHandler(30)])(maybe_stuck)  # same worker pool
    try:
        with pytest.raises(CallTimeoutError):
            f(True)
        other = g(False)
        assert other != stuck_in[0]
    finally:
        release.set()


def test_idle_workers_retire(monkeypatch):
    from callpyback.handlers import _workers

    monkeypatch.setattr(_workers, "IDLE_SECONDS", 0.01)
    f = cpb.CallPyBack(error_handlers=[TimeoutHandler(30)])(threading.current_thread)
    worker = f()
    worker.join(30)
    assert not worker.is_alive()
    assert f() is not worker  # a fresh worker serves the next call


def test_a_forked_child_starts_its_own_workers():
    """The parent's workers do not exist after fork: the child must not wait on them."""
    import os
    import warnings

    f = cpb.CallPyBack(error_handlers=[TimeoutHandler(5)])(lambda: "ok")
    assert f() == "ok"  # the parent now has an idle worker
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        try:
            code = 0 if f() == "ok" else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
