"""CircuitBreakerHandler: the state machine, sharing by name, concurrency, async, stats."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import pickle
import random
import threading

import pytest

import callpyback as cpb
from callpyback.handlers import (
    BreakerState,
    CircuitBreakerHandler,
    CircuitOpenError,
    RetryHandler,
    get_breaker,
    reset_breakers,
)

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
_names = itertools.count()


def unique(prefix: str = "t") -> str:
    """Breakers are shared by name: each test uses its own."""
    return f"{prefix}-{next(_names)}"


class Switch:
    """A function whose outcome the test controls: raise ``self.error`` if set, else return."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return "ok"


class Rec:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def update(self, ctx) -> None:
        self.events.append(
            (ctx.state.name, ctx.attempt, ctx.exception, dict(ctx.handler_state), ctx.recovered_by)
        )


def guarded(handler, clock, func=None, *observers):
    func = func or Switch()
    return func, cpb.CallPyBack(list(observers), error_handlers=[handler], time_source=clock)(func)


# --- construction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"failure_threshold": 0}, r"failure_threshold=...\) must be >= 1"),
        ({"failure_threshold": 2, "failure_rate": 0.5}, "not both"),
        ({"failure_rate": 0}, r"failure_rate=...\) must be > 0"),
        ({"failure_rate": 1.5}, r"failure_rate=...\) must be <= 1"),
        ({"window_size": 0}, r"window_size=...\) must be >= 1"),
        (
            {"failure_rate": 0.5, "window_size": 5, "minimum_calls": 6},
            r"minimum_calls=...\) must be <= 5",
        ),
        ({"recovery_timeout": 0}, r"recovery_timeout=...\) must be > 0"),
        ({"recovery_timeout": -3}, r"recovery_timeout=...\) must be > 0"),
        ({"half_open_max_calls": 0}, r"half_open_max_calls=...\) must be >= 1"),
        ({"success_threshold": 0}, r"success_threshold=...\) must be >= 1"),
        ({"exceptions": [ConnectionError, 3]}, "3 is not an exception class"),
        ({"fallback": 1, "fallback_factory": lambda c: 2}, "not both"),
        ({"fallback_factory": 5}, "must be callable"),
        ({"time_source": object()}, "monotonic"),
    ],
)
def test_bad_options_fail_at_construction(kwargs, fragment):
    with pytest.raises(cpb.ConfigurationError, match=fragment):
        CircuitBreakerHandler(unique(), **kwargs)


def test_same_name_with_other_settings_is_an_error():
    name = unique()
    first = CircuitBreakerHandler(name, failure_threshold=3)
    with pytest.raises(cpb.ConfigurationError, match=r"failure_threshold=4 \(existing: 3\)"):
        CircuitBreakerHandler(name, failure_threshold=4)
    assert CircuitBreakerHandler(name, failure_threshold=3).breaker is first.breaker


def test_unknown_breaker_name():
    with pytest.raises(cpb.ConfigurationError, match="no circuit breaker named 'nope-x'"):
        get_breaker("nope-x")


# --- the state machine ------------------------------------------------------------------------


def test_closed_open_half_open_closed_then_open_again(clock):
    """The full cycle under a mock clock, with listeners seeing every transition."""
    events = []
    handler = CircuitBreakerHandler(
        unique(), failure_threshold=3, recovery_timeout=10, listeners=[events.append]
    )
    func, f = guarded(handler, clock)

    func.error = ConnectionError("down")
    for _ in range(3):
        with pytest.raises(ConnectionError):
            f()
    assert handler.state is OPEN and func.calls == 3

    # open: fail fast without running the function
    with pytest.raises(CircuitOpenError) as info:
        f()
    assert func.calls == 3
    assert info.value.retry_after == pytest.approx(10)
    assert isinstance(info.value, cpb.CallPyBackError)
    clock.advance(9.5)
    with pytest.raises(CircuitOpenError) as info:
        f()
    assert info.value.retry_after == pytest.approx(0.5)

    # recovery timeout passed: one trial call, which succeeds and closes the breaker
    clock.advance(0.5)
    func.error = None
    assert f() == "ok"
    assert handler.state is CLOSED

    # trip again, then a failing trial re-opens it
    func.error = ConnectionError("down again")
    for _ in range(3):
        with pytest.raises(ConnectionError):
            f()
    clock.advance(10)
    with pytest.raises(ConnectionError):
        f()  # the trial call ran and failed
    assert handler.state is OPEN
    assert func.calls == 3 + 1 + 3 + 1

    path = [(e.old, e.new) for e in events]
    assert path == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),
    ]
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert events[0].reason == "3 consecutive failures"
    assert list(handler.breaker.history) == events
    stats = handler.stats
    assert (stats.state, stats.successes, stats.failures, stats.rejected, stats.times_opened) == (
        OPEN,
        1,
        7,
        2,
        3,
    )


