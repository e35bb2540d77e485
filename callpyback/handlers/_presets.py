"""Presets for the usual kinds of failure, and ready-made chains.

Every preset classifies failures by exception *type*, never by words in the message (the
original implementation took ``KeyError("author")`` for an authentication failure because the
message contained "auth").  Every preset that logs redacts what it logs (``redactor=``).
"""

from __future__ import annotations

import difflib
import socket
from typing import Any, Callable, Dict, List, Tuple, Type

from .._handling import MISSING
from ..errors import ConfigurationError
from ._base import exception_types
from ._breaker import CircuitBreakerHandler, CircuitOpenError
from ._retry import RetryHandler
from ._simple import FallbackHandler, LoggingErrorHandler, ReraiseHandler
from ._timeout import TimeoutHandler

__all__ = [
    "NETWORK_ERRORS",
    "SECURITY_ERRORS",
    "VALIDATION_ERRORS",
    "business_logic",
    "network",
    "network_chain",
    "preset",
    "resilient_chain",
    "security",
    "validation",
]

#: Bad input: the caller's fault, so retrying cannot help and hiding it would mislead.
VALIDATION_ERRORS: Tuple[Type[BaseException], ...] = (ValueError, TypeError)
#: Transient transport failures worth retrying.  ``socket.timeout`` is ``TimeoutError`` from
#: Python 3.10 on, but a separate ``OSError`` subclass on 3.9; ``gaierror`` is a DNS failure.
NETWORK_ERRORS: Tuple[Type[BaseException], ...] = tuple(
    dict.fromkeys((ConnectionError, TimeoutError, socket.timeout, socket.gaierror))
)
#: Denied access: log it where security can see it, never retry or mask it.
SECURITY_ERRORS: Tuple[Type[BaseException], ...] = (PermissionError,)


def _types(
    base: Tuple[Type[BaseException], ...], extra: Any, owner: str
) -> Tuple[Type[BaseException], ...]:
    return tuple(dict.fromkeys((*base, *exception_types(extra, owner, "extra"))))


def validation(
    *,
    extra: Any = (),
    level: Any = "WARNING",
    logger: Any = "callpyback.validation",
    redactor: Any = None,
) -> List[Any]:
    """Log invalid input (``ValueError``, ``TypeError`` and ``extra``) and re-raise it untouched."""
    types = _types(VALIDATION_ERRORS, extra, "preset 'validation'")
    return [
        LoggingErrorHandler(
            logger,
            level=level,
            exceptions=types,
            exc_info=False,
            redactor=redactor,
            name="validation.log",
        ),
        ReraiseHandler(types, name="validation"),
    ]


def network(
    attempts: int = 3,
    *,
    extra: Any = (),
    backoff: float = 0.2,
    max_delay: float = 10.0,
    max_time: float | None = None,
    retry_after: Any = "retry_after",
    level: Any = "WARNING",
    logger: Any = "callpyback.network",
    rng: Any = None,
    redactor: Any = None,
) -> List[Any]:
    """Log transient network failures and retry them with jittered back-off.

    ``retry_after`` names the exception attribute holding a server's Retry-After hint, if any.
    """
    types = _types(NETWORK_ERRORS, extra, "preset 'network'")
    return [
        LoggingErrorHandler(
            logger,
            level=level,
            exceptions=types,
            exc_info=False,
            redactor=redactor,
            name="network.log",
        ),
        RetryHandler(
            attempts,
            max_time=max_time,
            exceptions=types,
            backoff=backoff,
            max_delay=max_delay,
            retry_after=retry_after,
            rng=rng,
            name="network.retry",
        ),
    ]


