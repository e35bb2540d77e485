"""RetryHandler: run the function again after a jittered, capped exponential back-off."""

from __future__ import annotations

import inspect
import math
import random
from typing import Any, Callable, Union, cast

from .._handling import Decision, Retry
from ..errors import ConfigurationError
from ._base import RETRYABLE_KINDS, ErrorHandler, exception_types, number, type_names

__all__ = ["RetryHandler"]

JITTERS = ("equal", "full", "none")
#: The longest back-off allowed, in seconds (one day).  A longer wait is a scheduled job, not a
#: retry, and far longer ones overflow the timers that sleep it (``time.sleep(1e300)`` raises
#: OverflowError, which would reach the caller instead of the function's own error).
MAX_DELAY = 86_400.0


def _delay_option(value: Any, key: str) -> float:
    number(value, "RetryHandler", key)
    if value > MAX_DELAY:
        raise ConfigurationError(
            f"RetryHandler({key}=...) must be <= {MAX_DELAY:g} seconds (one day), got {value!r}; "
            "a longer wait is a scheduled job rather than a retry (use max_time to bound the "
            "total time spent retrying)"
        )
    return value  # type: ignore[no-any-return]


def takes_context(fn: Callable[..., Any], owner: str, key: str) -> bool:
    """Whether ``fn`` is called as ``fn(exception, context)`` rather than ``fn(exception)``."""
    if not callable(fn):
        raise ConfigurationError(f"{owner}({key}=...) must be callable, got {fn!r}")
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if not positional or len(required) > 2:
        raise ConfigurationError(
            f"{owner}({key}=...): {fn!r} must accept (exception) or (exception, context)"
        )
    return len(positional) >= 2 and len(required) == 2


