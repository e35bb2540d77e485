"""Small handlers: fallback, exception mapping, logging, re-raise and conditional delegation."""

from __future__ import annotations

import inspect
import logging
from typing import Any, Callable, Dict, Mapping, Tuple, Type, Union, cast

from .._handling import MISSING, Decision, Raise, Recover, as_handler, handler_name
from ..errors import ConfigurationError
from ..observers.redaction import Redactor
from ._base import ErrorHandler, exception_types, type_names
from ._retry import takes_context

__all__ = [
    "ConditionalErrorHandler",
    "ExceptionMappingHandler",
    "FallbackHandler",
    "LoggingErrorHandler",
    "ReraiseHandler",
]


class FallbackHandler(ErrorHandler):
    """Recover matching failures with ``value``, or with ``factory(context)``.

    ``factory`` may be ``async def``; the handler is then usable on coroutine functions only.
    Put it last: nothing after it sees the failures it recovers.
    """

    def __init__(
        self,
        value: Any = MISSING,
        *,
        factory: Callable[[Any], Any] | None = None,
        exceptions: Any = (Exception,),
        exclude: Any = (),
        name: str | None = None,
    ) -> None:
        super().__init__(name=name or "fallback")
        if (value is MISSING) == (factory is None):
            raise ConfigurationError(
                "FallbackHandler needs exactly one of value=... (returned as is) or "
                f"factory=f(context) (called per failure); got value={value!r}, factory={factory!r}"
            )
        if factory is not None and not callable(factory):
            raise ConfigurationError(
                f"FallbackHandler(factory=...) must be callable, got {factory!r}"
            )
        self.value = value
        self.factory = factory
        self.exceptions = exception_types(exceptions, "FallbackHandler", "exceptions")
        self.exclude = exception_types(exclude, "FallbackHandler", "exclude")
        if factory is not None and inspect.iscoroutinefunction(factory):
            self.handle = self._ahandle  # type: ignore[method-assign,assignment]

    def _matches(self, exception: BaseException) -> bool:
        return isinstance(exception, self.exceptions) and not isinstance(exception, self.exclude)

    def handle(self, exception: BaseException, context: Any) -> Decision | None:
        """Recover a matching failure with the value (or the factory's result)."""
        if not self._matches(exception):
            return None
        return Recover(self.factory(context) if self.factory is not None else self.value)

    async def _ahandle(self, exception: BaseException, context: Any) -> Decision | None:
        if not self._matches(exception):
            return None
        return Recover(await self.factory(context))  # type: ignore[misc]

    def __reduce__(self) -> Any:
        return (_fallback, (self.value, self.factory, self.exceptions, self.exclude, self.name))

    def __repr__(self) -> str:
        what = f"factory={self.factory!r}" if self.factory is not None else f"value={self.value!r}"
        return (
            f"FallbackHandler({what}, exceptions={type_names(self.exceptions)}, name={self.name!r})"
        )


def _fallback(
    value: Any, factory: Any, exceptions: Any, exclude: Any, name: str
) -> FallbackHandler:
    return FallbackHandler(
        value, factory=factory, exceptions=exceptions, exclude=exclude, name=name
    )


Target = Union[Type[BaseException], Callable[[BaseException], Any], Any]


