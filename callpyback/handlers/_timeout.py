"""TimeoutHandler: bound how long one attempt may take.

Coroutines get real cancellation (``asyncio.wait_for`` semantics).  A synchronous function runs
in a daemon worker thread (see ``_workers``) while the caller waits at most ``seconds``; Python
cannot stop a thread, so a function that overruns keeps running in the background after the
caller got :class:`CallTimeoutError`.  That is the honest limit: make such functions
idempotent, or give them their own timeouts (sockets, database drivers) as well.
"""

from __future__ import annotations

from typing import Any, Callable

from ..errors import CallPyBackError
from ._base import ErrorHandler, number

__all__ = ["CallTimeoutError", "TimeoutHandler"]


class CallTimeoutError(CallPyBackError, TimeoutError):
    """An attempt took longer than its :class:`TimeoutHandler` allowed.  Also a ``TimeoutError``."""

    def __init__(self, target: str, seconds: float, cancelled: bool) -> None:
        self.target = target
        self.seconds = seconds
        self.cancelled = cancelled
        what = (
            "it was cancelled"
            if cancelled
            else "it may still be running in its worker thread (Python cannot stop a thread)"
        )
        super().__init__(f"{target} did not finish within {seconds:g}s; {what}")

    def __reduce__(self) -> Any:
        return (type(self), (self.target, self.seconds, self.cancelled), self.__dict__)


class _InnerTimeout(Exception):
    """Carries a TimeoutError raised *by the function* past ``wait_for``'s own."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.exc = exc

    def __reduce__(self) -> Any:
        return (type(self), (self.exc,), self.__dict__)


class TimeoutHandler(ErrorHandler):
    """Fail an attempt with :class:`CallTimeoutError` after ``seconds`` (real time).

    It decides nothing itself: the timeout is an ordinary failure the rest of the chain sees, so
    a retry, a breaker or a fallback can act on it.  Coroutines are cancelled; synchronous
    functions run in a daemon worker thread that is abandoned, not stopped, on timeout.
    Generators are not timed.
    """

    def __init__(self, seconds: float, *, name: str | None = None) -> None:
        super().__init__(name=name or "timeout")
        self.seconds = float(number(seconds, "TimeoutHandler", "seconds", inclusive=False))

    def call_sync(self, func: Callable[..., Any], args: Any, kwargs: Any, context: Any) -> Any:
        """Run one attempt on a worker thread, failing it after ``seconds``."""
        import contextvars

        from ._workers import run_with_timeout

        variables = contextvars.copy_context()  # the function sees the caller's contextvars
        finished, value = run_with_timeout(
            lambda: variables.run(func, *args, **kwargs), self.seconds
        )
        if finished:
            return value
        context.note("timed_out_after", self.seconds)
        raise CallTimeoutError(context.function_info.target, self.seconds, cancelled=False)

    async def call_async(
        self, func: Callable[..., Any], args: Any, kwargs: Any, context: Any
    ) -> Any:
        """Await one attempt, cancelling it after ``seconds``."""
        import asyncio

        if hasattr(asyncio, "timeout"):  # 3.11+: cancels in place, no extra task per call
            scope = asyncio.timeout(self.seconds)
            try:
                async with scope:
                    return await func(*args, **kwargs)
            except TimeoutError:
                if not scope.expired():
                    raise  # the function's own TimeoutError
        else:
            finished, value, inner = await self._wait_for(asyncio, func, args, kwargs)
            if finished:
                return value
            if inner is not None:
                raise inner  # raised outside any except block: the carrier is not its context
        context.note("timed_out_after", self.seconds)
        raise CallTimeoutError(context.function_info.target, self.seconds, cancelled=True)

    async def _wait_for(
        self, asyncio: Any, func: Any, args: Any, kwargs: Any
    ) -> tuple[bool, Any, BaseException | None]:
        """Python < 3.11: ``(finished, value, the function's own TimeoutError or None)``."""

        async def attempt() -> Any:
            try:
                return await func(*args, **kwargs)
            except (TimeoutError, asyncio.TimeoutError) as exc:
                raise _InnerTimeout(exc) from None

        try:
            return True, await asyncio.wait_for(attempt(), self.seconds), None
        except _InnerTimeout as carrier:
            return False, None, carrier.exc
        except asyncio.TimeoutError:
            return False, None, None

    def __repr__(self) -> str:
        return f"TimeoutHandler(seconds={self.seconds!r}, name={self.name!r})"
