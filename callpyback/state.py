"""State backends: where circuit breakers and sliding windows keep their state.

By default each process keeps its own: a breaker's counters live in the breaker, a window's
events in a dict of deques (:class:`MemoryBackend`, at the cost the breaker always had).  A
backend shared by processes and machines (the ``callpyback-redis`` plugin's ``RedisBackend``)
is plugged in with :func:`use`; every breaker and window its patterns select is bound to it,
whether built before or after.

The seam, for backend authors, is three small Protocols, in the style of the import hook's
``Selector``:

* :class:`StateBackend`: ``bind_breaker(sink)`` returns the breaker's :class:`SharedBreakerState`
  (None: keep the state in the process) and ``window(...)`` returns a :class:`WindowCounter`;
* :class:`SharedBreakerState`: the transitions a breaker asks of the shared store, each one atomic
  there, each returning the :class:`BreakerSnapshot` it left;
* :class:`BreakerSink`: what a breaker offers the backend (its name and policy, and three
  callbacks: a change seen elsewhere, the store lost, the store back).

``import callpyback.state`` is light: no threads, sockets or third-party imports; a backend
starts its threads when the first breaker or window is bound to it, never at import.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from typing import (
    TYPE_CHECKING,
    Any,
    Deque,
    Dict,
    Hashable,
    Iterable,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
)

from typing_extensions import Literal, Protocol, runtime_checkable

from .errors import CallPyBackError, ConfigurationError

if TYPE_CHECKING:
    from .handlers._breaker import CircuitBreaker

__all__ = [
    "MEMORY",
    "BreakerPolicy",
    "BreakerSink",
    "BreakerSnapshot",
    "Hit",
    "MemoryBackend",
    "MemoryWindow",
    "OutagePolicy",
    "SharedBreakerState",
    "StateBackend",
    "StateUnavailableError",
    "Window",
    "WindowCounter",
    "backend_for",
    "current",
    "use",
    "window",
]

#: What a shared backend does while its store is unreachable: ``"local"`` keeps each process's
#: own state (a breaker goes on from the last state it saw; a window counts per process),
#: ``"reject"`` refuses (a breaker fails fast, a window blocks), ``"allow"`` lets everything
#: through (no protection: say so in the logs).
OutagePolicy = Literal["local", "reject", "allow"]
OUTAGE_POLICIES: Tuple[str, ...] = ("local", "reject", "allow")


class StateUnavailableError(CallPyBackError):
    """A shared state store could not be reached in time (the caller falls back)."""


class BreakerPolicy(NamedTuple):
    """A breaker's thresholds, as a shared store needs them (sent with each transition)."""

    failure_threshold: Optional[int]
    failure_rate: Optional[float]
    window_size: int
    minimum_calls: int
    recovery_timeout: float
    half_open_max_calls: int
    success_threshold: int


class BreakerSnapshot(NamedTuple):
    """A breaker's shared state as the store left it.

    ``version`` grows with every write (a snapshot older than one already seen is ignored);
    ``generation`` changes with every state transition; ``failures`` is the consecutive count
    (or the failures in the window, with ``calls`` the window's length); ``retry_after`` is
    how long an open breaker has left, by the store's clock; ``trials`` counts the trial leases
    held fleet-wide.
    """

    state: str  # "closed" | "open" | "half_open"
    generation: int
    version: int
    failures: int
    calls: int
    retry_after: float
    trials: int
    reason: str


@runtime_checkable
class BreakerSink(Protocol):
    """What a circuit breaker gives a backend (:class:`~callpyback.handlers.CircuitBreaker`)."""

    name: str
    policy: BreakerPolicy

    def shared_changed(self, snapshot: BreakerSnapshot) -> None:
        """A newer snapshot arrived (published by another process, or polled)."""

    def shared_lost(self) -> None:
        """The store became unreachable: go on from local state (or the outage policy)."""

    def shared_restored(self, snapshot: BreakerSnapshot) -> None:
        """The store is back; ``snapshot`` is authoritative."""


@runtime_checkable
class SharedBreakerState(Protocol):
    """One breaker's state in a shared store.  Every method is one atomic operation there,
    bounded in time; one that cannot reach the store raises :class:`StateUnavailableError`
    (after telling every bound sink ``shared_lost``)."""

    #: False while the store is unreachable (the breaker then runs on local state).
    live: bool
    #: What the breaker does meanwhile.
    on_outage: OutagePolicy
    #: Seconds within which a change made elsewhere reaches this process.
    poll_interval: float

    def admit(self) -> Tuple[BreakerSnapshot, Optional[str]]:
        """For an open or half-open breaker: the state now, and a trial lease if one was
        granted (an open breaker whose recovery timeout passed turns half-open here)."""

    def record(self, failed: bool, lease: Optional[str], reason: str) -> BreakerSnapshot:
        """A call's outcome (``lease``: the trial's, or None for a call admitted closed)."""

    def count_success(self, generation: int) -> None:
        """A closed-state success in ``generation``: folded into the store later, off the
        call path (and dropped if the breaker has left that generation meanwhile)."""

    def release(self, lease: str) -> BreakerSnapshot:
        """A trial ended with no outcome to count (cancelled): give its lease back."""

    def force(self, state: str, reason: str) -> BreakerSnapshot:
        """Set the state by hand (``"open"`` or ``"closed"``)."""

    def reset(self) -> BreakerSnapshot:
        """Forget everything: a fresh closed breaker."""

    def close(self) -> None:
        """Unbind (the breaker moves to another backend, or is gone)."""


