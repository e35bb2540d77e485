"""RetryHandler: explicit stops, back-off, filters, Retry-After hints, generators, async."""

from __future__ import annotations

import asyncio
import logging
import math
import pickle
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import callpyback as cpb
from callpyback.handlers import CircuitOpenError, FallbackHandler, RetryHandler
from callpyback.states import ExecutionState as S


class Rec:
    """Records (state, attempt, exception, value, recovered_by, handler_state) per notification."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def update(self, ctx: cpb.ExecutionContext) -> None:
        self.events.append(
            (
                ctx.state.name,
                ctx.attempt,
                ctx.exception,
                ctx.value,
                ctx.recovered_by,
                dict(ctx.handler_state),
            )
        )

    @property
    def seen(self) -> list[tuple[str, int]]:
        return [(e[0], e[1]) for e in self.events]


class Flaky:
    """Fails with ``exc_factory()`` for the first ``failures`` calls, then returns ``value``."""

    def __init__(self, failures: int, exc_factory=lambda: ConnectionError("down"), value="ok"):
        self.failures = failures
        self.exc_factory = exc_factory
        self.value = value
        self.calls = 0
        self.raised: list[BaseException] = []

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls <= self.failures:
            exc = self.exc_factory()
            self.raised.append(exc)
            raise exc
        return self.value


def wrap(func, handlers, clock, *observers):
    return cpb.CallPyBack(list(observers), error_handlers=handlers, time_source=clock)(func)


# --- construction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({}, "explicit stop"),
        ({"attempts": 0}, "attempts=...) must be >= 1"),
        ({"attempts": -2}, "attempts=...) must be >= 1"),
        ({"attempts": 2.5}, "must be an int"),
        ({"attempts": True}, "must be an int"),
        ({"max_time": 0}, "max_time=...) must be > 0"),
        ({"attempts": 3, "backoff": -0.1}, "backoff=...) must be >= 0"),
        ({"attempts": 3, "multiplier": 0.5}, "multiplier=...) must be >= 1"),
        ({"attempts": 3, "max_delay": float("inf")}, "max_delay=...) must be a number"),
        ({"attempts": 3, "jitter": "random"}, "jitter=...) must be one of"),
        ({"attempts": 3, "exceptions": [ValueError, "KeyError"]}, "'KeyError' is not an exception"),
        ({"attempts": 3, "exceptions": ()}, "is empty"),
        ({"attempts": 3, "retry_after": 5}, "retry_after=...) must be"),
        ({"attempts": 3, "predicate": "yes"}, "predicate=...) must be callable"),
        ({"attempts": 3, "rng": 42}, "rng=...) must be a random.Random"),
    ],
)
def test_bad_options_fail_at_construction(kwargs, fragment):
    """Nonsense options raise ConfigurationError (a ValueError) naming the problem."""
    with pytest.raises(
        cpb.ConfigurationError, match=fragment.replace("(", r"\(").replace(")", r"\)")
    ) as info:
        RetryHandler(**kwargs)
    assert isinstance(info.value, ValueError)


# --- behaviour ------------------------------------------------------------------------------


def test_retries_until_success_and_observers_see_each_attempt(clock):
    """Each failed attempt is a POST_FAILURE with its attempt number; the last one succeeds."""
    flaky = Flaky(2)
    rec = Rec()
    rng_seed = 7
    handler = RetryHandler(3, rng=random.Random(rng_seed))
    f = wrap(flaky, [handler], clock, rec)

    assert f() == "ok"
    assert flaky.calls == 3
    assert rec.seen == [
        ("PRE_EXECUTION", 0),
        ("POST_FAILURE", 1),
        ("POST_FAILURE", 2),
        ("POST_SUCCESS", 3),
        ("COMPLETED", 3),
    ]
    # the delays are the handler's own back-off, replayed with the same seed
    twin = RetryHandler(3, rng=random.Random(rng_seed))
    expected = [twin.delay(1), twin.delay(2)]
    assert clock.sleeps == expected
    assert rec.events[-1][5]["retry_delays"] == expected
    assert rec.events[-1][4] is None  # a real success, not a recovery


def test_exponential_backoff_capped_without_jitter(clock):
    """delay(n) = backoff * multiplier**(n-1), capped at max_delay."""
    flaky = Flaky(4)
    f = wrap(flaky, [RetryHandler(5, backoff=0.1, multiplier=2, max_delay=0.3, jitter=None)], clock)
    assert f() == "ok"
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.3, 0.3])


@pytest.mark.parametrize(("jitter", "low"), [("equal", 0.5), ("full", 0.0)])
def test_jitter_stays_within_its_band(jitter, low):
    """Equal jitter keeps at least half the delay; full jitter anywhere up to it."""
    handler = RetryHandler(50, backoff=1.0, multiplier=1, jitter=jitter, rng=random.Random(3))
    delays = [handler.delay(n) for n in range(1, 200)]
    assert all(low <= d <= 1.0 for d in delays)
    assert len(set(delays)) > 100  # really random, not a constant


def test_huge_attempt_numbers_do_not_overflow():
    handler = RetryHandler(attempts=10_000, backoff=1, multiplier=10, max_delay=60, jitter="none")
    assert handler.delay(5000) == 60


def test_exhausted_reraises_the_last_original_exception(clock):
    """After the last attempt the caller gets the very exception object the function raised."""
    flaky = Flaky(10)
    rec = Rec()
    f = wrap(flaky, [RetryHandler(3, jitter=None)], clock, rec)
    with pytest.raises(ConnectionError) as info:
        f()
    assert info.value is flaky.raised[-1]
    assert flaky.calls == 3
    assert [s for s, _ in rec.seen] == [
        "PRE_EXECUTION",
        "POST_FAILURE",
        "POST_FAILURE",
        "POST_FAILURE",
        "COMPLETED",
    ]
    done = rec.events[-1]
    assert done[1] == 3
    assert done[5]["retry_exhausted"] == "3 of 3 attempts made"
    assert len(clock.sleeps) == 2


def test_exhausted_retry_passes_to_a_fallback(clock):
    """A retry that gives up passes on, so a fallback later in the chain recovers."""
    flaky = Flaky(10)
    rec = Rec()
    f = wrap(flaky, [RetryHandler(2), FallbackHandler("cached")], clock, rec)
    assert f() == "cached"
    state, attempt, exc, value, by, _ = rec.events[-1]
    assert (state, attempt, value, by) == ("COMPLETED", 2, "cached", "fallback")
    assert exc is flaky.raised[-1]


def test_only_listed_exceptions_are_retried(clock):
    flaky = Flaky(1, exc_factory=lambda: ValueError("bad input"))
    f = wrap(flaky, [RetryHandler(3, exceptions=(ConnectionError,))], clock)
    with pytest.raises(ValueError):
        f()
    assert flaky.calls == 1
    assert clock.sleeps == []


@pytest.mark.parametrize("with_context", [False, True])
def test_predicate_filters_retries(clock, with_context):
    """The predicate may take (exception) or (exception, context)."""
    seen = []
    if with_context:

        def predicate(exc, ctx):
            seen.append(ctx.attempt)
            return "transient" in str(exc)
    else:

        def predicate(exc):
            seen.append(None)
            return "transient" in str(exc)

    transient = Flaky(1, exc_factory=lambda: ConnectionError("transient"))
    fatal = Flaky(1, exc_factory=lambda: ConnectionError("fatal"))
    handler = RetryHandler(3, predicate=predicate)
    assert wrap(transient, [handler], clock)() == "ok"
    with pytest.raises(ConnectionError, match="fatal"):
        wrap(fatal, [handler], clock)()
    assert transient.calls == 2 and fatal.calls == 1
    assert seen == ([1, 1] if with_context else [None, None])


def test_circuit_open_error_is_not_retried_by_default(clock):
    flaky = Flaky(
        1, exc_factory=lambda: CircuitOpenError("db", cpb.handlers.BreakerState.OPEN, 5.0)
    )
    f = wrap(flaky, [RetryHandler(3)], clock)
    with pytest.raises(CircuitOpenError):
        f()
    assert flaky.calls == 1

    flaky2 = Flaky(
        1, exc_factory=lambda: CircuitOpenError("db", cpb.handlers.BreakerState.OPEN, 5.0)
    )
    assert wrap(flaky2, [RetryHandler(3, exclude=())], clock)() == "ok"


class Throttled(Exception):
    def __init__(self, retry_after):
        super().__init__("slow down")
        self.retry_after = retry_after


@pytest.mark.parametrize(
    ("hint", "expected"),
    [(2.5, 2.5), ("4", 4.0), (120, 30.0), ("Wed, 21 Oct 2026 07:28:00 GMT", None), (-1, None)],
)
def test_retry_after_hint_from_an_attribute(clock, hint, expected):
    """A numeric hint overrides the back-off (capped at max_delay); others fall back to it."""
    flaky = Flaky(1, exc_factory=lambda: Throttled(hint))
    f = wrap(flaky, [RetryHandler(2, retry_after="retry_after", jitter=None, backoff=0.25)], clock)
    assert f() == "ok"
    assert clock.sleeps == [0.25 if expected is None else expected]


def test_retry_after_hint_from_a_callable(clock):
    flaky = Flaky(2, exc_factory=lambda: Throttled(None))
    calls = []

    def hint(exc):
        calls.append(exc)
        return 1.5

    f = wrap(flaky, [RetryHandler(3, retry_after=hint)], clock)
    assert f() == "ok"
    assert clock.sleeps == [1.5, 1.5]
    assert calls == flaky.raised


def test_max_time_stops_before_a_retry_would_overrun(clock):
    """Delays 1, 2, 4: a third retry would start at t=7 > max_time=5, so 3 attempts."""
    flaky = Flaky(10)
    rec = Rec()
    f = wrap(flaky, [RetryHandler(max_time=5, backoff=1, jitter="none")], clock, rec)
    with pytest.raises(ConnectionError):
        f()
    assert flaky.calls == 3
    assert clock.sleeps == [1, 2]
    assert "max_time 5s" in rec.events[-1][5]["retry_exhausted"]


def test_attempts_and_max_time_together_stop_at_the_first_reached(clock):
    flaky = Flaky(10)
    f = wrap(flaky, [RetryHandler(2, max_time=100, backoff=1, jitter="none")], clock)
    with pytest.raises(ConnectionError):
        f()
    assert flaky.calls == 2


def test_generators_are_never_retried(clock):
    """A retry would restart the generator and repeat its items: Retry decisions are skipped."""
    runs = []

    def gen():
        runs.append(1)
        yield 1
        raise ConnectionError("mid-stream")

    rec = Rec()
    g = wrap(gen, [RetryHandler(5)], clock, rec)
    items = []
    with pytest.raises(ConnectionError):
        for item in g():
            items.append(item)
    assert items == [1]
    assert runs == [1]
    assert clock.sleeps == []
    assert "retry_delays" not in rec.events[-1][5]


def test_async_generators_are_never_retried(clock):
    runs = []

    async def agen():
        runs.append(1)
        yield 1
        raise ConnectionError("mid-stream")

    g = wrap(agen, [RetryHandler(5)], clock)

    async def consume():
        return [item async for item in g()]

    with pytest.raises(ConnectionError):
        asyncio.run(consume())
    assert runs == [1]
    assert clock.sleeps == []


def test_async_retry_sleeps_through_the_time_source(clock):
    calls = []

    async def fetch():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("down")
        return "ok"

    rec = Rec()
    f = wrap(fetch, [RetryHandler(3, jitter=None, backoff=0.5)], clock, rec)
    assert asyncio.run(f()) == "ok"
    assert clock.sleeps == [0.5, 1.0]
    assert rec.seen[-2:] == [("POST_SUCCESS", 3), ("COMPLETED", 3)]


def test_async_retry_exhausted(clock):
    async def fetch():
        raise ConnectionError("down")

    f = wrap(fetch, [RetryHandler(2)], clock)
    with pytest.raises(ConnectionError):
        asyncio.run(f())
    assert len(clock.sleeps) == 1


def test_base_exceptions_bypass_the_retry(clock):
    """KeyboardInterrupt is never handed to a handler, so never retried."""
    handled = []

    class Spy(RetryHandler):
        def handle(self, exception, context):
            handled.append(exception)
            return super().handle(exception, context)

    def boom():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        wrap(boom, [Spy(5)], clock)()
    assert handled == []


def test_cancelled_coroutine_is_not_retried(clock):
    runs = []

    async def work():
        runs.append(1)
        await asyncio.sleep(10)

    f = wrap(work, [RetryHandler(5)], clock)

    async def main():
        task = asyncio.ensure_future(f())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert runs == [1]
    assert clock.sleeps == []


def test_repr_and_pickle():
    handler = RetryHandler(4, max_time=9, exceptions=(ConnectionError,), rng=random.Random(1))
    text = repr(handler)
    assert "attempts=4" in text and "ConnectionError" in text and "max_time=9" in text
    copy = pickle.loads(pickle.dumps(handler))
    assert (copy.attempts, copy.max_time, copy.exceptions) == (4, 9, (ConnectionError,))
    assert copy.delay(3) == handler.delay(3)  # same rng state travelled along


def test_state_path_of_a_retried_call_is_legal(clock):
    """POST_FAILURE -> EXECUTING is the retry edge of the transition table."""
    seen: list[S] = []
    flaky = Flaky(2)
    f = cpb.CallPyBack(
        [lambda context: seen.append(context.state)],
        error_handlers=[RetryHandler(3)],
        time_source=clock,
    )(flaky)
    f()
    path = [S.INITIALIZED]
    for state in seen:
        if state in (S.POST_FAILURE, S.POST_SUCCESS):
            path.append(S.EXECUTING)
        path.append(state)
    assert cpb.states.is_valid_path(path), path


def test_async_observers_see_every_attempt_of_a_retried_coroutine(clock):
    """On the coroutine path async observers are awaited for each failed attempt too."""
    seen = []

    class AsyncRec:
        async def update(self, ctx):
            await asyncio.sleep(0)
            seen.append((ctx.state.name, ctx.attempt))

    calls = []

    async def fetch():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("down")
        return "ok"

    f = cpb.CallPyBack([AsyncRec()], error_handlers=[RetryHandler(3)], time_source=clock)(fetch)
    assert asyncio.run(f()) == "ok"
    assert seen == [
        ("PRE_EXECUTION", 0),
        ("POST_FAILURE", 1),
        ("POST_FAILURE", 2),
        ("POST_SUCCESS", 3),
        ("COMPLETED", 3),
    ]


# --- the handler's own arithmetic never replaces the function's error -------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"backoff": 1e300, "max_delay": 1e300}, "must be <= 86400 seconds (one day)"),
        ({"backoff": 1e300}, "backoff=...) must be <= 86400"),
        ({"max_delay": 86_400.5}, "max_delay=...) must be <= 86400"),
    ],
)
def test_delays_no_timer_can_sleep_are_rejected_at_construction(kwargs, fragment):
    """backoff=1e300, max_delay=1e300 used to be accepted, and the caller got OverflowError
    from time.sleep instead of its own error; now it is a ConfigurationError up front."""
    with pytest.raises(cpb.ConfigurationError, match=re.escape(fragment)):
        RetryHandler(3, **kwargs)


def test_the_longest_allowed_delay_is_sleepable_by_the_system_clock():
    """The cap is below what time.sleep and threading timers accept on every platform."""
    import threading

    assert RetryHandler(2, backoff=86_400, max_delay=86_400).max_delay <= threading.TIMEOUT_MAX


@pytest.mark.parametrize("hint", [10**400, float("nan"), "1e999"], ids=["10**400", "nan", "1e999"])
def test_a_hint_that_overflows_falls_back_to_the_backoff(clock, hint):
    """A Retry-After of 10**400 made float() raise OverflowError, which replaced the
    function's exception; an unusable hint now just falls back to the back-off."""
    flaky = Flaky(10, exc_factory=lambda: Throttled(hint))
    f = wrap(flaky, [RetryHandler(2, retry_after="retry_after", jitter=None, backoff=0.25)], clock)
    with pytest.raises(Throttled) as info:
        f()
    assert info.value is flaky.raised[-1]
    assert clock.sleeps == [0.25]