def test_state_reads_half_open_once_the_timeout_passed(clock):
    handler = CircuitBreakerHandler(unique(), failure_threshold=1, recovery_timeout=5)
    func, f = guarded(handler, clock)
    func.error = ValueError("x")
    with pytest.raises(ValueError):
        f()
    assert handler.state is OPEN
    assert handler.stats.retry_after == pytest.approx(5)
    clock.advance(5)
    assert handler.state is HALF_OPEN


def test_a_success_resets_the_consecutive_count(clock):
    handler = CircuitBreakerHandler(unique(), failure_threshold=3)
    func, f = guarded(handler, clock)
    for error in [OSError(), OSError(), None, OSError(), OSError()]:
        func.error = error
        if error is None:
            f()
        else:
            with pytest.raises(OSError):
                f()
    assert handler.state is CLOSED
    assert handler.stats.consecutive_failures == 2


def test_failure_rate_window(clock):
    """Trips once minimum_calls were seen and the failure share reaches the rate."""
    handler = CircuitBreakerHandler(unique(), failure_rate=0.5, window_size=4, minimum_calls=4)
    func, f = guarded(handler, clock)
    outcomes = [None, OSError(), None]
    for error in outcomes:
        func.error = error
        with contextlib.suppress(OSError):
            f()
    assert handler.state is CLOSED  # 1 failure in 3 calls, below minimum_calls anyway
    func.error = OSError()
    with pytest.raises(OSError):
        f()
    assert handler.state is OPEN  # 2 of the last 4
    assert "2 failures in the last 4 calls" in handler.breaker.history[-1].reason


def test_failure_rate_window_slides(clock):
    handler = CircuitBreakerHandler(unique(), failure_rate=0.75, window_size=4, minimum_calls=2)
    func, f = guarded(handler, clock)
    for error in [OSError(), None, None, None, None, OSError(), OSError()]:
        func.error = error
        with contextlib.suppress(OSError):
            f()
    assert handler.state is CLOSED  # window [None, None, F, F]: 0.5 < 0.75
    assert handler.stats.window_failure_rate == 0.5
    func.error = OSError()
    with pytest.raises(OSError):
        f()
    assert handler.state is OPEN  # [None, F, F, F]: 0.75


def test_half_open_admits_a_limited_number_of_trials(clock):
    """While the single trial call is in flight, other calls are rejected as half-open."""
    handler = CircuitBreakerHandler(unique(), failure_threshold=1, recovery_timeout=1)
    release = threading.Event()
    entered = threading.Event()

    def slow():
        entered.set()
        assert release.wait(10)
        return "trial ok"

    f = cpb.CallPyBack(error_handlers=[handler], time_source=clock)(slow)
    handler.breaker.open(clock)
    clock.advance(1)

    results = []
    trial = threading.Thread(target=lambda: results.append(f()))
    trial.start()
    assert entered.wait(10)
    with pytest.raises(
        CircuitOpenError, match=r"half_open: .* trial calls are all in flight"
    ) as info:
        f()
    assert info.value.state is HALF_OPEN and info.value.retry_after == 0
    release.set()
    trial.join(10)
    assert results == ["trial ok"]
    assert handler.state is CLOSED