class Hit(NamedTuple):
    """What a window answered: ``events`` in the window (this one included when it was
    recorded), ``over`` when the limit was already reached, and where the answer came from:
    ``"memory"``, ``"shared"``, ``"local"`` (a shared window's per-process fallback) or
    ``"unchecked"`` (the store was unreachable and the outage policy decided ``over``)."""

    events: int
    over: bool
    source: str


@runtime_checkable
class WindowCounter(Protocol):
    """A sliding-window log: per key, the events of the last ``seconds`` seconds."""

    def hit(self, key: Hashable, now: float, record_over: bool) -> Hit:
        """Count an event for ``key`` at ``now`` (the caller's monotonic clock; a shared
        store uses its own), atomically with the check: it is recorded if the window held
        fewer than the limit, or always with ``record_over``."""

    def close(self) -> None:
        """Release what the counter holds."""


@runtime_checkable
class StateBackend(Protocol):
    """Where breakers and windows keep state.  ``name`` labels it in logs and reprs."""

    name: str

    def bind_breaker(self, sink: BreakerSink) -> Optional[SharedBreakerState]:
        """The shared state of breaker ``sink.name``, or None to keep it in the process."""

    def window(self, name: str, limit: int, seconds: float, max_keys: int) -> WindowCounter:
        """The window counter ``name`` (at most ``limit`` events per ``seconds`` per key)."""

    def close(self) -> None:
        """Stop background work and close connections (after :func:`use` replaced it)."""