def test_a_failing_hint_callable_is_logged_and_the_backoff_used(clock, caplog):
    """A retry_after callable that raises is a bug to report, not a reason to hide the error."""
    flaky = Flaky(10)
    f = wrap(flaky, [RetryHandler(2, retry_after=lambda exc: 1 / 0, jitter=None)], clock)
    with caplog.at_level(logging.WARNING, logger="callpyback.handlers"):
        with pytest.raises(ConnectionError) as info:
            f()
    assert info.value is flaky.raised[-1]
    assert clock.sleeps == [0.1]
    (record,) = [r for r in caplog.records if r.name == "callpyback.handlers"]
    assert "retry_after" in record.getMessage() and record.exc_info[0] is ZeroDivisionError


@settings(max_examples=300, deadline=None)
@given(
    backoff=st.floats(0, 86_400),
    multiplier=st.floats(1, 1e308),
    max_delay=st.floats(0, 86_400),
    attempt=st.integers(1, 10**6),
    jitter=st.sampled_from(["equal", "full", "none"]),
)
def test_every_delay_is_finite_and_capped(backoff, multiplier, max_delay, attempt, jitter):
    """Whatever the settings allowed at construction, delay() is a finite number in
    [0, max_delay] and never raises."""
    handler = RetryHandler(
        attempt + 1,
        backoff=backoff,
        multiplier=multiplier,
        max_delay=max_delay,
        jitter=jitter,
        rng=random.Random(0),
    )
    delay = handler.delay(attempt)
    assert math.isfinite(delay) and 0.0 <= delay <= max_delay