def test_a_trial_slower_than_the_recovery_timeout_keeps_its_slot(clock):
    """half_open_max_calls=1: while the one trial is still running, no second trial is let in,
    even when it has been running for longer than recovery_timeout (it used to be: the slot was
    "reclaimed", so two trials probed a dependency that had asked for one)."""
    handler = CircuitBreakerHandler(
        unique(), failure_threshold=1, recovery_timeout=5, half_open_max_calls=1
    )
    entered = threading.Event()
    release = threading.Event()
    ran = []

    def call(slow: bool) -> str:
        ran.append(slow)
        if slow:
            entered.set()
            assert release.wait(10)
        return "ok"

    f = cpb.CallPyBack(error_handlers=[handler], time_source=clock)(call)
    handler.breaker.open(clock)
    clock.advance(5)

    trial_result = []
    trial = threading.Thread(target=lambda: trial_result.append(f(True)))
    trial.start()
    assert entered.wait(10)
    clock.advance(12)  # the trial has now run for more than two recovery timeouts

    contenders = 4
    start = threading.Barrier(contenders)
    outcomes = []
    outcomes_lock = threading.Lock()

    def contender() -> None:
        start.wait(10)
        try:
            outcome: object = f(False)
        except CircuitOpenError as exc:
            outcome = exc.state
        with outcomes_lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=contender) for _ in range(contenders)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert outcomes == [HALF_OPEN] * contenders  # all rejected: the trial holds the slot
        assert ran == [True]
        assert trial.is_alive()
    finally:
        release.set()
    trial.join(10)
    assert trial_result == ["ok"]
    assert handler.state is CLOSED  # the late trial outcome still counts
    assert f(False) == "ok"


def test_success_threshold_needs_several_trial_successes(clock):
    handler = CircuitBreakerHandler(
        unique(),
        failure_threshold=1,
        recovery_timeout=1,
        half_open_max_calls=2,
        success_threshold=2,
    )
    _func, f = guarded(handler, clock)
    handler.breaker.open(clock)
    clock.advance(1)
    f()
    assert handler.state is HALF_OPEN
    f()
    assert handler.state is CLOSED


def test_interrupted_trial_gives_its_slot_back_at_once(clock):
    """A trial ended by KeyboardInterrupt releases its half-open slot (record_interrupt)."""
    handler = CircuitBreakerHandler(unique(), failure_threshold=1, recovery_timeout=2)
    func, f = guarded(handler, clock)
    handler.breaker.open(clock)
    clock.advance(2)
    func.error = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        f()
    assert handler.state is HALF_OPEN
    func.error = None
    assert f() == "ok"  # admitted as the next trial straight away, no second recovery timeout
    assert handler.state is CLOSED
    assert handler.stats.failures == 0  # the interruption never counted as a failure


def test_only_listed_exceptions_count_others_are_successes(clock):
    handler = CircuitBreakerHandler(unique(), failure_threshold=2, exceptions=(ConnectionError,))
    func, f = guarded(handler, clock)
    func.error = ValueError("bad request: the dependency answered")
    for _ in range(5):
        with pytest.raises(ValueError):
            f()
    assert handler.state is CLOSED
    assert handler.stats.failures == 0 and handler.stats.successes == 5


def test_excluded_exceptions_do_not_count(clock):
    handler = CircuitBreakerHandler(unique(), failure_threshold=1, exclude=(TimeoutError,))
    func, f = guarded(handler, clock)
    func.error = TimeoutError()
    with pytest.raises(TimeoutError):
        f()
    assert handler.state is CLOSED


def test_base_exceptions_never_count(clock):
    handler = CircuitBreakerHandler(unique(), failure_threshold=1)
    func, f = guarded(handler, clock)
    for exc in (KeyboardInterrupt(), SystemExit(1), GeneratorExit()):
        func.error = exc
        with pytest.raises(type(exc)):
            f()
    assert handler.state is CLOSED
    assert handler.stats.failures == 0


def test_fallback_value_while_open(clock):
    rec = Rec()
    handler = CircuitBreakerHandler(unique(), failure_threshold=1, fallback="cached")
    func, f = guarded(handler, clock, None, rec)
    func.error = OSError("down")
    with pytest.raises(OSError):
        f()  # the failure that trips it is not masked
    assert f() == "cached"
    state, _attempt, exc, hs, by = rec.events[-1]
    assert (state, by, hs["breaker_state"]) == ("COMPLETED", handler.name, "open")
    assert isinstance(exc, CircuitOpenError)


def test_fallback_factory_gets_the_context(clock):
    handler = CircuitBreakerHandler(
        unique(), failure_threshold=1, fallback_factory=lambda ctx: ("stale", ctx.args)
    )
    func = Switch()
    func.error = OSError()
    f = cpb.CallPyBack(error_handlers=[handler], time_source=clock)(lambda x: func())
    with pytest.raises(OSError):
        f(1)
    assert f(2) == ("stale", (2,))


