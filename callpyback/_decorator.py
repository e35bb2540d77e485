"""The ``CallPyBack`` decorator: validation, observer management and choosing a wrapper shape."""

from __future__ import annotations

import functools
import itertools
import threading
import types
import weakref
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple, TypeVar

from . import _call
from ._context import FunctionInfo
from ._handling import MISSING, DefaultErrorHandler, HandlerChain, check_exception_classes
from ._pipeline import Pipeline, Registration
from .errors import ConfigurationError
from .observers._base import CallbackObserver, StateSpec, observer_states, resolve_states
from .time_sources import SystemTimeSource

__all__ = ["CallPyBack", "callpyback"]

F = TypeVar("F", bound=Callable[..., Any])

_SEQ = itertools.count()
_SYSTEM_TIME = SystemTimeSource()

_MAKERS = {
    "function": _call.make_sync,
    "coroutine": _call.make_async,
    "generator": _call.make_generator,
    "async_generator": _call.make_async_generator,
}


def _log() -> Any:
    import logging  # lazily: ``import callpyback`` stays cheap

    return logging.getLogger("callpyback")


def _describe(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or repr(obj)


# Code-object flags (as in the ``inspect`` module, which is not imported just for these).
_CO_GENERATOR = 0x20
_CO_COROUTINE = 0x80
_CO_ASYNC_GENERATOR = 0x200


def _code_flags(obj: Any) -> int:
    for _ in range(100):  # peel partials, bound methods and callable objects
        if isinstance(obj, functools.partial):
            obj = obj.func
        elif isinstance(obj, (types.MethodType, classmethod, staticmethod)):
            obj = obj.__func__
        else:
            break
    code = getattr(obj, "__code__", None)
    if isinstance(code, types.CodeType):
        return code.co_flags
    call = type(obj).__dict__.get("__call__") if not isinstance(obj, type) else None
    if isinstance(call, types.FunctionType):
        return call.__code__.co_flags
    return 0


def _kind_of(func: Any) -> str:
    flags = func.__code__.co_flags if type(func) is types.FunctionType else _code_flags(func)
    if flags & _CO_ASYNC_GENERATOR:
        return "async_generator"
    if flags & _CO_COROUTINE:
        return "coroutine"
    if flags & _CO_GENERATOR:
        return "generator"
    return "function"


def _is_observer_like(obj: Any) -> bool:
    return callable(getattr(obj, "update", None))


def _looks_like_decoration_target(obj: Any) -> bool:
    if isinstance(obj, (classmethod, staticmethod)):
        return True
    if isinstance(obj, (list, tuple, set, frozenset)) or _is_observer_like(obj):
        return False
    return callable(obj)


class CallPyBack:
    """Observe calls of the decorated function: ``@CallPyBack(observers=[...])`` or ``@CallPyBack``.

    One instance may decorate several functions; its observers are shared by all of them, and
    :meth:`add_observer` / :meth:`remove_observer` take effect for calls that start afterwards,
    from any thread, without locking the call path.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # Bare ``@CallPyBack`` passes the function as the only positional argument.
        if len(args) == 1 and not kwargs and _looks_like_decoration_target(args[0]):
            instance = super().__new__(cls)
            cls.__init__(instance)
            return instance(args[0])
        return super().__new__(cls)

    def __init__(
        self,
        observers: Optional[Iterable[Any]] = None,
        *,
        variable_names: Optional[Sequence[str]] = None,
        exception_classes: Any = None,
        default_return: Any = MISSING,
        max_observer_failures: Optional[int] = 5,
        time_source: Any = None,
        variable_extractor: Any = None,
        error_handlers: Optional[Iterable[Any]] = None,
        enable_async_observers: bool = False,
        max_execution_time: Optional[float] = None,
        name: Optional[str] = None,
    ) -> None:
        if max_observer_failures is not None and (
            not isinstance(max_observer_failures, int)
            or isinstance(max_observer_failures, bool)
            or max_observer_failures < 1
        ):
            raise ConfigurationError(
                f"max_observer_failures must be a positive int (or None to never disable an "
                f"observer), got {max_observer_failures!r}"
            )
        self.max_observer_failures = max_observer_failures
        self.time_source = _check_time_source(time_source)
        self.name = name
        self.enable_async_observers = bool(enable_async_observers)
        self.variable_names = _check_variable_names(variable_names)
        self.variable_extractor = _pick_extractor(variable_extractor, self.variable_names)

        handlers = list(error_handlers or ())
        if max_execution_time is not None:
            # A shortcut for the timeout handler, outermost so it bounds every attempt.
            from .handlers import TimeoutHandler

            handlers.insert(0, TimeoutHandler(max_execution_time))
        self.max_execution_time = max_execution_time
        if exception_classes is not None and default_return is MISSING:
            raise ConfigurationError(
                "exception_classes only says what default_return recovers; pass default_return=... "
                "too (None is a valid default), or use error_handlers for other behaviour"
            )
        if default_return is not MISSING:
            classes = (Exception,) if exception_classes is None else exception_classes
            handlers.append(DefaultErrorHandler(default_return, classes))
        self.default_return = default_return
        self.exception_classes = (
            check_exception_classes(exception_classes, "exception_classes")
            if exception_classes is not None
            else (Exception,)
        )
        self.chain = HandlerChain(handlers)

        self._lock = threading.Lock()  # guards changes, never calls
        self._registrations: Tuple[Registration, ...] = ()
        self._has_sync = False
        # The wrappers read the current pipeline from this one-item list (see _call.make_sync).
        self._current: List[Optional[Pipeline]] = [None]
        for obs in observers or ():
            self.add_observer(obs)
        self._rebuild()

    # --- decoration ---------------------------------------------------------------------
    def __call__(self, func: F) -> F:
        if isinstance(func, (classmethod, staticmethod)):
            return type(func)(self(func.__func__))
        if not callable(func):
            raise ConfigurationError(
                f"CallPyBack can only decorate callables, got {func!r} ({type(func).__name__}); "
                "if you meant to pass observers, use CallPyBack(observers=[...])"
            )
        kind = _kind_of(func)
        if not self._has_sync and kind in ("function", "generator"):
            self._check_sync_allowed(func)
        if kind in ("generator", "async_generator") and (
            self.chain.call_sync or self.chain.call_async
        ):
            raise ConfigurationError(
                f"{_describe(func)} is a generator function, but this CallPyBack has an error "
                "handler that wraps each call (such as TimeoutHandler / max_execution_time); it "
                "cannot bound a generator, which runs as its consumer iterates. Use a separate "
                "CallPyBack without it for generators"
            )
        info = FunctionInfo(func, kind)
        wrapper = _MAKERS[kind](func, info, self)
        if type(func) is types.FunctionType:
            # What functools.update_wrapper does, without its generic getattr loop: the import
            # hook decorates thousands of functions at import time.
            wrapper.__module__ = func.__module__
            wrapper.__name__ = func.__name__
            wrapper.__qualname__ = func.__qualname__
            wrapper.__doc__ = func.__doc__
            if func.__dict__:
                wrapper.__dict__.update(func.__dict__)
            wrapper.__wrapped__ = func  # type: ignore[attr-defined]
            wrapper.__annotations__ = func.__annotations__
        else:
            try:
                functools.update_wrapper(wrapper, func)
            except (AttributeError, TypeError):  # e.g. an object whose __dict__ is not copyable
                wrapper.__wrapped__ = func  # type: ignore[attr-defined]
            if not hasattr(func, "__name__"):
                wrapper.__name__ = wrapper.__qualname__ = type(func).__name__
        wrapper.__callpyback__ = self  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    def _check_sync_allowed(self, func: Any) -> None:
        with self._lock:
            for reg in self._registrations:
                if reg.is_async and not reg.background:
                    raise _async_on_sync(reg.name, func)
            async_handlers = self.chain.is_async_only
            if async_handlers:
                raise ConfigurationError(
                    f"error handlers {async_handlers} are async and can only handle coroutine "
                    f"functions, but {_describe(func)} is synchronous"
                )
            self._has_sync = True

    # --- observers ----------------------------------------------------------------------
    def add_observer(
        self,
        observer: Any,
        states: Optional[Iterable[StateSpec]] = None,
        phases: Optional[Iterable[StateSpec]] = None,
        weak: bool = False,
        *,
        priority: Optional[int] = None,
        background: Optional[bool] = None,
    ) -> Any:
        """Attach ``observer`` (an object with ``update(context)``, or a plain callable).

        ``states``/``phases`` override what the observer subscribes to; ``weak=True`` holds it
        by weak reference so it drops out of dispatch when collected.  Returns the observer.
        """
        if not _is_observer_like(observer):
            if callable(observer):
                observer = CallbackObserver(observer)
            else:
                raise ConfigurationError(
                    f"{observer!r} is not an observer: give it an update(context) method, or "
                    "pass a callable (see on_call/on_success/on_failure/on_completion)"
                )
        name = getattr(observer, "name", None) or type(observer).__name__
        wanted = (
            resolve_states(states, phases, owner=name)
            if states is not None or phases is not None
            else observer_states(observer)
        )
        prio = getattr(observer, "priority", 0) if priority is None else priority
        if not isinstance(prio, int) or isinstance(prio, bool):
            raise ConfigurationError(f"observer {name!r}: priority must be an int, got {prio!r}")
        update = observer.update
        is_async = bool(getattr(observer, "is_async", False)) or bool(
            _code_flags(update) & _CO_COROUTINE
        )
        bg = self.enable_async_observers or bool(
            getattr(observer, "background", False) if background is None else background
        )
        ref = None
        if weak:
            try:
                ref = weakref.ref(observer, self._drop_dead)
            except TypeError:
                raise ConfigurationError(
                    f"observer {name!r} ({type(observer).__name__}) does not support weak "
                    "references; add __weakref__ to its __slots__ or use weak=False"
                ) from None
            fn = _weak_update(ref)
        else:
            fn = update
        if bg:
            from ._background import background_update

            fn = background_update(fn, name, is_async)
            is_async = False
        reg = Registration(
            owner=self,
            observer=None if weak else observer,
            ref=ref,
            fn=fn,
            name=name,
            priority=prio,
            seq=next(_SEQ),
            states=frozenset(wanted) if wanted is not None else None,
            is_async=is_async,
            background=bg,
            guard=bool(getattr(observer, "reentrancy_guard", True)),
            injection=getattr(observer, "injection", None),
            callback=getattr(observer, "callback", None),
            gate=_optional_callable(observer, "gate"),
        )
        with self._lock:
            if is_async and self._has_sync:
                raise _async_on_sync(name, None)
            self._registrations = (*self._registrations, reg)
            self._rebuild_locked()
        return observer

    def remove_observer(self, observer: Any) -> bool:
        """Detach every registration of ``observer``; False if it was not attached."""
        with self._lock:
            keep = tuple(r for r in self._registrations if r.target() is not observer)
            removed = len(keep) != len(self._registrations)
            self._registrations = keep
            self._rebuild_locked()
        return removed

    def enable_observer(self, observer: Any) -> bool:
        """Re-enable an observer that was disabled after repeated failures."""
        found = False
        with self._lock:
            for reg in self._registrations:
                if reg.target() is observer:
                    reg.disabled = False
                    reg.failures = 0
                    found = True
            self._rebuild_locked()
        return found

    @property
    def observers(self) -> List[Any]:
        """The attached observers, in dispatch order (disabled ones included)."""
        regs = sorted(self._registrations, key=lambda r: (-r.priority, r.seq))
        return [t for t in (r.target() for r in regs) if t is not None]

    @property
    def registrations(self) -> Tuple[Registration, ...]:
        return self._registrations

    def _drop_dead(self, ref: Any) -> None:
        with self._lock:
            self._registrations = tuple(r for r in self._registrations if r.ref is not ref)
            self._rebuild_locked()

    def _observer_failed(self, reg: Registration, exc: Exception) -> None:
        reg.failures += 1
        reg.total_failures += 1
        if reg.failures == 1:
            # Logged once per streak of failures, with the traceback; the rest are counted.
            _log().error(
                "observer %r raised %r; the observed call is unaffected",
                reg.name,
                exc,
                exc_info=exc,
            )
        limit = self.max_observer_failures
        if limit is not None and reg.failures >= limit and not reg.disabled:
            if not self._disable(reg):
                return  # another thread got there first
            message = (
                f"observer {reg.name!r} failed {reg.failures} times in a row and was disabled; "
                "call enable_observer() to re-enable it"
            )
            _log().warning(message)
            try:
                import warnings

                from .errors import ObserverDisabledWarning

                warnings.warn(message, ObserverDisabledWarning, stacklevel=2)
            except Exception:  # warnings turned into errors must not reach the caller
                pass

    def _disable(self, reg: Registration) -> bool:
        with self._lock:
            if reg.disabled:
                return False
            reg.disabled = True
            self._rebuild_locked()
            return True

    def _rebuild(self) -> None:
        with self._lock:
            self._rebuild_locked()

    def _rebuild_locked(self) -> None:
        pipeline = Pipeline(
            self._registrations,
            self.chain,
            self.time_source,
            self.variable_extractor,
            self.variable_names,
        )
        # None is the wrapper's one-branch passthrough signal.
        self._current[0] = None if pipeline.empty else pipeline

    @property
    def pipeline(self) -> Optional[Pipeline]:
        """The pipeline calls use now (None: nothing to do, calls pass straight through)."""
        return self._current[0]

    @property
    def _pipeline(self) -> Optional[Pipeline]:
        return self._current[0]

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        counts = f"observers={len(self._registrations)} handlers={len(self.chain.handlers)}"
        return f"<CallPyBack{label} {counts}>"


def _optional_callable(obj: Any, name: str) -> Any:
    value = getattr(obj, name, None)
    return value if callable(value) else None


def _weak_update(ref: Any) -> Callable[[Any], Any]:
    def update(context: Any) -> Any:
        observer = ref()
        if observer is not None:
            return observer.update(context)
        return None

    return update


def _async_on_sync(name: str, func: Any) -> ConfigurationError:
    where = f" {_describe(func)}" if func is not None else " a synchronous function"
    return ConfigurationError(
        f"observer {name!r} is async (update is a coroutine function) but this CallPyBack wraps"
        f"{where}; async observers run on coroutine paths only. Pass background=True (or "
        "enable_async_observers=True) to run it off the caller's thread instead"
    )


def _check_time_source(ts: Any) -> Any:
    if ts is None:
        return _SYSTEM_TIME
    missing = [m for m in ("now", "monotonic", "sleep") if not callable(getattr(ts, m, None))]
    if missing:
        raise ConfigurationError(
            f"time_source {ts!r} lacks {missing}; a time source needs now(), monotonic() and "
            "sleep(seconds) (see SystemTimeSource and MockTimeSource)"
        )
    return ts


def _check_variable_names(names: Any) -> Tuple[str, ...]:
    if names is None:
        return ()
    if isinstance(names, str):
        names = [names]
    try:
        out = tuple(names)
    except TypeError:
        raise ConfigurationError(f"variable_names must be a list of names, got {names!r}") from None
    for n in out:
        if not isinstance(n, str) or not n.isidentifier():
            raise ConfigurationError(f"variable_names: {n!r} is not a valid Python identifier")
    return out


def _pick_extractor(extractor: Any, names: Tuple[str, ...]) -> Any:
    if extractor is not None:
        if not callable(getattr(extractor, "begin", None)):
            raise ConfigurationError(
                f"variable_extractor {extractor!r} needs a begin(code, names) method returning a "
                "capture with finish() (see callpyback.extractors)"
            )
        return extractor
    if not names:
        return None
    from .extractors import TracingVariableExtractor  # only functions that ask pay for it

    return TracingVariableExtractor()


#: Lowercase alias, for those who prefer decorators to read like functions.
callpyback = CallPyBack