class CountingClock(cpb.MockTimeSource):
    def __init__(self) -> None:
        super().__init__(0.0)
        self.reads = 0

    def monotonic(self) -> float:
        self.reads += 1
        return super().monotonic()


def test_retries_alone_read_no_clock_until_max_time_needs_one() -> None:
    # Nothing reads a duration: a successful call (and a retried one) costs no clock read.
    clock = CountingClock()
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("once")
        return "ok"

    plain = cpb.CallPyBack(error_handlers=[RetryHandler(3, backoff=0)], time_source=clock)
    assert plain(flaky)() == "ok" and len(calls) == 2
    from callpyback import _engine

    if not _engine._Checking.on:  # checking mode times every call, by design
        assert clock.reads == 0

    # max_time reads how long the call has taken: the clock is read, and the stop holds.
    slow = CountingClock()

    def failing() -> None:
        slow.advance(2.0)
        raise ValueError("down")

    bounded = cpb.CallPyBack(
        error_handlers=[RetryHandler(max_time=3.0, backoff=0)], time_source=slow
    )
    with pytest.raises(ValueError, match="down"):
        bounded(failing)()
    assert slow.reads > 0
    assert slow.monotonic() < 10.0  # stopped by max_time after two attempts, not 'forever'


def test_a_config_backoff_above_a_day_is_located_in_the_file(tmp_path) -> None:
    from callpyback import ConfigError, load_config

    path = tmp_path / "callpyback.toml"
    path.write_text(
        'version = 1\n[error_handlers.r]\ntype = "retry"\nattempts = 3\nmax_delay = 1e300\n'
        '[[pipelines]]\nname = "x"\nmatch = ["a"]\nerror_handlers = ["r"]\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "callpyback.toml:5: error_handlers.r.max_delay" in text
    assert "1e+300" in text and "<= 86400" in text