class ExceptionMappingHandler(ErrorHandler):
    """Translate exceptions by type: to another exception, or to a value.

    ``mapping`` goes from exception class to one of:

    * an exception class: raised with the original's message, chained ``from`` the original;
    * a callable ``f(exception)``: returning an exception raises it, returning a
      :class:`~callpyback.Decision` uses it, returning anything else recovers with that value;
    * any other value: the call returns it.

    The most specific match wins (the exception's MRO is searched, not the mapping's order).
    """

    def __init__(self, mapping: Mapping[Any, Target], *, name: str | None = None) -> None:
        super().__init__(name=name or "map_exceptions")
        if not isinstance(mapping, Mapping) or not mapping:
            raise ConfigurationError(
                "ExceptionMappingHandler needs a non-empty mapping of exception class to "
                f"exception class, factory or value, got {mapping!r}"
            )
        self.mapping: Dict[Type[BaseException], Target] = {}
        for key, target in mapping.items():
            if not (isinstance(key, type) and issubclass(key, BaseException)):
                raise ConfigurationError(
                    f"ExceptionMappingHandler: key {key!r} is not an exception class"
                )
            if isinstance(target, BaseException):
                raise ConfigurationError(
                    f"ExceptionMappingHandler: {key.__name__} maps to the exception instance "
                    f"{target!r}; map to its class, or to a factory lambda exc: ..., so each call "
                    "raises a fresh exception"
                )
            self.mapping[key] = target

    def handle(self, exception: BaseException, context: Any) -> Decision | None:
        """Raise the mapped exception (or return the mapped value) for a matching failure."""
        mapping = self.mapping
        for klass in type(exception).__mro__:
            if klass in mapping:
                target = mapping[klass]
                break
        else:
            return None
        if isinstance(target, type) and issubclass(target, BaseException):
            raised: BaseException = cast(Any, target)(str(exception))
            return Raise(raised)
        if callable(target):
            out = cast(Any, target)(exception)
            if isinstance(out, BaseException):
                return Raise(out)
            if isinstance(out, Decision):
                return out
            return Recover(out)
        return Recover(target)

    def __repr__(self) -> str:
        pairs = ", ".join(
            f"{k.__name__}: {getattr(v, '__name__', None) or repr(v)}"
            for k, v in self.mapping.items()
        )
        return f"ExceptionMappingHandler({{{pairs}}}, name={self.name!r})"


def _level(level: Union[int, str], owner: str) -> int:
    if isinstance(level, bool):
        raise ConfigurationError(f"{owner}(level=...) must be a logging level, got {level!r}")
    if isinstance(level, int):
        return level
    if isinstance(level, str):
        value = logging.getLevelName(level.upper())
        if isinstance(value, int):
            return value
    raise ConfigurationError(
        f"{owner}(level=...) must be a logging level such as 'WARNING' or logging.ERROR, "
        f"got {level!r}"
    )


class LoggingErrorHandler(ErrorHandler):
    """Log each matching failed attempt with its context, then pass it on (decides nothing).

    The record carries ``callpyback_target`` and ``callpyback_attempt`` as extra attributes.
    The exception's text goes through ``redactor`` (a default :class:`~callpyback.Redactor`
    unless given) wherever it appears: in the message and in the traceback that ``exc_info``
    adds, which is formatted from a redacted stand-in, never from the live exception.
    """

    def __init__(
        self,
        logger: Union[str, logging.Logger, None] = None,
        *,
        level: Union[int, str] = logging.ERROR,
        exceptions: Any = (Exception,),
        exc_info: bool = True,
        redactor: Redactor | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name or "log")
        if logger is None:
            logger = "callpyback.errors"
        if isinstance(logger, str):
            logger = logging.getLogger(logger)
        if not isinstance(logger, (logging.Logger, logging.LoggerAdapter)):
            raise ConfigurationError(
                "LoggingErrorHandler(logger=...) must be a logger name or a logging.Logger, "
                f"got {logger!r}"
            )
        if redactor is not None and not isinstance(redactor, Redactor):
            raise ConfigurationError(
                f"LoggingErrorHandler(redactor=...) must be a Redactor, got {redactor!r}"
            )
        self.logger = logger
        self.level = _level(level, "LoggingErrorHandler")
        self.exceptions = exception_types(exceptions, "LoggingErrorHandler", "exceptions")
        self.exc_info = bool(exc_info)
        self.redactor = redactor if redactor is not None else Redactor()

    def handle(self, exception: BaseException, context: Any) -> None:
        """Log a matching failure, then pass it on (never decides)."""
        if isinstance(exception, self.exceptions) and self.logger.isEnabledFor(self.level):
            info = context.function_info
            redactor = self.redactor
            arguments = context.arguments  # their sensitive values are masked in the text too
            self.logger.log(
                self.level,
                "%s failed on attempt %d: %s",
                info.target,
                context.attempt,
                redactor.exception_repr(exception, arguments),
                exc_info=redactor.exc_info(exception, arguments) if self.exc_info else None,
                extra={"callpyback_target": info.target, "callpyback_attempt": context.attempt},
            )
        return None

    def __repr__(self) -> str:
        return (
            f"LoggingErrorHandler(logger={self.logger.name!r}, "
            f"level={logging.getLevelName(self.level)!r}, exceptions={type_names(self.exceptions)})"
        )


