"""The error-handler chain: decisions, the chain compiled once per pipeline, the default handler.

A handler's ``handle(exception, context)`` returns a :class:`Decision` or None ("pass to the next
handler").  Handlers may also define optional hooks, discovered once when the chain is built so a
call pays only for the hooks that exist:

* ``before_attempt(context)``: runs inside each attempt, before the function (a circuit breaker
  raises ``CircuitOpenError`` here to fail fast);
* ``after_success(context)``: after a successful attempt;
* ``record_failure(exception, context)``: sees *every* failed attempt, whichever handler decides
  (before POST_FAILURE observers, so they see its effect);
* ``record_interrupt(exception, context)``: an attempt ended by cancellation or by a
  ``BaseException`` such as ``KeyboardInterrupt`` (never a failure; lets a handler release what
  it held for the attempt);
* ``call_sync(func, args, kwargs, context)`` / ``call_async(...)``: wrap the attempt itself
  (a timeout).

Two optional attributes keep handlers off the per-call cost when they have nothing to do:

* ``hot``: an object with a boolean ``idle`` attribute.  While it is true the engine skips
  ``before_attempt`` and ``after_success`` (so no context is built for them); on success it
  calls ``hot.count()`` instead, if ``hot`` has one (a breaker counts closed-state successes).
* ``reads_time``: False if the handler never reads a duration or timestamp from the context;
  a pipeline whose handlers all say so reads no clock until something else needs one.

``handle``/``before_attempt``/``call_async`` may be ``async def``; they are then only usable on
coroutine and async-generator paths.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, Tuple, Type

from .errors import ConfigurationError

__all__ = [
    "Decision",
    "DefaultErrorHandler",
    "HandlerChain",
    "Raise",
    "Recover",
    "Retry",
]


class _Missing:
    """ "No value given" (None is a valid default); pickles as the one module-level instance."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class Decision:
    """What a handler decided; one of :class:`Recover`, :class:`Raise` or :class:`Retry`."""

    __slots__ = ()


class Recover(Decision):
    """Return ``value`` to the caller instead of raising."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Recover({self.value!r})"


class Raise(Decision):
    """Raise ``exception`` (chained ``from`` the original unless it *is* the original)."""

    __slots__ = ("exception",)

    def __init__(self, exception: BaseException) -> None:
        if not isinstance(exception, BaseException):
            raise ConfigurationError(f"Raise() needs an exception instance, got {exception!r}")
        self.exception = exception

    def __repr__(self) -> str:
        return f"Raise({self.exception!r})"


class Retry(Decision):
    """Run the function again after ``delay`` seconds (slept through the time source)."""

    __slots__ = ("delay",)

    def __init__(self, delay: float = 0.0) -> None:
        if delay < 0:
            raise ConfigurationError(f"Retry(delay=...) must be >= 0, got {delay!r}")
        self.delay = delay

    def __repr__(self) -> str:
        return f"Retry(delay={self.delay!r})"


def handler_name(handler: Any) -> str:
    name = getattr(handler, "name", None)
    if isinstance(name, str) and name:
        return name
    return getattr(handler, "__qualname__", None) or type(handler).__name__


def check_exception_classes(classes: Any, owner: str) -> Tuple[Type[BaseException], ...]:
    """Validate an exception class or sequence of them; ConfigurationError names the bad entry."""
    if isinstance(classes, type):
        classes = (classes,)
    try:
        items = tuple(classes)
    except TypeError:
        raise ConfigurationError(
            f"{owner}: expected an exception class or a sequence of them, got {classes!r}"
        ) from None
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise ConfigurationError(
                f"{owner}: {item!r} is not an exception class; pass classes such as ValueError"
            )
    return items


class DefaultErrorHandler:
    """Recover the listed exceptions with a value, or with ``fallback(context)`` if callable=True.

    ``CallPyBack(exception_classes=..., default_return=...)`` becomes one of these at the end of
    the chain.
    """

    def __init__(
        self,
        default: Any = None,
        exception_classes: Any = (Exception,),
        *,
        call: bool = False,
        name: str | None = None,
    ) -> None:
        self.exception_classes = check_exception_classes(exception_classes, "DefaultErrorHandler")
        if call and not callable(default):
            raise ConfigurationError(
                f"DefaultErrorHandler(call=True) needs a callable default, got {default!r}"
            )
        self.default = default
        self.call = call
        self.name = name or "default"

    def handle(self, exception: BaseException, context: Any) -> Decision | None:
        """Recover the listed exceptions with the default value; pass on the others."""
        if isinstance(exception, self.exception_classes):
            return Recover(self.default(context) if self.call else self.default)
        return None

    def __repr__(self) -> str:
        names = [c.__name__ for c in self.exception_classes]
        return f"DefaultErrorHandler(default={self.default!r}, exception_classes={names})"


class _CallableHandler:
    """A plain ``f(exception, context)`` used as a handler: a Decision, or None to pass."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.name = getattr(func, "__qualname__", repr(func))
        if _is_async(func):
            self.handle = self._ahandle  # type: ignore[method-assign]

    def handle(self, exception: BaseException, context: Any) -> Any:
        return self.func(exception, context)

    async def _ahandle(self, exception: BaseException, context: Any) -> Any:
        return await self.func(exception, context)

    def __repr__(self) -> str:
        return f"<callable handler {self.name}>"


