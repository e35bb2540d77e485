"""ErrorHandlerBuilder: compose a handler chain step by step, validating as it goes."""

from __future__ import annotations

from typing import Any, Callable, List, Mapping

from .._handling import MISSING, as_handler, handler_name
from ..errors import ConfigurationError
from ._breaker import CircuitBreakerHandler
from ._presets import preset as _preset
from ._retry import RetryHandler
from ._simple import (
    ConditionalErrorHandler,
    ExceptionMappingHandler,
    FallbackHandler,
    LoggingErrorHandler,
    ReraiseHandler,
)
from ._timeout import TimeoutHandler

__all__ = ["ErrorHandlerBuilder"]


class ErrorHandlerBuilder:
    """Fluent chain building: ``ErrorHandlerBuilder().retry(3).circuit_breaker("db").build()``.

    Handlers run in the order they are added, and each step builds its handler at once, so bad
    options fail here rather than at call time.  ``fallback`` must be the last step, because
    nothing after it would ever see a failure it recovered.  ``build()`` returns a list for
    ``CallPyBack(error_handlers=...)``.
    """

    def __init__(self) -> None:
        self._handlers: List[Any] = []
        self._closed_by: str | None = None

    def add(self, handler: Any) -> ErrorHandlerBuilder:
        """Append any handler (an object with ``handle``, or a plain ``f(exception, context)``)."""
        handler = as_handler(handler)
        if self._closed_by is not None:
            raise ConfigurationError(
                f"ErrorHandlerBuilder: {handler_name(handler)!r} added after {self._closed_by!r}, "
                "which recovers every failure it matches; add the fallback last"
            )
        for existing in self._handlers:
            if (
                type(existing) is type(handler)
                and isinstance(handler, (RetryHandler, TimeoutHandler, CircuitBreakerHandler))
                and handler_name(existing) == handler_name(handler)
            ):
                raise ConfigurationError(
                    f"ErrorHandlerBuilder: a {type(handler).__name__} named "
                    f"{handler_name(handler)!r} is already in the chain; the second would never act"
                )
        self._handlers.append(handler)
        if isinstance(handler, FallbackHandler):
            self._closed_by = handler_name(handler)
        return self

    def retry(self, attempts: int | None = None, **options: Any) -> ErrorHandlerBuilder:
        """Add a :class:`RetryHandler` (``attempts`` and/or ``max_time`` required)."""
        return self.add(RetryHandler(attempts, **options))

    def circuit_breaker(self, name: str | None = None, **options: Any) -> ErrorHandlerBuilder:
        """Add a :class:`CircuitBreakerHandler`; the same ``name`` shares the breaker."""
        return self.add(CircuitBreakerHandler(name, **options))

    def timeout(self, seconds: float, **options: Any) -> ErrorHandlerBuilder:
        """Add a :class:`TimeoutHandler` of ``seconds``."""
        return self.add(TimeoutHandler(seconds, **options))

    def log(self, logger: Any = None, **options: Any) -> ErrorHandlerBuilder:
        """Add a :class:`LoggingErrorHandler` logging failures on ``logger``."""
        return self.add(LoggingErrorHandler(logger, **options))

    def map_exceptions(self, mapping: Mapping[Any, Any], **options: Any) -> ErrorHandlerBuilder:
        """Add an :class:`ExceptionMappingHandler` translating exceptions by ``mapping``."""
        return self.add(ExceptionMappingHandler(mapping, **options))

    def reraise(self, exceptions: Any, **options: Any) -> ErrorHandlerBuilder:
        """Stop the chain for ``exceptions``: nothing after this step retries or masks them."""
        return self.add(ReraiseHandler(exceptions, **options))

    def when(self, predicate: Any, handler: Any, **options: Any) -> ErrorHandlerBuilder:
        """Add ``handler``, applied only to failures for which ``predicate`` holds."""
        return self.add(ConditionalErrorHandler(predicate, handler, **options))

    def preset(self, name: str, **options: Any) -> ErrorHandlerBuilder:
        """Add the handlers of a preset (see :func:`callpyback.handlers.preset`)."""
        for handler in _preset(name, **options):
            self.add(handler)
        return self

    def fallback(
        self, value: Any = MISSING, *, factory: Callable[[Any], Any] | None = None, **options: Any
    ) -> ErrorHandlerBuilder:
        """Recover with ``value`` or ``factory(context)``; must be the last step."""
        return self.add(FallbackHandler(value, factory=factory, **options))

    def build(self) -> List[Any]:
        """The chain, as a new list (the builder can keep going)."""
        if not self._handlers:
            raise ConfigurationError(
                "ErrorHandlerBuilder.build(): the chain is empty; add a step first"
            )
        return list(self._handlers)

    def __repr__(self) -> str:
        return f"ErrorHandlerBuilder({[handler_name(h) for h in self._handlers]})"