# --- the in-process backend -----------------------------------------------------------------
class MemoryWindow:
    """Each key's event times in a deque, under one lock held only for the bookkeeping.

    Keys with nothing left in their window are forgotten once ``max_keys`` are held, so memory
    stays bounded.  A lock held by another thread at ``fork()`` is replaced in the child.
    """

    def __init__(self, limit: int, seconds: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.seconds = float(seconds)
        self.max_keys = max_keys
        self.source = "memory"
        self._events: Dict[Any, Deque[float]] = {}
        self.lock = threading.Lock()
        _AFTER_FORK.add(self)

    def hit(self, key: Hashable, now: float, record_over: bool) -> Hit:
        """Count one event for ``key`` at ``now`` and say whether it is over the limit."""
        with self.lock:
            events = self._events.get(key)
            if events is None:
                if len(self._events) >= self.max_keys:
                    self._sweep(now)
                events = self._events[key] = deque()
            horizon = now - self.seconds
            while events and events[0] <= horizon:
                events.popleft()
            over = len(events) >= self.limit
            if not over or record_over:
                events.append(now)
            return Hit(len(events), over, self.source)

    def _sweep(self, now: float) -> None:
        horizon = now - self.seconds
        for key in [k for k, ev in self._events.items() if not ev or ev[-1] <= horizon]:
            del self._events[key]

    def _after_fork(self) -> None:
        # The events are kept: the child goes on from the parent's counts.
        self.lock = threading.Lock()

    def close(self) -> None:
        """Nothing to close."""
        pass

    def __repr__(self) -> str:
        return f"MemoryWindow(limit={self.limit}, seconds={self.seconds:g})"


class MemoryBackend:
    """The in-process backend: a breaker keeps its state in its own fields (no store, so
    ``bind_breaker`` returns None) and a window in a :class:`MemoryWindow`."""

    name = "memory"

    def bind_breaker(self, sink: BreakerSink) -> None:
        """None: an in-process breaker keeps its state in its own fields."""
        return None

    def window(self, name: str, limit: int, seconds: float, max_keys: int) -> MemoryWindow:
        """An in-process window counter."""
        return MemoryWindow(limit, seconds, max_keys)

    def close(self) -> None:
        """Nothing to close."""
        pass

    def __repr__(self) -> str:
        return "MemoryBackend()"


#: The default backend: every process keeps its own state.
MEMORY = MemoryBackend()


# --- selection ------------------------------------------------------------------------------
class _Selection(NamedTuple):
    backend: Any
    breakers: Tuple[str, ...]
    windows: Tuple[str, ...]
    exclude: Tuple[str, ...]


_lock = threading.Lock()
_selection = _Selection(MEMORY, ("*",), ("*",), ())
_breakers: weakref.WeakSet[Any] = weakref.WeakSet()
_windows: weakref.WeakSet[Window] = weakref.WeakSet()


def _patterns(value: Iterable[str], what: str) -> Tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    items = tuple(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise ConfigurationError(
                f"callpyback.state.use({what}=...): expected name patterns such as "
                f"'payments' or 'db-*', got {item!r}"
            )
    return items


def use(
    backend: Any,
    *,
    breakers: Sequence[str] = ("*",),
    windows: Sequence[str] = ("*",),
    exclude: Sequence[str] = (),
) -> Any:
    """Make ``backend`` the state backend; returns the previous one (not closed).

    Breakers whose name matches one of ``breakers`` and windows (such as ``finance.velocity``)
    matching ``windows`` use it, unless ``exclude`` matches them (``fnmatch`` patterns); the
    rest stay in the process.  A breaker or window built with ``shared=True`` uses it whatever
    the patterns say, one built with ``shared=False`` never does.  Live breakers and windows are
    re-bound now, and those built later bind to it as they are built.
    """
    global _selection
    for method in ("bind_breaker", "window", "close"):
        if not callable(getattr(backend, method, None)):
            raise ConfigurationError(
                f"callpyback.state.use(): {backend!r} is not a state backend (it needs "
                f"bind_breaker(sink), window(name, limit, seconds, max_keys) and close(); "
                "see callpyback.state.StateBackend)"
            )
    selection = _Selection(
        backend,
        _patterns(breakers, "breakers"),
        _patterns(windows, "windows"),
        _patterns(exclude, "exclude"),
    )
    with _lock:
        previous = _selection.backend
        _selection = selection
        live_breakers = list(_breakers)
        live_windows = list(_windows)
    for breaker in live_breakers:
        breaker._bind_state()
    for counter in live_windows:
        counter._bind()
    return previous


def current() -> Any:
    """The backend :func:`use` selected (:data:`MEMORY` unless something chose another)."""
    return _selection.backend


def backend_for(kind: str, name: str, shared: Optional[bool] = None) -> Any:
    """The backend a ``kind`` (``"breaker"`` or ``"window"``) called ``name`` uses."""
    selection = _selection
    backend = selection.backend
    if shared is False or backend is MEMORY:
        return MEMORY
    if shared is True:
        return backend
    from fnmatch import fnmatchcase

    patterns = selection.breakers if kind == "breaker" else selection.windows
    if any(fnmatchcase(name, p) for p in selection.exclude):
        return MEMORY
    if any(fnmatchcase(name, p) for p in patterns):
        return backend
    return MEMORY


def _attach_breaker(breaker: CircuitBreaker) -> None:
    """Called by each new breaker: track it for :func:`use`, and bind it now."""
    with _lock:
        _breakers.add(breaker)
    breaker._bind_state()


# --- windows, as their users see them -------------------------------------------------------
class Window:
    """A named sliding window, on whichever backend :func:`use` selects for ``name``.

    ``hit(key, now)`` counts an event for ``key`` (for example an account) and says whether
    ``limit`` events were already seen in the last ``seconds`` seconds.  Build it with
    :func:`window`.
    """

    def __init__(
        self,
        name: str,
        limit: int,
        seconds: float,
        *,
        shared: Optional[bool] = None,
        max_keys: int = 100_000,
    ) -> None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ConfigurationError(f"window {name!r}: limit must be an int >= 1, got {limit!r}")
        if not isinstance(seconds, (int, float)) or not seconds > 0:
            raise ConfigurationError(
                f"window {name!r}: seconds must be a positive number, got {seconds!r}"
            )
        self.name = name
        self.limit = limit
        self.seconds = float(seconds)
        self.shared = shared
        self.max_keys = max_keys
        self._backend: Any = None
        self.impl: Any = None
        self._bind_lock = threading.Lock()
        with _lock:
            _windows.add(self)
        self._bind()

    def _bind(self) -> None:
        backend = backend_for("window", self.name, self.shared)
        with self._bind_lock:
            if backend is self._backend:
                return
            old = self.impl
            self.impl = backend.window(self.name, self.limit, self.seconds, self.max_keys)
            self._backend = backend
        if old is not None:
            old.close()

    @property
    def backend(self) -> Any:
        """The backend this window counts on."""
        return self._backend

    def hit(self, key: Hashable, now: float, record_over: bool = False) -> Hit:
        """Count an event for ``key`` at ``now`` (see :meth:`WindowCounter.hit`)."""
        return self.impl.hit(key, now, record_over)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return (
            f"<Window {self.name!r} {self.limit}/{self.seconds:g}s on "
            f"{getattr(self._backend, 'name', self._backend)!r}>"
        )


def window(
    name: str,
    limit: int,
    seconds: float,
    *,
    shared: Optional[bool] = None,
    max_keys: int = 100_000,
) -> Window:
    """A sliding window called ``name``: at most ``limit`` events per ``seconds`` per key.

    ``shared`` None follows :func:`use`'s patterns; True always uses the selected backend;
    False always stays in the process.  ``max_keys`` bounds an in-process window's memory.
    """
    return Window(name, limit, seconds, shared=shared, max_keys=max_keys)


#: In-process windows holding a lock; given fresh locks in a forked child.
_AFTER_FORK: weakref.WeakSet[Any] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    for item in list(_AFTER_FORK):
        item._after_fork()
    for counter in list(_windows):
        counter._bind_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
