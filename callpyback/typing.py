"""The public contracts, as Protocols: what CallPyBack expects of the things you plug in."""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence, Tuple

from typing_extensions import Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._context import ExecutionContext
    from ._handling import Decision

__all__ = [
    "ErrorHandler",
    "Observer",
    "ObserverCallback",
    "TimeSource",
    "VariableCapture",
    "VariableExtractor",
]

#: A callback given to a factory: parameters are injected by name (see ``on_success``).
ObserverCallback = Callable[..., Any]


@runtime_checkable
class Observer(Protocol):
    """``update(context)`` is called for each subscribed state; it may be ``async def``.

    Optional attributes: ``priority`` (int, higher first), ``states`` / ``phases`` (what to be
    notified of; absent means everything), ``name``, ``background``.
    """

    def update(self, context: ExecutionContext) -> Any:
        """Handle one notification of a call."""


@runtime_checkable
class ErrorHandler(Protocol):
    """Chain of responsibility: return a Decision (Recover, Raise, Retry) or None to pass on.

    Optional hooks: ``before_attempt(context)``, ``after_success(context)``,
    ``record_failure(exception, context)``, ``call_sync(func, args, kwargs, context)`` and
    ``call_async(...)`` (see :mod:`callpyback.handlers`).
    """

    def handle(self, exception: BaseException, context: ExecutionContext) -> Optional[Decision]:
        """Decide what the failure becomes: a :class:`~callpyback.Decision`, or None to pass."""


@runtime_checkable
class TimeSource(Protocol):
    """Wall clock for timestamps, monotonic clock for durations, and the sleep retries use."""

    def now(self) -> float:
        """Wall-clock seconds since the epoch, for timestamps."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for durations."""

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (how retries wait)."""


@runtime_checkable
class VariableCapture(Protocol):
    """One call's capture: ``finish()`` returns the named locals (missing ones as NullVariable)."""

    def finish(self) -> Mapping[str, Any]:
        """The captured variables, once the function body has ended."""


@runtime_checkable
class VariableExtractor(Protocol):
    """``begin`` is called from the frame that will call the function, just before the call."""

    def begin(
        self, code: Optional[types.CodeType], names: Sequence[str] | Tuple[str, ...]
    ) -> VariableCapture:
        """Start capturing ``names`` for one call of ``code``."""