def as_handler(obj: Any) -> Any:
    if callable(getattr(obj, "handle", None)):
        return obj
    if callable(obj):
        return _CallableHandler(obj)
    raise ConfigurationError(
        f"error handler {obj!r} must have a handle(exception, context) method or be a callable "
        "taking (exception, context)"
    )


def _is_async(fn: Any) -> bool:
    # Code flags directly: ``inspect`` is not worth its import time for this one test.
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    return code is not None and bool(code.co_flags & 0x80)  # CO_COROUTINE


class HandlerChain:
    """The handlers of one pipeline, with their optional hooks sorted out once."""

    __slots__ = (
        "after_hot",
        "after_success",
        "before_attempt",
        "before_hot",
        "call_async",
        "call_sync",
        "handlers",
        "is_async",
        "is_async_only",
        "reads_time",
        "record_failure",
        "record_interrupt",
    )

    def __init__(self, handlers: Sequence[Any]) -> None:
        self.handlers: Tuple[Any, ...] = tuple(as_handler(h) for h in handlers)

        def hooks(attr: str) -> Tuple[Any, ...]:
            return tuple(
                getattr(h, attr) for h in self.handlers if callable(getattr(h, attr, None))
            )

        def with_hot(attr: str) -> Tuple[Tuple[Any, ...], Tuple[Any, ...]]:
            found = [h for h in self.handlers if callable(getattr(h, attr, None))]
            hots = tuple(_hot(h) for h in found)
            return tuple(getattr(h, attr) for h in found), hots

        self.before_attempt, self.before_hot = with_hot("before_attempt")
        self.after_success, self.after_hot = with_hot("after_success")
        self.record_failure = hooks("record_failure")
        # Attempts ended by cancellation or KeyboardInterrupt/SystemExit: never failures, but
        # a handler may hold something for the attempt (a breaker's half-open trial slot).
        self.record_interrupt = hooks("record_interrupt")
        # The core calls only the first call hook, so several (two timeouts, a timeout and a
        # custom wrapper) are composed here into one, in chain order (the first is outermost).
        self.call_sync = _compose(hooks("call_sync"), is_async=False)
        self.call_async = _compose(hooks("call_async"), is_async=True)
        #: Whether some handler's decision must be awaited (only on coroutine paths).
        self.is_async = any(_is_async(getattr(h, "handle", None)) for h in self.handlers)
        #: Whether some handler may read a duration or timestamp (unknown handlers: yes).
        self.reads_time = any(getattr(h, "reads_time", True) for h in self.handlers)
        self.is_async_only = [
            handler_name(h)
            for h in self.handlers
            if _is_async(getattr(h, "handle", None))
            or _is_async(getattr(h, "before_attempt", None))
        ]

    def __bool__(self) -> bool:
        return bool(self.handlers)

    def decide(
        self, exception: BaseException, context: Any, allow_retry: bool = True
    ) -> Tuple[Decision | None, str]:
        """Run the chain synchronously; (None, "") means nobody handled it.

        With ``allow_retry=False`` (generators) a Retry decision is skipped and the chain goes on.
        """
        for h in self.handlers:
            try:
                decision = h.handle(exception, context)
                if decision is not None:
                    decision = _check(decision, h)
            except Exception as raised:  # a handler that raises decides "raise this"
                _log_handler_error(h, raised, exception)
                return Raise(raised), handler_name(h)
            if decision is not None and (allow_retry or type(decision) is not Retry):
                return decision, handler_name(h)
        return None, ""

    async def adecide(
        self, exception: BaseException, context: Any, allow_retry: bool = True
    ) -> Tuple[Decision | None, str]:
        """As :meth:`decide`, awaiting handlers that are coroutines."""
        for h in self.handlers:
            try:
                decision = h.handle(exception, context)
                if hasattr(decision, "__await__"):
                    decision = await decision
                if decision is not None:
                    decision = _check(decision, h)
            except Exception as raised:
                _log_handler_error(h, raised, exception)
                return Raise(raised), handler_name(h)
            if decision is not None and (allow_retry or type(decision) is not Retry):
                return decision, handler_name(h)
        return None, ""