class RetryHandler(ErrorHandler):
    """Retry matching failures, with an explicit stop.

    ``attempts`` counts every attempt, the first included (``attempts=3``: up to two retries);
    ``max_time`` stops when the next retry would start more than that many seconds after the
    first attempt.  At least one is required: there is no default that retries forever.

    The delay before retry *n* is ``backoff * multiplier ** (n - 1)``, capped at ``max_delay``,
    then jittered: ``"equal"`` (half fixed, half random, the default), ``"full"`` (uniformly
    random up to the delay) or ``"none"``.  A ``retry_after`` hint (an attribute name of the
    exception, or ``f(exception) -> seconds | None``) overrides the back-off, still capped at
    ``max_delay``.  When the stop is reached the handler passes, so a fallback later in the chain
    can still recover.  Generators are never retried.
    """

    def __init__(
        self,
        attempts: int | None = None,
        *,
        max_time: float | None = None,
        exceptions: Any = (Exception,),
        exclude: Any = None,
        predicate: Callable[..., bool] | None = None,
        backoff: float = 0.1,
        multiplier: float = 2.0,
        max_delay: float = 30.0,
        jitter: str | None = "equal",
        retry_after: Union[str, Callable[[BaseException], Any], None] = None,
        rng: random.Random | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name or "retry")
        owner = "RetryHandler"
        if attempts is None and max_time is None:
            raise ConfigurationError(
                "RetryHandler needs an explicit stop: pass attempts=N (total attempts, first "
                "included) and/or max_time=SECONDS; there is no default that retries forever"
            )
        self.attempts = (
            None
            if attempts is None
            else number(attempts, owner, "attempts", minimum=1, integer=True)
        )
        self.max_time = (
            None if max_time is None else number(max_time, owner, "max_time", inclusive=False)
        )
        self.exceptions = exception_types(exceptions, owner, "exceptions")
        if exclude is None:
            from ._breaker import CircuitOpenError

            # Retrying into an open breaker only burns the back-off; the breaker's own
            # recovery timeout decides when to try again.
            exclude = (CircuitOpenError,)
        self.exclude = exception_types(exclude, owner, "exclude")
        self.predicate = predicate
        self._predicate_ctx = (
            False if predicate is None else takes_context(predicate, owner, "predicate")
        )
        self.backoff = _delay_option(backoff, "backoff")
        self.multiplier = number(multiplier, owner, "multiplier", minimum=1)
        self.max_delay = _delay_option(max_delay, "max_delay")
        jitter = "none" if jitter is None else jitter
        if jitter not in JITTERS:
            raise ConfigurationError(
                f"{owner}(jitter=...) must be one of {list(JITTERS)}, got {jitter!r}"
            )
        self.jitter = jitter
        if retry_after is not None and not (isinstance(retry_after, str) or callable(retry_after)):
            raise ConfigurationError(
                f"{owner}(retry_after=...) must be an attribute name of the exception or a "
                f"callable f(exception) -> seconds, got {retry_after!r}"
            )
        self.retry_after = retry_after
        if rng is not None and not callable(getattr(rng, "uniform", None)):
            raise ConfigurationError(f"{owner}(rng=...) must be a random.Random, got {rng!r}")
        self.rng = rng

    @property
    def reads_time(self) -> bool:
        """Only ``max_time`` (and a predicate given the context) reads how long the call has
        taken: without them, a pipeline of retries alone reads no clock (see _handling)."""
        return self.max_time is not None or self._predicate_ctx

    def handle(self, exception: BaseException, context: Any) -> Decision | None:
        if not isinstance(exception, self.exceptions) or isinstance(exception, self.exclude):
            return None
        if context.function_info.kind not in RETRYABLE_KINDS:
            return None
        if self.predicate is not None:
            ok = (
                self.predicate(exception, context)
                if self._predicate_ctx
                else self.predicate(exception)
            )
            if not ok:
                return None
        attempt = context.attempt
        if self.attempts is not None and attempt >= self.attempts:
            context.note("retry_exhausted", f"{attempt} of {self.attempts} attempts made")
            return None
        delay = self.delay(attempt, exception)
        if self.max_time is not None:
            elapsed = context.execution_time or 0.0
            if elapsed + delay > self.max_time:
                context.note(
                    "retry_exhausted",
                    f"max_time {self.max_time:g}s: {elapsed:.3g}s elapsed + {delay:.3g}s delay",
                )
                return None
        delays = context.handler_state.get("retry_delays", ())
        context.note("retry_delays", [*delays, delay])
        return Retry(delay)

    def delay(self, attempt: int, exception: BaseException | None = None) -> float:
        """The delay before the retry that follows failed attempt number ``attempt``: always a
        finite number of seconds between 0 and ``max_delay``."""
        if exception is not None and self.retry_after is not None:
            hinted = self._hint(exception)
            if hinted is not None:
                return float(min(hinted, self.max_delay))
        try:
            base = min(self.max_delay, self.backoff * self.multiplier ** (attempt - 1))
        except OverflowError:
            base = self.max_delay
        if self.jitter == "none" or base <= 0:
            return float(base)
        uniform = self.rng.uniform if self.rng is not None else random.uniform
        if self.jitter == "full":
            delay = float(uniform(0.0, base))
        else:
            delay = float(base / 2 + uniform(0.0, base / 2))
        # A custom rng may return anything; the sleep must stay within what was validated.
        return min(max(delay, 0.0), base) if math.isfinite(delay) else float(base)

    def _hint(self, exception: BaseException) -> float | None:
        source = self.retry_after
        try:
            if isinstance(source, str):
                raw = getattr(exception, source)
            else:
                raw = cast(Callable[[BaseException], Any], source)(exception)
        except AttributeError:
            return None
        except Exception:
            # The hook is the user's, and it is broken: say so, but the caller must still get
            # the function's own exception, so the back-off applies.
            import logging

            logging.getLogger("callpyback.handlers").warning(
                "%s: retry_after=%r raised; using the back-off instead",
                self.name,
                source,
                exc_info=True,
            )
            return None
        if raw is None or isinstance(raw, bool):
            return None
        try:
            seconds = float(raw)
        except (TypeError, ValueError, OverflowError):
            return None  # e.g. an HTTP date, or 10**400: not usable, so the back-off applies
        return seconds if math.isfinite(seconds) and seconds >= 0 else None

    def __repr__(self) -> str:
        return (
            f"RetryHandler(attempts={self.attempts!r}, max_time={self.max_time!r}, "
            f"backoff={self.backoff!r}, multiplier={self.multiplier!r}, "
            f"max_delay={self.max_delay!r}, jitter={self.jitter!r}, "
            f"exceptions={type_names(self.exceptions)}, name={self.name!r})"
        )
