"""Circuit breaker: fail fast while a dependency is down, probe it again after a pause.

State lives in a :class:`CircuitBreaker` shared by name: every handler built with the same
``name`` (and the same settings) drives the same breaker, so several functions can protect one
dependency together, while different names never collide.  The breaker's lock is held only
while its counters or state change, never around the protected call.
"""

from __future__ import annotations

import enum
import itertools
import threading
import weakref
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, List, NamedTuple, Tuple

from .._handling import MISSING, Decision, Recover
from ..errors import CallPyBackError, ConfigurationError
from ._base import ErrorHandler, exception_types, number, type_names

__all__ = [
    "BreakerEvent",
    "BreakerState",
    "BreakerStats",
    "CircuitBreaker",
    "CircuitBreakerHandler",
    "CircuitOpenError",
    "get_breaker",
    "reset_breakers",
]


class BreakerState(str, enum.Enum):
    """``closed``: calls flow; ``open``: calls fail fast; ``half_open``: a few trial calls probe."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    def __str__(self) -> str:
        return self.value


CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class CircuitOpenError(CallPyBackError):
    """The breaker ``name`` rejected the call without running it.

    ``retry_after`` is how many seconds remain until it lets a trial call through (0 when it is
    half-open and only waiting for its trial calls to finish).  Never counted as a failure by
    any breaker, and not retried by :class:`~callpyback.handlers.RetryHandler` by default.
    """

    def __init__(self, name: str, state: BreakerState, retry_after: float) -> None:
        # No super().__init__ and no message formatting here: this is raised on every rejected
        # call, and most callers never print it.  BaseException.__new__ already set ``args``.
        self.name = name
        self.state = state
        self.retry_after = retry_after

    def __str__(self) -> str:
        if self.state is OPEN:
            detail = f"calls fail fast for another {self.retry_after:.3g}s"
        else:
            detail = "it is half-open and its trial calls are all in flight"
        return f"circuit breaker {self.name!r} is {self.state.value}: {detail}"

    def __reduce__(self) -> Any:
        return (type(self), (self.name, self.state, self.retry_after), self.__dict__)


class BreakerEvent(NamedTuple):
    """One state change, as listeners and :attr:`CircuitBreaker.history` see it."""

    name: str
    old: BreakerState
    new: BreakerState
    seq: int  # 1, 2, 3... per breaker: listeners run outside the lock, possibly out of order
    at: float  # the time source's monotonic clock
    reason: str


class BreakerStats(NamedTuple):
    name: str
    state: BreakerState
    consecutive_failures: int
    successes: int
    failures: int
    rejected: int
    times_opened: int
    state_changes: int
    window_failure_rate: float | None
    retry_after: float
    last_failure: str | None


class _Settings(NamedTuple):
    failure_threshold: int | None
    failure_rate: float | None
    window_size: int
    minimum_calls: int
    recovery_timeout: float
    half_open_max_calls: int
    success_threshold: int
    exceptions: Tuple[type, ...]
    exclude: Tuple[type, ...]
    time_source: Any


_BREAKERS: weakref.WeakValueDictionary[str, CircuitBreaker] = weakref.WeakValueDictionary()
_BREAKERS_LOCK = threading.Lock()
_ANON = itertools.count(1)


def get_breaker(name: str) -> CircuitBreaker:
    """The live breaker called ``name`` (as long as some handler still uses it)."""
    breaker = _BREAKERS.get(name)
    if breaker is None:
        known = sorted(_BREAKERS.keys())
        raise ConfigurationError(
            f"no circuit breaker named {name!r}; live breakers: {known or '(none)'}"
        )
    return breaker


def reset_breakers() -> None:
    """Close every live breaker and zero its counters (for tests and operators)."""
    for breaker in list(_BREAKERS.values()):
        breaker.reset()


class CircuitBreaker:
    """The shared state of one named breaker.  Built by :class:`CircuitBreakerHandler`."""

    def __init__(self, name: str, settings: _Settings) -> None:
        self.name = name
        self.settings = settings
        self._lock = threading.Lock()
        self._listeners: List[Callable[[BreakerEvent], Any]] = []
        self._clock: Any = settings.time_source
        self._plain = settings.failure_rate is None  # consecutive-failure mode: no window
        self.history: Deque[BreakerEvent] = deque(maxlen=100)
        self._reset_counters()

    def _reset_counters(self) -> None:
        self._state = CLOSED
        # Bumped on every transition; a trial outcome only counts in its own generation.
        self._generation = 0
        self._failures = 0  # consecutive, CLOSED
        self._window: Deque[bool] = deque(maxlen=self.settings.window_size)
        self._window_failures = 0
        self._opened_at = 0.0
        self._trials = 0  # admitted trial calls without an outcome yet
        self._trial_successes = 0
        self._successes = 0
        self._fast_successes = itertools.count()  # closed-state successes, counted lock-free
        self._total_failures = 0
        self._rejected = 0
        self._opened = 0
        self._changes = 0
        self._last_failure: str | None = None

    # --- the parts the handler calls ------------------------------------------------------
    def admit(self, clock: Any) -> Tuple[int, bool]:
        """Let a call through, as ``(generation, is_trial)``, or raise CircuitOpenError."""
        if self._state is CLOSED:  # lock-free: the common case costs one read
            return self._generation, False
        events: List[BreakerEvent] = []
        settings = self.settings
        with self._lock:
            self._clock = clock
            now = clock.monotonic()
            state = self._state
            if state is OPEN and self._since_open(now) >= settings.recovery_timeout:
                state = self._move(HALF_OPEN, now, "recovery timeout elapsed", events)
            admitted: Tuple[int, bool] | None = None
            remaining = 0.0
            if state is CLOSED:
                admitted = (self._generation, False)
            elif state is HALF_OPEN:
                # A slot is held until its trial reports: a success, a failure, or (through
                # record_interrupt/release) a cancellation or interruption.  It is never taken
                # back for running long: a slow trial is still probing the dependency, and a
                # second trial would break half_open_max_calls.
                if self._trials < settings.half_open_max_calls:
                    self._trials += 1
                    admitted = (self._generation, True)
            else:
                remaining = settings.recovery_timeout - self._since_open(now)
            if admitted is None:
                self._rejected += 1
        # Listeners and the raise both happen outside the lock (unwinding through a held
        # ``with`` block is also markedly slower, and this is the fast-fail path).
        if events:
            self._fire(events)
        if admitted is None:
            raise CircuitOpenError(self.name, state, max(0.0, remaining))
        return admitted

    def count_success(self) -> None:
        next(self._fast_successes)  # atomic in C: no lock on the success path

    def on_success(self, token: int | None, clock: Any) -> None:
        """A call succeeded (``token``: its trial admission, None for a closed-state call)."""
        events: List[BreakerEvent] = []
        with self._lock:
            self._clock = clock
            self._successes += 1
            state = self._state
            if state is CLOSED and token is None:
                self._failures = 0
                if not self._plain:
                    self._record_window(False)
            elif state is HALF_OPEN and token == self._generation:
                self._trials = max(0, self._trials - 1)
                self._trial_successes += 1
                if self._trial_successes >= self.settings.success_threshold:
                    self._move(CLOSED, clock.monotonic(), "trial calls succeeded", events)
        if events:
            self._fire(events)

    def on_failure(self, token: int | None, exception: BaseException, clock: Any) -> None:
        events: List[BreakerEvent] = []
        with self._lock:
            self._clock = clock
            self._total_failures += 1
            self._last_failure = repr(exception)
            state = self._state
            if state is CLOSED and token is None:
                self._failures += 1
                reason = self._should_open()
                if reason:
                    self._move(OPEN, clock.monotonic(), reason, events)
            elif state is HALF_OPEN and token == self._generation:
                self._trials = max(0, self._trials - 1)
                self._move(OPEN, clock.monotonic(), f"trial call failed: {exception!r}", events)
        if events:
            self._fire(events)

    def release(self, token: int) -> None:
        """A trial call ended without an outcome to count (another breaker rejected it)."""
        with self._lock:
            if token == self._generation and self._state is HALF_OPEN:
                self._trials = max(0, self._trials - 1)

    def _since_open(self, now: float) -> float:
        """Seconds the breaker has been open (with the lock held).  A clock that went backwards
        re-anchors the opening at ``now``: the breaker then waits one recovery timeout, never
        however far the clock jumped."""
        if now < self._opened_at:
            self._opened_at = now
        return now - self._opened_at

    def _record_window(self, failed: bool) -> None:
        window = self._window
        if len(window) == window.maxlen and window[0]:
            self._window_failures -= 1
        window.append(failed)
        if failed:
            self._window_failures += 1

    def _should_open(self) -> str:
        s = self.settings
        if s.failure_rate is None:
            if s.failure_threshold is not None and self._failures >= s.failure_threshold:
                return f"{self._failures} consecutive failures"
            return ""
        self._record_window(True)
        calls = len(self._window)
        if calls >= s.minimum_calls and self._window_failures / calls >= s.failure_rate:
            return f"{self._window_failures} failures in the last {calls} calls"
        return ""

    def _move(
        self, new: BreakerState, now: float, reason: str, events: List[BreakerEvent]
    ) -> BreakerState:
        old = self._state
        self._generation += 1
        self._state = new
        self._changes += 1
        if new is OPEN:
            self._opened_at = now
            self._opened += 1
        elif new is HALF_OPEN:
            self._trials = 0
            self._trial_successes = 0
        else:
            self._failures = 0
            self._window.clear()
            self._window_failures = 0
        event = BreakerEvent(self.name, old, new, self._changes, now, reason)
        self.history.append(event)
        events.append(event)
        return new

    def _fire(self, events: List[BreakerEvent]) -> None:
        for event in events:
            for listener in tuple(self._listeners):
                try:
                    listener(event)
                except Exception:
                    import logging

                    logging.getLogger("callpyback.handlers").exception(
                        "circuit breaker %r: state listener %r failed", self.name, listener
                    )

    # --- inspection and manual control ----------------------------------------------------
    def add_listener(self, listener: Callable[[BreakerEvent], Any]) -> None:
        """Call ``listener(event)`` on every state change (from the thread that caused it)."""
        if not callable(listener):
            raise ConfigurationError(
                f"circuit breaker {self.name!r}: listener {listener!r} must be callable "
                "taking one BreakerEvent"
            )
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[BreakerEvent], Any]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose recovery timeout passed reads half-open."""
        if self._state is OPEN and self._clock is not None:
            events: List[BreakerEvent] = []
            with self._lock:
                now = self._clock.monotonic()
                if self._state is OPEN and self._since_open(now) >= self.settings.recovery_timeout:
                    self._move(HALF_OPEN, now, "recovery timeout elapsed", events)
            if events:
                self._fire(events)
        return self._state

    @property
    def stats(self) -> BreakerStats:
        state = self.state
        with self._lock:
            remaining = 0.0
            if state is OPEN and self._clock is not None:
                elapsed = self._since_open(self._clock.monotonic())
                remaining = max(0.0, self.settings.recovery_timeout - elapsed)
            rate = None
            if self.settings.failure_rate is not None and self._window:
                rate = self._window_failures / len(self._window)
            # itertools.count exposes its position only through repr: "count(N)".
            fast = int(repr(self._fast_successes)[6:-1])
            return BreakerStats(
                self.name,
                self._state,
                self._failures,
                self._successes + fast,
                self._total_failures,
                self._rejected,
                self._opened,
                self._changes,
                rate,
                remaining,
                self._last_failure,
            )

    def open(self, clock: Any = None) -> None:
        """Force the breaker open now (e.g. during maintenance)."""
        self._transition(OPEN, "opened by hand", clock)

    def close(self) -> None:
        """Force the breaker closed, forgetting recent failures."""
        self._transition(CLOSED, "closed by hand", None)

    def _transition(self, new: BreakerState, reason: str, clock: Any) -> None:
        events: List[BreakerEvent] = []
        with self._lock:
            if clock is not None:
                self._clock = clock
            now = self._clock.monotonic() if self._clock is not None else 0.0
            if self._state is not new:
                self._move(new, now, reason, events)
            elif new is OPEN:
                self._opened_at = now
        if events:
            self._fire(events)

    def reset(self) -> None:
        """Back to a fresh closed breaker: counters, history and state (listeners stay)."""
        with self._lock:
            self._reset_counters()
            self.history.clear()

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self._state.value}>"


