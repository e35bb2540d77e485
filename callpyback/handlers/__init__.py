"""Error handlers: what a failure becomes (retried, recovered, translated, logged or re-raised).

Pass them as ``CallPyBack(error_handlers=[...])``; they form a chain of responsibility in which
each handler returns :class:`Recover`, :class:`Raise`, :class:`Retry` or None ("next, please").
See ``docs/error-handling.md`` and ``docs/circuit-breaker.md``.
"""

from __future__ import annotations

from .._handling import Decision, DefaultErrorHandler, HandlerChain, Raise, Recover, Retry
from ._base import ErrorHandler
from ._breaker import (
    BreakerEvent,
    BreakerState,
    BreakerStats,
    CircuitBreaker,
    CircuitBreakerHandler,
    CircuitOpenError,
    get_breaker,
    reset_breakers,
)
from ._builder import ErrorHandlerBuilder
from ._presets import (
    NETWORK_ERRORS,
    SECURITY_ERRORS,
    VALIDATION_ERRORS,
    business_logic,
    network,
    network_chain,
    preset,
    resilient_chain,
    security,
    validation,
)
from ._retry import RetryHandler
from ._simple import (
    ConditionalErrorHandler,
    ExceptionMappingHandler,
    FallbackHandler,
    LoggingErrorHandler,
    ReraiseHandler,
)
from ._timeout import CallTimeoutError, TimeoutHandler

__all__ = [
    "NETWORK_ERRORS",
    "SECURITY_ERRORS",
    "VALIDATION_ERRORS",
    "BreakerEvent",
    "BreakerState",
    "BreakerStats",
    "CallTimeoutError",
    "CircuitBreaker",
    "CircuitBreakerHandler",
    "CircuitOpenError",
    "ConditionalErrorHandler",
    "Decision",
    "DefaultErrorHandler",
    "ErrorHandler",
    "ErrorHandlerBuilder",
    "ExceptionMappingHandler",
    "FallbackHandler",
    "HandlerChain",
    "LoggingErrorHandler",
    "Raise",
    "Recover",
    "ReraiseHandler",
    "Retry",
    "RetryHandler",
    "TimeoutHandler",
    "business_logic",
    "get_breaker",
    "network",
    "network_chain",
    "preset",
    "reset_breakers",
    "resilient_chain",
    "security",
    "validation",
]