def test_completed_context_tells_the_story(clock):
    """Attempts, retry delays and breaker state are all on the COMPLETED context."""
    rec = Rec()
    handler = CircuitBreakerHandler(unique(), failure_threshold=2)
    func = Switch()
    func.error = ConnectionError()
    f = cpb.CallPyBack(
        [rec], error_handlers=[RetryHandler(5, jitter=None), handler], time_source=clock
    )(func)
    with pytest.raises(CircuitOpenError) as info:
        f()
    # two real failures trip the breaker; the third attempt is rejected and not retried
    assert func.calls == 2
    assert isinstance(info.value, CircuitOpenError)
    states = [(e[0], e[1], e[3].get("breaker_state")) for e in rec.events]
    assert states == [
        ("PRE_EXECUTION", 0, None),
        # the breaker counts each failure before POST_FAILURE observers run, so they see the
        # state that failure left: still closed after one, open after the second
        ("POST_FAILURE", 1, "closed"),
        ("POST_FAILURE", 2, "open"),
        ("POST_FAILURE", 3, "open"),
        ("COMPLETED", 3, "open"),
    ]
    assert rec.events[-1][3]["retry_delays"] == [0.1, 0.2]


def test_breaker_counts_every_attempt_even_when_retry_decides(clock):
    """record_failure runs for each failed attempt before the chain decides."""
    handler = CircuitBreakerHandler(unique(), failure_threshold=10)
    func = Switch()
    func.error = ConnectionError()
    f = cpb.CallPyBack(error_handlers=[RetryHandler(4), handler], time_source=clock)(func)
    with pytest.raises(ConnectionError):
        f()
    assert handler.stats.consecutive_failures == 4


def test_shared_by_name_across_functions(clock):
    """Two functions naming the same breaker trip it together; another name is unaffected."""
    name = unique("shared")
    a_func, a = guarded(CircuitBreakerHandler(name, failure_threshold=2), clock)
    b_func, b = guarded(CircuitBreakerHandler(name, failure_threshold=2), clock)
    other_func, other = guarded(CircuitBreakerHandler(unique(), failure_threshold=2), clock)
    a_func.error = b_func.error = other_func.error = OSError()
    with pytest.raises(OSError):
        a()
    with pytest.raises(OSError):
        b()
    with pytest.raises(OSError):
        other()
    with pytest.raises(CircuitOpenError):
        a()
    b_func.error = None
    with pytest.raises(CircuitOpenError):
        b()
    assert get_breaker(name).state is OPEN
    with pytest.raises(OSError):
        other()  # one failure so far there: still closed before this call


def test_a_failing_listener_is_logged_and_ignored(clock, caplog):
    def bad(event):
        raise RuntimeError("listener bug")

    seen = []
    handler = CircuitBreakerHandler(unique(), failure_threshold=1, listeners=[bad, seen.append])
    func, f = guarded(handler, clock)
    func.error = OSError()
    with caplog.at_level(logging.ERROR, logger="callpyback.handlers"):
        with pytest.raises(OSError):
            f()
    assert handler.state is OPEN
    assert [e.new for e in seen] == [OPEN]
    assert "state listener" in caplog.text and "listener bug" in caplog.text


def test_manual_control_and_reset(clock):
    handler = CircuitBreakerHandler(unique(), failure_threshold=1)
    _func, f = guarded(handler, clock)
    f()
    handler.breaker.open(clock)
    with pytest.raises(CircuitOpenError):
        f()
    handler.breaker.close()
    assert f() == "ok"
    handler.breaker.open(clock)
    reset_breakers()
    assert handler.state is CLOSED and handler.stats.rejected == 0


def test_pickle_reattaches_to_the_named_breaker():
    handler = CircuitBreakerHandler(unique(), failure_threshold=4, recovery_timeout=7)
    copy = pickle.loads(pickle.dumps(handler))
    assert copy.breaker is handler.breaker
    assert "failure_threshold=4" in repr(copy) and "recovery_timeout=7.0" in repr(copy)
    err = CircuitOpenError("db", OPEN, 3.0)
    assert str(pickle.loads(pickle.dumps(err))) == str(err)


def test_repr_names_the_state():
    handler = CircuitBreakerHandler(unique(), failure_rate=0.5)
    assert "failure_rate=0.5" in repr(handler) and "state='closed'" in repr(handler)


# --- async ------------------------------------------------------------------------------------


def test_async_state_machine(clock):
    handler = CircuitBreakerHandler(unique(), failure_threshold=2, recovery_timeout=3)
    outcome: dict[str, BaseException | None] = {"error": ConnectionError()}
    calls = []

    @cpb.CallPyBack(error_handlers=[handler], time_source=clock)
    async def fetch():
        calls.append(1)
        await asyncio.sleep(0)
        if outcome["error"] is not None:
            raise outcome["error"]
        return "ok"

    async def scenario():
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await fetch()
        with pytest.raises(CircuitOpenError):
            await fetch()
        clock.advance(3)
        outcome["error"] = None
        return await fetch()

    assert asyncio.run(scenario()) == "ok"
    assert len(calls) == 3
    assert [(e.old, e.new) for e in handler.breaker.history] == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]