def _shared(name: str, settings: _Settings) -> CircuitBreaker:
    with _BREAKERS_LOCK:
        breaker = _BREAKERS.get(name)
        if breaker is None:
            breaker = _BREAKERS[name] = CircuitBreaker(name, settings)
        elif breaker.settings != settings:
            diff = [
                f"{field}={new!r} (existing: {old!r})"
                for field, old, new in zip(settings._fields, breaker.settings, settings)
                if old != new
            ]
            raise ConfigurationError(
                f"circuit breaker {name!r} already exists with other settings: {', '.join(diff)}; "
                "handlers that share a breaker by name must agree, or use another name"
            )
        return breaker


class CircuitBreakerHandler(ErrorHandler):
    """Open after repeated failures, fail fast with :class:`CircuitOpenError` while open, then
    let ``half_open_max_calls`` trial calls through once ``recovery_timeout`` seconds passed.

    Trip on ``failure_threshold`` consecutive failures (default 5), or on a ``failure_rate``
    (0-1) over the last ``window_size`` calls once ``minimum_calls`` were seen.
    ``success_threshold`` trial successes close it again; a failed trial re-opens it.  Only
    ``exceptions`` (minus ``exclude``) count as failures: any other exception means the
    dependency answered, and counts as a success.  ``fallback`` (a value) or ``fallback_factory``
    (``f(context)``) recovers calls rejected while open.  Handlers with the same ``name`` share
    one breaker; without a name each handler gets its own.  Time comes from ``time_source``, or
    the wrapped function's time source.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        failure_threshold: int | None = None,
        failure_rate: float | None = None,
        window_size: int = 20,
        minimum_calls: int | None = None,
        recovery_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        success_threshold: int = 1,
        exceptions: Any = (Exception,),
        exclude: Any = (),
        fallback: Any = MISSING,
        fallback_factory: Callable[[Any], Any] | None = None,
        listeners: Iterable[Callable[[BreakerEvent], Any]] = (),
        time_source: Any = None,
    ) -> None:
        owner = "CircuitBreakerHandler"
        if name is None:
            name = f"breaker-{next(_ANON)}"
        super().__init__(name=name)
        if failure_rate is not None and failure_threshold is not None:
            raise ConfigurationError(
                f"{owner}({name!r}): pass failure_threshold (consecutive failures) or "
                "failure_rate (share of the window), not both"
            )
        if failure_threshold is not None:
            number(failure_threshold, owner, "failure_threshold", minimum=1, integer=True)
        elif failure_rate is None:
            failure_threshold = 5
        if failure_rate is not None:
            number(failure_rate, owner, "failure_rate", inclusive=False, maximum=1.0)
        number(window_size, owner, "window_size", minimum=1, integer=True)
        if minimum_calls is None:
            minimum_calls = window_size
        number(minimum_calls, owner, "minimum_calls", minimum=1, integer=True, maximum=window_size)
        number(recovery_timeout, owner, "recovery_timeout", inclusive=False)
        number(half_open_max_calls, owner, "half_open_max_calls", minimum=1, integer=True)
        number(success_threshold, owner, "success_threshold", minimum=1, integer=True)
        if time_source is not None and not callable(getattr(time_source, "monotonic", None)):
            raise ConfigurationError(
                f"{owner}(time_source=...) needs a monotonic() method, got {time_source!r}"
            )
        if fallback is not MISSING and fallback_factory is not None:
            raise ConfigurationError(
                f"{owner}({name!r}): pass fallback or fallback_factory, not both"
            )
        if fallback_factory is not None and not callable(fallback_factory):
            raise ConfigurationError(
                f"{owner}(fallback_factory=...) must be callable f(context), "
                f"got {fallback_factory!r}"
            )
        settings = _Settings(
            failure_threshold,
            failure_rate,
            window_size,
            minimum_calls,
            float(recovery_timeout),
            half_open_max_calls,
            success_threshold,
            exception_types(exceptions, owner, "exceptions"),
            exception_types(exclude, owner, "exclude"),
            time_source,
        )
        self.breaker = _shared(name, settings)
        self.fallback = fallback
        self.fallback_factory = fallback_factory
        self._key = f"breaker:{name}"
        self._counted = settings.exceptions
        self._excluded = (CircuitOpenError, *settings.exclude)
        self._time_source = time_source
        for listener in listeners:
            self.breaker.add_listener(listener)

    # --- hooks the chain calls ------------------------------------------------------------
    # The closed, failure-free state is the hot path and costs nearly nothing: no fact is
    # recorded for a call that passes a closed breaker and succeeds (``breaker_state`` is then
    # absent from ``handler_state``, read it as "closed").  Only a half-open trial call carries
    # an admission token (the breaker's generation), so a late outcome from an earlier cycle
    # can neither close nor re-open the breaker.
    def before_attempt(self, context: Any) -> None:
        breaker = self.breaker
        if breaker._state is CLOSED:
            return
        try:
            token, trial = breaker.admit(self._time_source or context.time_source)
        except CircuitOpenError as exc:
            context.note("breaker_state", exc.state)
            raise
        if trial:
            context.note(self._key, token)
        context.note("breaker_state", HALF_OPEN if trial else CLOSED)

    def after_success(self, context: Any) -> None:
        breaker = self.breaker
        if breaker._plain and breaker._state is CLOSED and not breaker._failures:
            breaker.count_success()
            return
        breaker.on_success(self._token(context), self._time_source or context.time_source)
        context.note("breaker_state", breaker._state)

    def record_failure(self, exception: BaseException, context: Any) -> None:
        if isinstance(exception, CircuitOpenError) and exception.name == self.name:
            return  # our own rejection: nothing was admitted
        token = self._token(context)
        breaker = self.breaker
        if isinstance(exception, CircuitOpenError):
            if token is not None:
                breaker.release(token)  # another breaker rejected the call we let through
            return
        clock = self._time_source or context.time_source
        if isinstance(exception, self._counted) and not isinstance(exception, self._excluded):
            breaker.on_failure(token, exception, clock)
        else:
            breaker.on_success(token, clock)
        context.note("breaker_state", breaker._state)

    def record_interrupt(self, exception: BaseException, context: Any) -> None:
        # Cancelled or interrupted: neither a success nor a failure, but a trial slot it held
        # must come back now rather than after another recovery timeout.
        token = self._token(context)
        if token is not None:
            self.breaker.release(token)

    def _token(self, context: Any) -> int | None:
        token: int | None = context.handler_state.get(self._key)
        if token is not None:
            context.note(self._key, None)  # consumed: a retry is admitted afresh
        return token

    def handle(self, exception: BaseException, context: Any) -> Decision | None:
        if not isinstance(exception, CircuitOpenError) or exception.name != self.name:
            return None
        if self.fallback_factory is not None:
            return Recover(self.fallback_factory(context))
        if self.fallback is not MISSING:
            return Recover(self.fallback)
        return None

    # --- conveniences ---------------------------------------------------------------------
    @property
    def state(self) -> BreakerState:
        return self.breaker.state

    @property
    def stats(self) -> BreakerStats:
        return self.breaker.stats

    def add_listener(self, listener: Callable[[BreakerEvent], Any]) -> None:
        self.breaker.add_listener(listener)

    def reset(self) -> None:
        self.breaker.reset()

    def __reduce__(self) -> Any:
        s = self.breaker.settings
        kwargs: Dict[str, Any] = {
            "failure_threshold": s.failure_threshold,
            "failure_rate": s.failure_rate,
            "window_size": s.window_size,
            "minimum_calls": s.minimum_calls,
            "recovery_timeout": s.recovery_timeout,
            "half_open_max_calls": s.half_open_max_calls,
            "success_threshold": s.success_threshold,
            "exceptions": s.exceptions,
            "exclude": s.exclude,
            "fallback": self.fallback,
            "fallback_factory": self.fallback_factory,
            "time_source": s.time_source,
        }
        return (_rebuild, (self.name, kwargs))

    def __repr__(self) -> str:
        s = self.breaker.settings
        trip = (
            f"failure_rate={s.failure_rate!r}, window_size={s.window_size!r}"
            if s.failure_rate is not None
            else f"failure_threshold={s.failure_threshold!r}"
        )
        return (
            f"CircuitBreakerHandler({self.name!r}, {trip}, "
            f"recovery_timeout={s.recovery_timeout!r}, "
            f"half_open_max_calls={s.half_open_max_calls!r}, "
            f"exceptions={type_names(s.exceptions)}, "
            f"state={self.breaker._state.value!r})"
        )


def _rebuild(name: str, kwargs: Dict[str, Any]) -> CircuitBreakerHandler:
    return CircuitBreakerHandler(name, **kwargs)
