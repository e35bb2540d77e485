"""Time sources: every timestamp, duration and retry sleep in CallPyBack goes through one.

Injecting the clock keeps the core testable: :class:`MockTimeSource` makes retries, timeouts and
alert windows deterministic and instant.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .errors import ConfigurationError

__all__ = ["MockTimeSource", "SystemTimeSource"]


class SystemTimeSource:
    """The real clocks: ``time.time`` for timestamps, ``time.perf_counter`` for durations."""

    __slots__ = ()

    # Bound straight to the C functions so the hot path pays no Python-level frame.
    now = staticmethod(time.time)
    monotonic = staticmethod(time.perf_counter)
    sleep = staticmethod(time.sleep)

    async def asleep(self, seconds: float) -> None:
        """``asyncio.sleep(seconds)``."""
        import asyncio

        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemTimeSource()"

    def __reduce__(self) -> Any:
        return (SystemTimeSource, ())


class MockTimeSource:
    """A manual clock for tests.

    ``now()`` starts at ``initial`` (seconds since the epoch) and ``monotonic()`` at 0; both move
    only when told to.  ``sleep`` advances the clock instead of blocking, so code that retries
    with back-off runs instantly while still seeing the time pass.
    """

    __slots__ = ("_lock", "_mono", "_now", "sleeps")

    def __init__(self, initial: float = 0.0) -> None:
        if not isinstance(initial, (int, float)) or isinstance(initial, bool):
            raise ConfigurationError(
                f"MockTimeSource(initial=...) must be a number, got {initial!r}"
            )
        self._lock = threading.Lock()
        self._now = float(initial)
        self._mono = 0.0
        #: Every duration passed to :meth:`sleep` / :meth:`asleep`, in order.
        self.sleeps: list[float] = []

    def now(self) -> float:
        """The fake wall clock, in seconds since the epoch."""
        return self._now

    def monotonic(self) -> float:
        """The fake monotonic clock, in seconds."""
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds`` (never backwards)."""
        if seconds < 0:
            raise ConfigurationError(f"advance() needs a non-negative duration, got {seconds!r}")
        with self._lock:
            self._now += seconds
            self._mono += seconds

    def set_time(self, timestamp: float) -> None:
        """Set the wall clock; the monotonic clock follows forwards but never goes back."""
        with self._lock:
            delta = timestamp - self._now
            self._now = float(timestamp)
            if delta > 0:
                self._mono += delta

    def sleep(self, seconds: float) -> None:
        """Record the delay in ``sleeps`` and advance both clocks instead of blocking."""
        with self._lock:
            self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))

    async def asleep(self, seconds: float) -> None:
        """As :meth:`sleep`, then yield to the event loop once."""
        import asyncio

        self.sleep(seconds)
        await asyncio.sleep(0)  # still yield to the loop, as a real sleep would

    def __repr__(self) -> str:
        return f"MockTimeSource(now={self._now!r}, monotonic={self._mono!r})"