class ReraiseHandler(ErrorHandler):
    """Stop the chain for matching exceptions: re-raise them as they are.

    Put it before a retry or fallback for failures that must never be retried or masked
    (invalid input, denied access).
    """

    def __init__(self, exceptions: Any, *, name: str | None = None) -> None:
        super().__init__(name=name or "reraise")
        self.exceptions = exception_types(exceptions, "ReraiseHandler", "exceptions")

    def handle(self, exception: BaseException, context: Any) -> Decision | None:
        """Stop the chain for the listed exceptions: re-raise them."""
        return Raise(exception) if isinstance(exception, self.exceptions) else None

    def __repr__(self) -> str:
        return f"ReraiseHandler({type_names(self.exceptions)}, name={self.name!r})"


class ConditionalErrorHandler(ErrorHandler):
    """Delegate to ``handler`` only when ``predicate`` holds; otherwise pass.

    ``predicate`` is an exception class (or a tuple of them), or a callable ``f(exception)`` or
    ``f(exception, context)``.  The inner handler's ``before_attempt``, ``after_success`` and
    call hooks are forwarded as they are; its ``record_failure`` only for matching failures.
    """

    def __init__(self, predicate: Any, handler: Any, *, name: str | None = None) -> None:
        self.handler = as_handler(handler)
        super().__init__(name=name or f"when({handler_name(self.handler)})")
        self._classes: Tuple[Type[BaseException], ...] = ()
        self._with_context = False
        if isinstance(predicate, (type, tuple)):
            self._classes = exception_types(predicate, "ConditionalErrorHandler", "exceptions")
            self.predicate: Callable[..., Any] | None = None
        else:
            self._with_context = takes_context(predicate, "ConditionalErrorHandler", "predicate")
            self.predicate = predicate
        inner_handle = self.handler.handle
        if inspect.iscoroutinefunction(inner_handle):
            self.handle = self._ahandle  # type: ignore[method-assign,assignment]
        for hook in ("before_attempt", "after_success", "call_sync", "call_async"):
            fn = getattr(self.handler, hook, None)
            if callable(fn):
                setattr(self, hook, fn)
        if callable(getattr(self.handler, "record_failure", None)):
            self.record_failure = self._record_failure

    def matches(self, exception: BaseException, context: Any) -> bool:
        """Whether the condition holds for this failure."""
        if self.predicate is None:
            return isinstance(exception, self._classes)
        if self._with_context:
            return bool(self.predicate(exception, context))
        return bool(self.predicate(exception))

    def handle(self, exception: BaseException, context: Any) -> Decision | None:
        """Delegate to the wrapped handler when the condition holds; else pass."""
        if self.matches(exception, context):
            return self.handler.handle(exception, context)  # type: ignore[no-any-return]
        return None

    async def _ahandle(self, exception: BaseException, context: Any) -> Decision | None:
        if self.matches(exception, context):
            return await self.handler.handle(exception, context)  # type: ignore[no-any-return]
        return None

    def _record_failure(self, exception: BaseException, context: Any) -> None:
        if self.matches(exception, context):
            self.handler.record_failure(exception, context)

    def __repr__(self) -> str:
        cond = type_names(self._classes) if self.predicate is None else repr(self.predicate)
        return f"ConditionalErrorHandler({cond}, {self.handler!r})"
