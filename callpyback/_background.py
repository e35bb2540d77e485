"""Background observers: a bounded queue served by one lazily started worker thread.

The caller's thread only takes a snapshot of the context and appends it to a deque; the worker
runs the observer (awaiting it on a private event loop if it is ``async def``).  Nothing starts
at import: the thread is created by the first submission, restarted in a forked child, flushed
at exit, and may be stopped with :func:`shutdown` (the next submission starts it again).

Overflow policy (see :func:`configure`): ``"drop"`` (default) discards the *new* item and counts
it, so a slow observer never slows the caller; ``"block"`` waits up to ``block_timeout`` for room
and then drops and counts.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from typing import Any, Callable, Deque, Dict, Optional, Tuple

from .errors import ConfigurationError

__all__ = [
    "background_update",
    "configure",
    "defer",
    "flush",
    "shutdown",
    "stats",
    "submit_call",
]

#: ``(registration, context)`` from generic paths, or the raw facts of a notification from the
#: compiled fast path: ``(registration, info, state, args, kwargs, value, time, attempt, start)``;
#: the worker builds the context then, so the caller's thread pays for a tuple, not a snapshot.
_Item = Tuple[Any, ...]

#: How the worker lingers once its queue is empty, before it goes idle (see _Dispatcher._run).
_NAP = 0.002
_LINGER_NAPS = 10


class _Marker:
    """Put in the queue by flush()/shutdown(): set once everything before it has run."""

    __slots__ = ("event", "stop")

    def __init__(self, stop: bool = False) -> None:
        self.event = threading.Event()
        self.stop = stop


class _Dispatcher:
    def __init__(self) -> None:
        self.maxsize = 10_000
        self.overflow = "drop"
        self.block_timeout = 0.1
        self.exit_timeout = 5.0
        self.exiting = False
        self._reset_state()

    def _reset_state(self) -> None:
        # Also the fork handler: the child gets fresh locks, an empty queue and no thread (the
        # parent's items are the parent's to run; running them here too would duplicate them).
        self.queue: Deque[Any] = deque()
        self.wakeup = threading.Event()
        self.space = threading.Condition(threading.Lock())
        self.start_lock = threading.Lock()
        self.thread: Optional[threading.Thread] = None
        self.count_lock = threading.Lock()
        self.idle = False
        self.processed = 0
        self.dropped = 0
        self.failed = 0
        self.failures: Dict[str, int] = {}
        self.atexit_registered = getattr(self, "atexit_registered", False)

    # --- caller side ------------------------------------------------------------------------
    def submit(self, item: _Item) -> bool:
        """Queue ``item``; False if it was dropped (the queue is full, or the process exits)."""
        queue = self.queue
        if len(queue) >= self.maxsize and not self._make_room():
            with self.count_lock:  # the rare path may lock; += from many threads loses counts
                self.dropped += 1
            return False
        queue.append(item)
        if self.thread is None:
            return self._start()
        if self.idle:
            self.wakeup.set()
        return True

    def _make_room(self) -> bool:
        if self.overflow != "block" or threading.current_thread() is self.thread:
            return False
        with self.space:
            return self.space.wait_for(lambda: len(self.queue) < self.maxsize, self.block_timeout)

    def _start(self) -> bool:
        with self.start_lock:
            if self.thread is not None:
                return True
            thread = threading.Thread(target=self._run, name="callpyback-background", daemon=True)
            # Published before it runs, so its own observers can tell they are on the worker.
            self.thread = thread
            try:
                thread.start()
            except RuntimeError:  # interpreter shutting down: nothing can run these any more
                self.thread = None
                with self.count_lock:
                    self.dropped += len(self.queue)
                self.queue.clear()
                return False
            if not self.atexit_registered:
                import atexit

                atexit.register(_at_exit)
                self.atexit_registered = True
            return True

    # --- worker side ------------------------------------------------------------------------
    def _run(self) -> None:
        from ._context import new_context
        from ._engine import _TL

        # A function a background observer calls is not reported back to that observer (no
        # feedback loops): the engine's re-entrancy guard, for this thread.
        active = _TL.a
        loop: Any = None
        queue = self.queue
        wakeup = self.wakeup
        try:
            while True:
                try:
                    item = queue.popleft()
                except IndexError:
                    # Linger before announcing idleness: while the worker only naps (2 ms at a
                    # time, for about 20 ms) a caller appends and moves on, without the
                    # Event.set() that waking an idle worker costs (a lock and a notify: more
                    # than the rest of the caller's side).  flush()/shutdown() still wake it.
                    for _ in range(_LINGER_NAPS):
                        if queue:
                            break
                        wakeup.wait(_NAP)
                        wakeup.clear()
                    if queue:
                        continue
                    self.idle = True
                    # Re-check after announcing idleness: a producer that appended before it saw
                    # idle=True did not set the event.
                    if not queue:
                        wakeup.wait(0.5)
                    wakeup.clear()
                    self.idle = False
                    continue
                if type(item) is _Marker:
                    item.event.set()
                    if item.stop:
                        return
                    continue
                if len(item) == 3:  # defer(): a plain task
                    task, argument, name = item
                    try:
                        task(argument)
                    except Exception as exc:
                        self._failed(name, exc)
                    finally:
                        self.processed += 1
                    continue
                reg = item[0]
                if len(item) == 2:
                    context = item[1]
                else:
                    _, info, state, args, kwargs, value, elapsed, attempt, start = item
                    context = new_context(info, args, kwargs, reg.owner.time_source, start)
                    context._state = state
                    context._attempt = attempt
                    context._time = elapsed
                    context._value = value
                active[reg] = None
                try:
                    result = reg.run(context)
                    if reg.is_async or (result is not None and hasattr(result, "__await__")):
                        if loop is None:
                            import asyncio

                            loop = asyncio.new_event_loop()
                        loop.run_until_complete(_await(result))
                except Exception as exc:
                    self._failed(reg.name, exc)
                finally:
                    del active[reg]
                    self.processed += 1
                    if self.overflow == "block":
                        with self.space:
                            self.space.notify_all()
        finally:
            if loop is not None:
                loop.close()

    def _failed(self, name: str, exc: Exception) -> None:
        self.failed += 1
        count = self.failures.get(name, 0) + 1
        self.failures[name] = count
        if count == 1:
            import logging

            logging.getLogger("callpyback").error(
                "background observer %r raised %r; the observed calls are unaffected (further "
                "failures are counted in callpyback._background.stats())",
                name,
                exc,
                exc_info=exc,
            )

    # --- control ----------------------------------------------------------------------------
    def wait_marker(self, stop: bool, timeout: Optional[float]) -> bool:
        thread = self.thread
        if thread is None:
            return True
        if threading.current_thread() is thread:
            return False  # an observer flushing its own queue would wait for itself
        marker = _Marker(stop)
        self.queue.append(marker)
        self.wakeup.set()
        done = marker.event.wait(timeout)
        if stop and done:
            thread.join(timeout)
            with self.start_lock:
                if self.thread is thread:
                    self.thread = None
            # Notifications that arrived while the worker was stopping must not be stranded.
            if self.queue and not self.exiting:
                self._start()
        return done


async def _await(awaitable: Any) -> Any:
    return await awaitable


_DISPATCHER = _Dispatcher()


def background_update(reg: Any) -> Callable[[Any], None]:
    """What generic paths call for a background registration: queue a frozen snapshot."""
    submit = _DISPATCHER.submit

    def enqueue(context: Any) -> None:
        submit((reg, context.snapshot()))

    enqueue.__qualname__ = f"background({reg.name})"
    return enqueue


def defer(task: Callable[[Any], Any], argument: Any, name: str) -> bool:
    """Run ``task(argument)`` on the background worker; False if the queue dropped it.

    For observers that build what they need on the caller's thread and only defer slow I/O
    (the audit observer's writes); a False return lets them do the work inline instead.
    """
    return _DISPATCHER.submit((task, argument, name))


#: The compiled fast path's submission (see :data:`_Item`): the bound method itself, no frame.
submit_call: Callable[[_Item], bool] = _DISPATCHER.submit


def flush(timeout: Optional[float] = None) -> bool:
    """Wait until every background observation queued so far has run; False on timeout."""
    return _DISPATCHER.wait_marker(False, timeout)


def shutdown(timeout: Optional[float] = 5.0) -> bool:
    """Run what is queued, then stop the worker (a later submission starts a new one)."""
    return _DISPATCHER.wait_marker(True, timeout)


def configure(
    *,
    maxsize: Optional[int] = None,
    overflow: Optional[str] = None,
    block_timeout: Optional[float] = None,
    exit_timeout: Optional[float] = None,
) -> None:
    """Set the queue bound, the overflow policy (``"drop"`` or ``"block"``) and the timeouts."""
    d = _DISPATCHER
    if maxsize is not None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ConfigurationError(f"background maxsize must be a positive int, got {maxsize!r}")
        d.maxsize = maxsize
    if overflow is not None:
        if overflow not in ("drop", "block"):
            raise ConfigurationError(
                f"background overflow policy must be 'drop' (discard new items and count them) "
                f"or 'block' (wait up to block_timeout, then drop), got {overflow!r}"
            )
        d.overflow = overflow
    for key, value in (("block_timeout", block_timeout), ("exit_timeout", exit_timeout)):
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigurationError(
                    f"background {key} must be a non-negative number of seconds, got {value!r}"
                )
            setattr(d, key, float(value))


def stats() -> Dict[str, Any]:
    """Counters: processed, dropped, failed, queued, failures per observer, and the settings."""
    d = _DISPATCHER
    queued = sum(1 for item in list(d.queue) if type(item) is not _Marker)
    return {
        "processed": d.processed,
        "dropped": d.dropped,
        "failed": d.failed,
        "queued": queued,
        "failures": dict(d.failures),
        "running": d.thread is not None and d.thread.is_alive(),
        "maxsize": d.maxsize,
        "overflow": d.overflow,
    }


def _at_exit() -> None:
    _DISPATCHER.exiting = True
    _DISPATCHER.wait_marker(True, _DISPATCHER.exit_timeout)


def _after_fork_in_child() -> None:
    _DISPATCHER._reset_state()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