def business_logic(
    *,
    exceptions: Any = None,
    level: Any = "INFO",
    logger: Any = "callpyback.business",
    redactor: Any = None,
) -> List[Any]:
    """Log your domain's rule violations and re-raise them (no retry, no fallback).

    Python has no standard "business rule" exception, so ``exceptions`` is required: pass your
    own classes, e.g. ``exceptions=(InsufficientFunds, LimitExceeded)``.
    """
    if exceptions is None:
        raise ConfigurationError(
            "preset 'business-logic' needs exceptions=(YourDomainError, ...): the exception "
            "classes your code raises for rule violations"
        )
    types = exception_types(exceptions, "preset 'business-logic'", "exceptions")
    return [
        LoggingErrorHandler(
            logger,
            level=level,
            exceptions=types,
            exc_info=False,
            redactor=redactor,
            name="business-logic.log",
        ),
        ReraiseHandler(types, name="business-logic"),
    ]


def security(
    *,
    extra: Any = (),
    level: Any = "WARNING",
    logger: Any = "callpyback.security",
    redactor: Any = None,
) -> List[Any]:
    """Log denied access (``PermissionError`` and ``extra``) to a security logger and re-raise.

    The record carries the traceback; its text, like the message, is redacted (``redactor``,
    default :class:`~callpyback.Redactor`), so tokens and card numbers in it stay masked.
    """
    types = _types(SECURITY_ERRORS, extra, "preset 'security'")
    return [
        LoggingErrorHandler(
            logger,
            level=level,
            exceptions=types,
            exc_info=True,
            redactor=redactor,
            name="security.log",
        ),
        ReraiseHandler(types, name="security"),
    ]


PRESETS: Dict[str, Callable[..., List[Any]]] = {
    "validation": validation,
    "network": network,
    "business-logic": business_logic,
    "security": security,
}


def preset(name: str, **options: Any) -> List[Any]:
    """The handlers of a preset: ``validation``, ``network``, ``business-logic``, ``security``."""
    key = name.replace("_", "-") if isinstance(name, str) else name
    factory = PRESETS.get(key)
    if factory is None:
        close = difflib.get_close_matches(str(name), list(PRESETS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigurationError(
            f"unknown error-handler preset {name!r}.{hint} Presets: {', '.join(PRESETS)}"
        )
    try:
        return factory(**options)
    except TypeError as exc:
        raise ConfigurationError(f"preset {key!r}: {exc}") from None


def resilient_chain(
    name: str | None = None,
    *,
    attempts: int = 3,
    exceptions: Any = (Exception,),
    failure_threshold: int = 5,
    recovery_timeout: float = 30.0,
    timeout: float | None = None,
    fallback: Any = MISSING,
    rng: Any = None,
) -> List[Any]:
    """Timeout (optional), retry, circuit breaker ``name``, then fallback (optional)."""
    chain: List[Any] = []
    if timeout is not None:
        chain.append(TimeoutHandler(timeout))
    chain.append(RetryHandler(attempts, exceptions=exceptions, rng=rng))
    chain.append(
        CircuitBreakerHandler(
            name,
            failure_threshold=failure_threshold,
            recovery_timeout=recovery_timeout,
            exceptions=exceptions,
        )
    )
    if fallback is not MISSING:
        chain.append(FallbackHandler(fallback))
    return chain


def network_chain(
    name: str | None = None,
    *,
    attempts: int = 3,
    failure_threshold: int = 5,
    recovery_timeout: float = 30.0,
    timeout: float | None = None,
    fallback: Any = MISSING,
    rng: Any = None,
) -> List[Any]:
    """The network preset (log + retry) with a circuit breaker counting network failures only."""
    chain: List[Any] = [TimeoutHandler(timeout)] if timeout is not None else []
    chain += network(attempts, rng=rng)
    chain.append(
        CircuitBreakerHandler(
            name,
            failure_threshold=failure_threshold,
            recovery_timeout=recovery_timeout,
            exceptions=NETWORK_ERRORS,
        )
    )
    if fallback is not MISSING:
        chain.append(FallbackHandler(fallback, exceptions=(*NETWORK_ERRORS, CircuitOpenError)))
    return chain
