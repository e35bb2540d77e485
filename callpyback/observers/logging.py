"""``LoggingObserver``: one stdlib ``logging`` record per call, with structured ``extra`` fields."""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Union

from ..errors import ConfigurationError
from ..states import ExecutionState
from ._base import BaseObserver
from .redaction import Redactor

__all__ = ["LoggingObserver"]

_PRE = ExecutionState.PRE_EXECUTION
_DONE = ExecutionState.COMPLETED
_ERROR = ExecutionState.ERROR

Level = Union[int, str, None]

_VERBS = {
    "call": "called",
    "success": "succeeded",
    "failure": "failed",
    "recovered": "recovered",
    "cancelled": "was cancelled",
    "interrupted": "was interrupted",
}


def _level(value: Level, what: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigurationError(
            f"LoggingObserver {what} must be a logging level or None, got {value!r}"
        )
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        number = logging.getLevelName(value.strip().upper())
        if isinstance(number, int):
            return number
    names = ", ".join(n for n in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
    raise ConfigurationError(
        f"LoggingObserver {what}={value!r} is not a logging level; use an int, one of {names}, "
        "or None to not log that outcome"
    )


class LoggingObserver(BaseObserver):
    """Log each call's outcome through ``logger`` at a level chosen per outcome.

    Each record carries ``extra`` fields: ``function`` (``module:qualname``), ``state``,
    ``outcome``, ``duration`` (seconds), ``attempt`` and ``exception`` (its repr, or None); plus
    ``arguments`` and ``result`` when asked for, passed through ``redactor`` first.  A level of
    None turns that outcome off.  When the logger is disabled for the level, the observer
    returns after one cached level check.
    """

    def __init__(
        self,
        logger: Union[str, logging.Logger, None] = None,
        *,
        call_level: Level = None,
        success_level: Level = logging.INFO,
        failure_level: Level = logging.ERROR,
        recovered_level: Level = logging.WARNING,
        cancelled_level: Level = logging.INFO,
        interrupted_level: Level = logging.ERROR,
        include_arguments: bool = False,
        include_result: bool = False,
        exc_info: bool = True,
        redactor: Optional[Redactor] = None,
        priority: int = 0,
        name: Optional[str] = None,
        background: bool = False,
    ) -> None:
        super().__init__(priority=priority, name=name, background=background)
        if logger is None:
            logger = logging.getLogger("callpyback.calls")
        elif isinstance(logger, str):
            logger = logging.getLogger(logger)
        elif not isinstance(logger, logging.Logger):
            raise ConfigurationError(
                f"LoggingObserver logger must be a logger name or a logging.Logger, got {logger!r}"
            )
        self.logger = logger
        self.levels: Dict[str, Optional[int]] = {
            "call": _level(call_level, "call_level"),
            "success": _level(success_level, "success_level"),
            "failure": _level(failure_level, "failure_level"),
            "recovered": _level(recovered_level, "recovered_level"),
            "cancelled": _level(cancelled_level, "cancelled_level"),
            "interrupted": _level(interrupted_level, "interrupted_level"),
        }
        if redactor is not None and not isinstance(redactor, Redactor):
            raise ConfigurationError(
                f"LoggingObserver redactor must be a Redactor, got {redactor!r}"
            )
        self.redactor = redactor if redactor is not None else Redactor()
        self.include_arguments = bool(include_arguments)
        self.include_result = bool(include_result)
        self.exc_info = bool(exc_info)
        self._success = self.levels["success"]
        # logging caches isEnabledFor per level in this dict and clears it in place whenever
        # levels change (setLevel, logging.disable, new handlers' loggers), so reading it
        # directly is always current; it is private, hence the fallback to the method.
        cache = getattr(self.logger, "_cache", None)
        self._enabled_cache: Dict[int, bool] = cache if isinstance(cache, dict) else {}
        wanted = {_DONE, _ERROR} if self.levels["call"] is None else {_PRE, _DONE, _ERROR}
        self.states = frozenset(wanted)

    def gate(self, state: Any, outcome: Optional[str]) -> bool:
        """Asked by the engine before each notification: would :meth:`update` log anything?
        When not, the call builds no context for this observer."""
        if outcome == "success":  # the common case first
            level = self._success
        elif state is _PRE:
            level = self.levels["call"]
        else:
            level = self.levels[outcome or "interrupted"]
        if level is None:
            return False
        enabled = self._enabled_cache.get(level)
        if enabled is False:  # a disabled level: logging's own cache says so
            return False
        if enabled is None:
            return bool(self.logger.isEnabledFor(level))
        return not self.logger.disabled  # the cache does not know logger.disabled

    def update(self, context: Any) -> None:
        state = context.state
        if state is _DONE and context.exception is None:
            # The common case first: a success whose level is off costs two attribute reads and
            # logging's own per-level cache lookup.
            level = self._success
            if level is None:
                return
            logger = self.logger
            enabled = self._enabled_cache.get(level)
            if enabled is None or logger.disabled:
                enabled = logger.isEnabledFor(level)
            if not enabled:
                return
            outcome = "success"
        else:
            outcome = "call" if state is _PRE else context.outcome
            level = self.levels[outcome]
            if level is None or not self.logger.isEnabledFor(level):
                return
        self._emit(context, level, outcome)

    def _emit(self, context: Any, level: int, outcome: str) -> None:
        """Log one record.  Everything in it that can carry a value goes through the redactor:
        the message, ``extra`` and the traceback text (``exc_info`` is a redacted stand-in)."""
        info = context.function_info
        target = info.target
        duration = context.execution_time
        exc = context.exception if outcome != "success" and outcome != "call" else None
        redactor = self.redactor
        # The call's sensitive argument values are masked in the exception text too, since
        # messages often quote them ("token abc123 rejected").
        arguments = context.arguments if exc is not None else None
        extra: Dict[str, Any] = {
            "function": target,
            "state": context.state.name,
            "outcome": outcome,
            "duration": duration,
            "attempt": context.attempt,
            "exception": redactor.exception_repr(exc, arguments) if exc is not None else None,
        }
        if self.include_arguments:
            extra["arguments"] = redactor.redact_mapping(context.arguments)
        if self.include_result and outcome in ("success", "recovered"):
            extra["result"] = redactor.redact(context.value)
        if duration is not None:
            message = "%s %s in %.6f s"
            args: tuple[Any, ...] = (target, _VERBS[outcome], duration)
        else:
            message = "%s %s"
            args = (target, _VERBS[outcome])
        exc_info: Any = None
        if exc is not None:
            message += ": %s"
            args += (f"{type(exc).__name__}: {redactor.exception_message(exc, arguments)}",)
            if self.exc_info and outcome in ("failure", "interrupted"):
                # logging formats exc_info's traceback, message included: hand it a redacted
                # stand-in, never the live exception (which the caller gets back untouched).
                exc_info = redactor.exc_info(exc, arguments)
        self.logger.log(level, message, *args, extra=extra, exc_info=exc_info)