def test_async_cancellation_never_counts(clock):
    handler = CircuitBreakerHandler(unique(), failure_threshold=1)

    @cpb.CallPyBack(error_handlers=[handler], time_source=clock)
    async def hang():
        await asyncio.sleep(10)

    async def main():
        task = asyncio.ensure_future(hang())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert handler.state is CLOSED and handler.stats.failures == 0


def test_async_calls_are_not_serialised(clock):
    """Many coroutines are inside the protected call at once."""
    handler = CircuitBreakerHandler(unique())
    inside = 0
    peak = 0

    @cpb.CallPyBack(error_handlers=[handler], time_source=clock)
    async def work(gate):
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        await gate.wait()
        inside -= 1

    async def main():
        gate = asyncio.Event()
        tasks = [asyncio.ensure_future(work(gate)) for _ in range(10)]
        for _ in range(1000):  # bounded: a bug must fail the test, not hang it
            if peak == 10:
                break
            await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert peak == 10


# --- threads ----------------------------------------------------------------------------------


def test_a_slow_call_does_not_block_other_threads(clock):
    """The breaker's lock is never held around the call: 7 threads finish while one is stuck."""
    handler = CircuitBreakerHandler(unique(), failure_threshold=3)
    stuck = threading.Event()
    release = threading.Event()

    @cpb.CallPyBack(error_handlers=[handler], time_source=clock)
    def call(slow: bool) -> str:
        if slow:
            stuck.set()
            assert release.wait(10)
        return "done"

    slow_result = []
    slow_thread = threading.Thread(target=lambda: slow_result.append(call(True)))
    slow_thread.start()
    assert stuck.wait(10)
    finished = []
    others = [threading.Thread(target=lambda: finished.append(call(False))) for _ in range(7)]
    for t in others:
        t.start()
    for t in others:
        t.join(10)
    assert finished == ["done"] * 7  # all done while the slow call is still inside
    assert not release.is_set()
    release.set()
    slow_thread.join(10)
    assert slow_result == ["done"]


def test_eight_threads_hammering_keep_transitions_consistent(clock):
    """Random outcomes from 8 threads: transitions follow one another, counters add up."""
    events = []
    events_lock = threading.Lock()

    def listener(event):
        with events_lock:
            events.append(event)

    handler = CircuitBreakerHandler(
        unique("hammer"),
        failure_threshold=3,
        recovery_timeout=0.05,
        half_open_max_calls=2,
        listeners=[listener],
    )
    ran = itertools.count()
    counts = {"ok": 0, "failed": 0, "rejected": 0}
    counts_lock = threading.Lock()
    barrier = threading.Barrier(8)

    @cpb.CallPyBack(error_handlers=[handler], time_source=clock)
    def call(fail: bool) -> None:
        next(ran)
        if fail:
            raise ConnectionError()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        local = {"ok": 0, "failed": 0, "rejected": 0}
        for _ in range(400):
            clock.advance(0.01)
            try:
                call(rng.random() < 0.4)
                local["ok"] += 1
            except CircuitOpenError:
                local["rejected"] += 1
            except ConnectionError:
                local["failed"] += 1
        with counts_lock:
            for key, value in local.items():
                counts[key] += value

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)

    ordered = sorted(events, key=lambda e: e.seq)
    assert [e.seq for e in ordered] == list(range(1, len(ordered) + 1))
    allowed = {(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED), (HALF_OPEN, OPEN)}
    previous = CLOSED
    for event in ordered:
        assert event.old is previous, ordered
        assert (event.old, event.new) in allowed
        previous = event.new
    assert len(ordered) >= 4  # the scenario really exercised the machine
    stats = handler.stats
    assert counts["ok"] + counts["failed"] + counts["rejected"] == 8 * 400
    assert next(ran) == counts["ok"] + counts["failed"]  # rejected calls never ran
    assert stats.successes == counts["ok"]
    assert stats.failures == counts["failed"]
    assert stats.rejected == counts["rejected"]
    assert stats.state is previous or (previous is OPEN and stats.state is HALF_OPEN)