def _hot(handler: Any) -> Any:
    hot = getattr(handler, "hot", None)
    if hot is None:
        return None
    if not hasattr(hot, "idle"):
        raise ConfigurationError(
            f"error handler {handler_name(handler)}: its 'hot' attribute must have a boolean "
            f"'idle' attribute (see callpyback._handling), got {hot!r}"
        )
    return hot


def _compose(calls: Tuple[Any, ...], *, is_async: bool) -> Tuple[Any, ...]:
    """Fold several ``call_*(func, args, kwargs, context)`` hooks into one (a 0/1-tuple)."""
    if len(calls) <= 1:
        return calls
    composed = calls[-1]
    for outer in reversed(calls[:-1]):
        composed = _nest_async(outer, composed) if is_async else _nest_sync(outer, composed)
    return (composed,)


def _nest_sync(outer: Any, inner: Any) -> Any:
    def call(func: Any, args: Any, kwargs: Any, context: Any) -> Any:
        def attempt(*a: Any, **kw: Any) -> Any:
            return inner(func, a, kw, context)

        return outer(attempt, args, kwargs, context)

    return call


def _nest_async(outer: Any, inner: Any) -> Any:
    async def call(func: Any, args: Any, kwargs: Any, context: Any) -> Any:
        def attempt(*a: Any, **kw: Any) -> Any:
            return inner(func, a, kw, context)  # an awaitable, as ``func(...)`` would be

        return await outer(attempt, args, kwargs, context)

    return call


def _check(decision: Any, handler: Any) -> Decision:
    if isinstance(decision, Decision):
        return decision
    raise ConfigurationError(
        f"error handler {handler_name(handler)} returned {decision!r}; return Recover(value), "
        "Raise(exc), Retry(delay) or None to pass"
    )


def _log_handler_error(handler: Any, raised: BaseException, original: BaseException) -> None:
    import logging  # lazily: ``import callpyback`` must not pay for logging

    logging.getLogger("callpyback.handlers").error(
        "error handler %s raised %r while handling %r; raising it, chained to the original",
        handler_name(handler),
        raised,
        original,
        exc_info=raised,
    )
