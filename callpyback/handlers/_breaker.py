"""Circuit breaker: fail fast while a dependency is down, probe it again after a pause.

State lives in a :class:`CircuitBreaker` shared by name: every handler built with the same
``name`` (and the same settings) drives the same breaker, so several functions can protect one
dependency together, while different names never collide.  The breaker's lock is held only
while its counters or state change, never around the protected call.

Where the state lives is the state backend's business (:mod:`callpyback.state`): by default the
breaker's own fields (one process), or a shared store such as Redis, bound through
:meth:`CircuitBreaker._bind_state`.  Bound to a store, the breaker's fields are a cached view of
the shared state, refreshed by the backend (published changes, polling, and the reply to each
transition it asks for); a closed breaker's calls never wait on the store.  The engine sees the
breaker through ``hot`` (see :mod:`callpyback._handling`): ``hot.idle`` is true while a call has
nothing to tell the breaker (closed, no failure counted), and the engine then skips the hooks.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, List, NamedTuple, Tuple

from .. import state as _state
from .._handling import MISSING, Decision, Recover
from ..errors import CallPyBackError, ConfigurationError
from ..state import BreakerPolicy, BreakerSnapshot, StateUnavailableError
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
_BY_VALUE = {s.value: s for s in BreakerState}


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
    shared: bool | None = None  # None: as callpyback.state.use() selects; False: never shared


class _Hot:
    """The engine's view of a breaker (see :mod:`callpyback._handling`): while ``idle`` is
    true a call has nothing to tell it, so the engine skips ``before_attempt`` and
    ``after_success`` and calls ``count()`` on success instead.  The breaker keeps ``idle`` up
    to date whenever its state, its failure count or its store's reachability changes."""

    __slots__ = ("count", "idle")

    def __init__(self, count: Callable[[], Any]) -> None:
        self.idle = True
        self.count = count

    def __repr__(self) -> str:
        return f"<breaker hot idle={self.idle}>"


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
    """The shared state of one named breaker.  Built by :class:`CircuitBreakerHandler`.

    It is also the :class:`~callpyback.state.BreakerSink` a state backend talks to: ``name``,
    ``policy`` and the ``shared_*`` callbacks.
    """

    def __init__(self, name: str, settings: _Settings) -> None:
        self.name = name
        self.settings = settings
        self.policy = BreakerPolicy(
            settings.failure_threshold,
            settings.failure_rate,
            settings.window_size,
            settings.minimum_calls,
            settings.recovery_timeout,
            settings.half_open_max_calls,
            settings.success_threshold,
        )
        self._lock = threading.Lock()
        self._listeners: List[Callable[[BreakerEvent], Any]] = []
        self._clock: Any = settings.time_source
        self._plain = settings.failure_rate is None  # consecutive-failure mode: no window
        self.history: Deque[BreakerEvent] = deque(maxlen=100)
        # Closed-state successes, counted lock-free (atomic in C).  One counter for the
        # breaker's life: the engine holds its bound ``__next__`` (``hot.count``).
        self._fast_successes = itertools.count()
        self._fast_base = 0
        self.hot = _Hot(self._fast_successes.__next__)
        #: The state backend this breaker is bound to, and its store (None: in the process).
        self._backend: Any = None
        self._store: Any = None
        #: Whether a closed breaker admits a call without asking anything (False only while a
        #: store is unreachable and the outage policy is "reject").
        self._fast_admit = True
        self._reset_counters()
        _state._attach_breaker(self)

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
        self._fast_base = self._fast_count()
        self._total_failures = 0
        self._rejected = 0
        self._opened = 0
        self._changes = 0
        self._last_failure: str | None = None
        # The cached view of a shared store: the newest snapshot applied, and until when
        # (time.monotonic) calls are rejected without asking the store.
        self._version = 0
        self._deadline = 0.0
        self._shared_calls = 0
        self._sync_idle()

    def _fast_count(self) -> int:
        # itertools.count exposes its position only through repr: "count(N)".
        return int(repr(self._fast_successes)[6:-1])

    def _sync_idle(self) -> None:
        """Recompute ``hot.idle`` and ``_fast_admit`` (after any change of state or store)."""
        store = self._store
        outage = None if store is None or store.live else store.on_outage
        self._fast_admit = outage != "reject"
        if outage == "allow":
            self.hot.idle = True
        elif outage == "reject":
            self.hot.idle = False
        else:
            self.hot.idle = self._state is CLOSED and self._plain and not self._failures

    # --- the parts the handler calls ------------------------------------------------------
    def admit(self, clock: Any) -> Tuple[Any, bool]:
        """Let a call through, as ``(token, is_trial)``, or raise CircuitOpenError."""
        store = self._store
        if store is not None:
            if store.live:
                try:
                    return self._admit_shared(store)
                except StateUnavailableError:
                    pass  # the store told us shared_lost(): the outage policy decides
            if store.on_outage == "reject":
                with self._lock:
                    self._rejected += 1
                raise CircuitOpenError(self.name, OPEN, store.poll_interval)
            if store.on_outage == "allow":
                return self._generation, False
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

    def _admit_shared(self, store: Any) -> Tuple[Any, bool]:
        # Open (or half-open with every trial lease taken): reject from the cached view until
        # its deadline, without asking the store; a published change moves the deadline.
        if self._state is CLOSED:
            return self._generation, False
        now = time.monotonic()
        deadline = self._deadline
        if now < deadline:
            state = self._state
            with self._lock:
                self._rejected += 1
            raise CircuitOpenError(self.name, state, deadline - now if state is OPEN else 0.0)
        snapshot, lease = store.admit()
        self._apply(snapshot)
        if lease is not None:
            return lease, True
        if snapshot.state == "closed":
            return snapshot.generation, False
        with self._lock:
            self._rejected += 1
        state = _BY_VALUE[snapshot.state]
        raise CircuitOpenError(self.name, state, snapshot.retry_after if state is OPEN else 0.0)

    def count_success(self) -> None:
        next(self._fast_successes)  # atomic in C: no lock on the success path

    def on_success(self, token: Any, clock: Any) -> None:
        """A call succeeded (``token``: its trial admission, None for a closed-state call)."""
        store = self._store
        if store is not None:
            if store.live:
                try:
                    self._record_shared(store, token, None)
                    return
                except StateUnavailableError:
                    pass
            if store.on_outage != "local":
                next(self._fast_successes)
                return
        events: List[BreakerEvent] = []
        with self._lock:
            self._clock = clock
            self._successes += 1
            state = self._state
            if state is CLOSED and token is None:
                self._failures = 0
                if not self._plain:
                    self._record_window(False)
                self._sync_idle()
            elif state is HALF_OPEN and token == self._generation:
                self._trials = max(0, self._trials - 1)
                self._trial_successes += 1
                if self._trial_successes >= self.settings.success_threshold:
                    self._move(CLOSED, clock.monotonic(), "trial calls succeeded", events)
        if events:
            self._fire(events)

    def on_failure(self, token: Any, exception: BaseException, clock: Any) -> None:
        store = self._store
        if store is not None:
            if store.live:
                try:
                    self._record_shared(store, token, exception)
                    return
                except StateUnavailableError:
                    pass
            if store.on_outage != "local":
                with self._lock:
                    self._total_failures += 1
                    self._last_failure = repr(exception)
                return
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
                self._sync_idle()
            elif state is HALF_OPEN and token == self._generation:
                self._trials = max(0, self._trials - 1)
                self._move(OPEN, clock.monotonic(), f"trial call failed: {exception!r}", events)
        if events:
            self._fire(events)

    def _record_shared(self, store: Any, token: Any, exception: BaseException | None) -> None:
        """An outcome, told to the store: a trial's (its lease) or a closed-state failure go
        now, and the reply refreshes the view; a closed-state success is only counted (the
        store folds it in off the call path), and the cached failure count drops to 0."""
        lease = token if isinstance(token, str) else None
        if exception is None and lease is None:
            with self._lock:
                self._successes += 1
                if self._state is CLOSED:
                    store.count_success(self._generation)
                    if self._plain and self._failures:
                        self._failures = 0  # the reset is on its way to the store
                        self._sync_idle()
            return
        if exception is None:
            snapshot = store.record(False, lease, "")
            with self._lock:
                self._successes += 1
        else:
            if lease is None and self._state is not CLOSED:
                # Admitted closed, failed after the breaker left closed: as in the process,
                # only the trials of the current generation count.
                with self._lock:
                    self._total_failures += 1
                    self._last_failure = repr(exception)
                return
            snapshot = store.record(True, lease, repr(exception))
            with self._lock:
                self._total_failures += 1
                self._last_failure = repr(exception)
        self._apply(snapshot)

    def release(self, token: Any) -> None:
        """A trial call ended without an outcome to count (another breaker rejected it)."""
        if isinstance(token, str):  # a shared store's lease
            store = self._store
            if store is not None and store.live:
                try:
                    self._apply(store.release(token))
                except StateUnavailableError:
                    pass
            return
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
        self._sync_idle()
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

    # --- the state backend's side (callpyback.state.BreakerSink) --------------------------
    def _bind_state(self) -> None:
        """Bind to the backend :mod:`callpyback.state` selects for this name (again after
        :func:`callpyback.state.use`).  Leaving a store, the cached view becomes local state."""
        backend = _state.backend_for("breaker", self.name, self.settings.shared)
        if backend is self._backend:
            return
        old, self._store, self._backend = self._store, None, backend
        if old is not None:
            old.close()
            self._seed_local()
        store = backend.bind_breaker(self)
        if store is not None:
            self._store = store
        with self._lock:
            self._sync_idle()

    @property
    def backend(self) -> Any:
        """The state backend this breaker is bound to (:data:`callpyback.state.MEMORY`...)."""
        return self._backend

    def shared_changed(self, snapshot: BreakerSnapshot) -> None:
        """A newer snapshot from the store (see :class:`callpyback.state.BreakerSink`)."""
        self._apply(snapshot)

    def shared_lost(self) -> None:
        """The store is unreachable: go on from the cached view as local state."""
        self._seed_local()

    def shared_restored(self, snapshot: BreakerSnapshot) -> None:
        """The store is back: its state wins over what this process did meanwhile."""
        self._apply(snapshot._replace(reason=f"shared state restored: {snapshot.reason}"), True)

    def _seed_local(self) -> None:
        with self._lock:
            clock = self._clock
            if clock is None:
                from ..time_sources import SystemTimeSource

                clock = self._clock = SystemTimeSource()
            if self._state is OPEN:
                left = max(0.0, self._deadline - time.monotonic())
                self._opened_at = clock.monotonic() - (self.settings.recovery_timeout - left)
            self._trials = 0
            self._trial_successes = 0
            self._window.clear()
            self._window_failures = 0
            self._version = 0
            self._sync_idle()

    def _apply(self, snapshot: BreakerSnapshot, force: bool = False) -> None:
        """Make ``snapshot`` the cached view (if newer), firing listeners for a state change."""
        events: List[BreakerEvent] = []
        with self._lock:
            if not force and snapshot.version <= self._version:
                return  # stale: a reply or a message overtaken by a newer one
            self._version = snapshot.version
            new = _BY_VALUE[snapshot.state]
            now = time.monotonic()
            if new is OPEN:
                self._deadline = now + snapshot.retry_after
            elif new is HALF_OPEN and snapshot.trials >= self.settings.half_open_max_calls:
                # Every trial lease is taken: ask again after a poll interval, or sooner when
                # a change is published (a trial's outcome, a lease given back).
                store = self._store
                self._deadline = now + (store.poll_interval if store is not None else 0.0)
            else:
                self._deadline = 0.0
            self._failures = snapshot.failures
            self._window_failures = snapshot.failures if not self._plain else 0
            self._shared_calls = snapshot.calls
            old = self._state
            if new is not old or (new is OPEN and snapshot.generation != self._generation):
                self._state = new
                self._changes += 1
                if new is OPEN:
                    self._opened += 1
                clock = self._clock
                at = clock.monotonic() if clock is not None else now
                event = BreakerEvent(self.name, old, new, self._changes, at, snapshot.reason)
                self.history.append(event)
                events.append(event)
            self._generation = snapshot.generation
            self._sync_idle()
        if events:
            self._fire(events)

    # --- inspection and manual control ----------------------------------------------------
    def add_listener(self, listener: Callable[[BreakerEvent], Any]) -> None:
        """Call ``listener(event)`` on every state change (from the thread that caused it, or,
        for a change made in another process, the backend's thread that learnt of it)."""
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

    def _shared_live(self) -> bool:
        store = self._store
        return store is not None and bool(store.live)

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose recovery timeout passed reads half-open."""
        if self._shared_live():
            if self._state is OPEN and time.monotonic() >= self._deadline:
                return HALF_OPEN  # the store turns it half-open at the next admission
            return self._state
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
        shared = self._shared_live()
        with self._lock:
            remaining = 0.0
            rate = None
            if shared:
                if state is OPEN:
                    remaining = max(0.0, self._deadline - time.monotonic())
                if self.settings.failure_rate is not None and self._shared_calls:
                    rate = self._window_failures / self._shared_calls
            else:
                if state is OPEN and self._clock is not None:
                    elapsed = self._since_open(self._clock.monotonic())
                    remaining = max(0.0, self.settings.recovery_timeout - elapsed)
                if self.settings.failure_rate is not None and self._window:
                    rate = self._window_failures / len(self._window)
            fast = self._fast_count() - self._fast_base
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
        """Force the breaker open now (e.g. during maintenance); fleet-wide when shared."""
        self._transition(OPEN, "opened by hand", clock)

    def close(self) -> None:
        """Force the breaker closed, forgetting recent failures; fleet-wide when shared."""
        self._transition(CLOSED, "closed by hand", None)

    def _transition(self, new: BreakerState, reason: str, clock: Any) -> None:
        if clock is not None:
            self._clock = clock
        store = self._store
        if store is not None and store.live:
            try:
                snapshot = store.force(new.value, reason)
            except StateUnavailableError:
                pass
            else:
                self._apply(snapshot)
                return
        events: List[BreakerEvent] = []
        with self._lock:
            if self._clock is None:
                # Opened by hand before any call: anchored at 0.0, the first call's clock
                # would have found the recovery timeout long passed.
                from ..time_sources import SystemTimeSource

                self._clock = SystemTimeSource()
            now = self._clock.monotonic()
            if self._state is not new:
                self._move(new, now, reason, events)
            elif new is OPEN:
                self._opened_at = now
        if events:
            self._fire(events)

    def reset(self) -> None:
        """Back to a fresh closed breaker: counters, history and state (listeners stay); a
        shared breaker is reset for every process."""
        store = self._store
        snapshot = None
        if store is not None and store.live:
            with contextlib.suppress(StateUnavailableError):  # then reset locally only
                snapshot = store.reset()
        with self._lock:
            self._reset_counters()
            self.history.clear()
        if snapshot is not None:
            self._apply(snapshot._replace(reason="reset"), True)
            with self._lock:
                self.history.clear()

    def __repr__(self) -> str:
        where = "" if self._store is None else f" on {getattr(self._backend, 'name', '?')}"
        return f"<CircuitBreaker {self.name!r} {self._state.value}{where}>"


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
    the wrapped function's time source.  ``shared`` says whether the state may live in the
    shared backend :func:`callpyback.state.use` selected: None (as its patterns say), True
    (always), False (never: this process only).
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
        shared: bool | None = None,
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
        if shared is not None and not isinstance(shared, bool):
            raise ConfigurationError(
                f"{owner}(shared=...) must be True, False or None, got {shared!r}"
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
            shared,
        )
        self.breaker = _shared(name, settings)
        self.fallback = fallback
        self.fallback_factory = fallback_factory
        self._key = f"breaker:{name}"
        self._counted = settings.exceptions
        self._excluded = (CircuitOpenError, *settings.exclude)
        self._time_source = time_source
        #: The engine skips before_attempt/after_success while ``hot.idle`` (see _Hot).
        self.hot = self.breaker.hot
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
        if breaker._state is CLOSED and breaker._fast_admit:
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
        if breaker.hot.idle:
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

    def _token(self, context: Any) -> Any:
        # An int generation (in-process state) or a str lease (a shared store's trial).
        token: Any = context.handler_state.get(self._key)
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
            "shared": s.shared,
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
            f"state={self.breaker._state.value!r}"
            + ("" if s.shared is None else f", shared={s.shared!r}")
            + ")"
        )


def _rebuild(name: str, kwargs: Dict[str, Any]) -> CircuitBreakerHandler:
    return CircuitBreakerHandler(name, **kwargs)
