"""The ``CallPyBack`` decorator: validation, observer management, and the functions it observes.

A decorator owns a :class:`~callpyback._pipeline.Pipeline` and every function it observes.
When its observers change it builds a new pipeline and recompiles those functions' code
(``_engine.rebind``), so a call never checks whether something changed.
"""

from __future__ import annotations

import functools
import itertools
import sys
import threading
import types
import weakref
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, TypeVar

from . import _cengine, _engine
from ._context import FunctionInfo
from ._handling import MISSING, DefaultErrorHandler, HandlerChain, check_exception_classes
from ._inject import resolve_injection
from ._pipeline import Pipeline, Registration
from .errors import ConfigurationError
from .states import ExecutionState, StateSpec, resolve_states
from .time_sources import SystemTimeSource

__all__ = ["CallPyBack", "callpyback", "instrumented_by"]

F = TypeVar("F", bound=Callable[..., Any])

_SEQ = itertools.count()
_SYSTEM_TIME = SystemTimeSource()

#: Every live decorator, for process-wide seams (a time-source override, a call capture).
_LIVE: weakref.WeakSet[CallPyBack] = weakref.WeakSet()


def _log() -> Any:
    import logging  # lazily: ``import callpyback`` stays cheap

    return logging.getLogger("callpyback")


def _describe(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or repr(obj)


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


def kind_of(func: Any) -> str:
    """ "function", "coroutine", "generator" or "async_generator"."""
    flags = func.__code__.co_flags if type(func) is types.FunctionType else _code_flags(func)
    if flags & _CO_ASYNC_GENERATOR:
        return "async_generator"
    if flags & _CO_COROUTINE:
        return "coroutine"
    if flags & _CO_GENERATOR:
        return "generator"
    return "function"


def _is_observer_like(obj: Any) -> bool:
    return callable(getattr(obj, "update", None)) or callable(getattr(obj, "notify", None))


def _looks_like_decoration_target(obj: Any) -> bool:
    if isinstance(obj, (classmethod, staticmethod)):
        return True
    if isinstance(obj, (list, tuple, set, frozenset)) or _is_observer_like(obj):
        return False
    return callable(obj)


def _observer_states(observer: Any) -> Optional[frozenset[ExecutionState]]:
    states = getattr(observer, "states", None)
    phases = getattr(observer, "phases", None)
    if states is None and phases is None:
        return None
    return resolve_states(states, phases, owner=repr(observer))


# --- what a decorator observes ------------------------------------------------------------------


class _Bound:
    """One function this decorator observes: a new wrapper, or a function instrumented in place."""

    __slots__ = ("__weakref__", "copy", "func", "info", "ref")

    def __init__(self, ref: Any, func: Any, info: FunctionInfo, copy: Any = None) -> None:
        self.ref = ref  # weak reference to the wrapper (or to the function instrumented in place)
        self.func = func  # what runs the original code
        self.info = info
        self.copy = copy  # in place: the private copy; None for a decorator-mode wrapper


class InPlace:
    """The record of a function instrumented in place: enough to undo it exactly."""

    __slots__ = ("code", "decorator", "func")

    def __init__(self, func: types.FunctionType, code: types.CodeType, decorator: Any) -> None:
        self.func = func
        self.code = code  # the original code
        self.decorator = decorator

    @property
    def active(self) -> bool:
        return self.func.__code__ is not self.code

    def undo(self) -> bool:
        """Give the function its original code back; False if it was already."""
        if not self.active:
            return False
        self.decorator._forget(self.func)
        self.func.__code__ = self.code
        _cengine.unpatch(self.func)
        _IN_PLACE.pop(self.func, None)
        return True


#: function instrumented in place -> its record (nothing is written on the function itself)
_IN_PLACE: weakref.WeakKeyDictionary[Any, InPlace] = weakref.WeakKeyDictionary()


def instrumented_by(func: Any) -> Optional[CallPyBack]:
    """The ``CallPyBack`` observing ``func`` (a wrapper it returned, a function the import hook
    instruments in place, or a method or class/static method of either), or None."""
    for _ in range(3):
        decorator = getattr(func, "__callpyback__", None)
        if decorator is not None:
            return decorator  # type: ignore[no-any-return]
        record = in_place_record(func)
        if record is not None:
            return record.decorator  # type: ignore[no-any-return]
        inner = getattr(func, "__func__", None)  # bound methods, classmethod, staticmethod
        if inner is None:
            return None
        func = inner
    return None


def in_place_record(func: Any) -> Optional[InPlace]:
    """The in-place record of ``func``, if CallPyBack instruments it in place."""
    try:
        return _IN_PLACE.get(func)
    except TypeError:  # not weak-referenceable
        return None


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
        observers: Any = None,
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
        self._time_source = _check_time_source(time_source)
        self.name = name
        self.enable_async_observers = bool(enable_async_observers)
        self.variable_names = _check_variable_names(variable_names)
        self.variable_extractor = _pick_extractor(variable_extractor, self.variable_names)

        handlers = _as_list(error_handlers, "error_handlers")
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

        self._lock = threading.RLock()  # guards changes, never calls
        self._registrations: Tuple[Registration, ...] = ()
        self._bound: List[_Bound] = []
        self._has_sync = False
        # Known to the process-wide seams before the first build: one that changes meanwhile
        # rebuilds us, or we build after it changed (either way the override is in force).
        _LIVE.add(self)
        with self._lock:
            self._pipeline_now: Pipeline = self._build()
        if observers is not None and _is_observer_like(observers):
            observers = [observers]  # one observer given where a list was expected
        for obs in _as_list(observers, "observers"):
            self.add_observer(obs)

    # --- decoration ---------------------------------------------------------------------
    def __call__(self, func: F) -> F:
        if isinstance(func, (classmethod, staticmethod)):
            return type(func)(self(func.__func__))
        if isinstance(func, type):
            raise ConfigurationError(
                f"CallPyBack decorates functions and methods, not classes ({func.__qualname__} "
                "is a class): decorate the methods to observe, or select them with a "
                "callpyback.toml pattern such as 'module:Class.*'"
            )
        if not callable(func):
            raise ConfigurationError(
                f"CallPyBack can only decorate callables, got {func!r} ({type(func).__name__}); "
                "if you meant to pass observers, use CallPyBack(observers=[...])"
            )
        kind = kind_of(func)
        self._check_kind(func, kind)
        info = FunctionInfo(func, kind, pipeline=self.name)
        with self._lock:
            wrapper = _cengine.make_wrapper(self._pipeline_now, func, info)
            self._bound.append(_Bound(weakref.ref(wrapper, self._unbind), func, info))
        _copy_metadata(wrapper, func)
        wrapper.__callpyback__ = self  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    def observe(self, func: Callable[..., Any], *, target: str) -> Callable[..., Any]:
        """Like decorating ``func``, but its calls are reported under ``target``.

        For integrations whose calls are not a Python function's own: a web request
        (``http:GET /orders/{id}``) or a database statement (``db:SELECT orders``).
        """
        kind = kind_of(func)
        self._check_kind(func, kind)
        info = FunctionInfo(func, kind, target=target, pipeline=self.name)
        with self._lock:
            wrapper = _cengine.make_wrapper(self._pipeline_now, func, info)
            self._bound.append(_Bound(weakref.ref(wrapper, self._unbind), func, info))
        _copy_metadata(wrapper, func)
        wrapper.__callpyback__ = self  # type: ignore[attr-defined]
        return wrapper

    def instrument_in_place(self, func: types.FunctionType) -> InPlace:
        """Observe ``func`` itself: every reference to it, taken before or after, is observed.

        The function keeps its identity, name, defaults and attributes; its code becomes the
        observing wrapper, and the original code runs in a private copy.  ``undo()`` on the
        returned record restores it.  This is how the import hook instruments.
        """
        if type(func) is not types.FunctionType:
            raise ConfigurationError(
                f"only plain functions can be instrumented in place, got {func!r}"
            )
        if func in _IN_PLACE:
            raise ConfigurationError(f"{_describe(func)} is already instrumented in place")
        kind = kind_of(func)
        self._check_kind(func, kind)
        copy = _engine.copy_function(func)
        info = FunctionInfo(copy, kind, pipeline=self.name)
        record = InPlace(func, func.__code__, self)
        with self._lock:
            _cengine.instrument(self._pipeline_now, func, copy, info)
            self._bound.append(_Bound(weakref.ref(func, self._unbind), copy, info, copy))
        _IN_PLACE[func] = record
        return record

    def _check_kind(self, func: Any, kind: str) -> None:
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

    def _unbind(self, ref: Any) -> None:
        with self._lock:
            self._bound = [b for b in self._bound if b.ref is not ref]

    def _forget(self, func: Any) -> None:
        with self._lock:
            self._bound = [b for b in self._bound if b.ref() is not func]

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
        reg = self._registration(observer, states, phases, weak, priority, background)
        with self._lock:
            if reg.is_async and self._has_sync:
                raise _async_on_sync(reg.name, None)
            self._registrations = (*self._registrations, reg)
            self._rebuild_locked()
        return observer

    def _registration(
        self,
        observer: Any,
        states: Optional[Iterable[StateSpec]],
        phases: Optional[Iterable[StateSpec]],
        weak: bool,
        priority: Optional[int],
        background: Optional[bool],
    ) -> Registration:
        plain = not _is_observer_like(observer)
        if plain and not callable(observer):
            raise ConfigurationError(
                f"{observer!r} is not an observer: give it an update(context) method, or "
                "pass a callable (see on_call/on_success/on_failure/on_completion)"
            )
        if plain:
            name = getattr(observer, "__qualname__", None) or repr(observer)
            wanted = (
                resolve_states(states, phases, owner=name)
                if states is not None or phases is not None
                else None
            )
            prio = 0 if priority is None else priority
            notify: Any = observer
            update: Any = None
            is_async = bool(_code_flags(observer) & _CO_COROUTINE)
            guard = True
            escalates = False
        else:
            name = getattr(observer, "name", None) or type(observer).__name__
            wanted = (
                resolve_states(states, phases, owner=name)
                if states is not None or phases is not None
                else _observer_states(observer)
            )
            prio = getattr(observer, "priority", 0) if priority is None else priority
            notify = getattr(observer, "notify", None)
            if not callable(notify):
                notify = None
            update = getattr(observer, "update", None)
            if not callable(update) or getattr(update, "_callpyback_abstract", False):
                update = None
            is_async = bool(getattr(observer, "is_async", False)) or bool(
                _code_flags(update or notify) & _CO_COROUTINE
            )
            guard = bool(getattr(observer, "reentrancy_guard", True))
            # A callback observer's return value means nothing; another observer's notify may
            # ask for update(context) by returning NEEDS_CONTEXT, unless it is annotated as
            # returning None (then the engine does not even look).
            escalates = (
                update is not None
                and notify is not None
                and not getattr(observer, "is_callback_observer", False)
                and getattr(notify, "__annotations__", {}).get("return", "?") not in (None, "None")
            )
        if not isinstance(prio, int) or isinstance(prio, bool):
            raise ConfigurationError(f"observer {name!r}: priority must be an int, got {prio!r}")
        inject = resolve_injection(notify, name) if notify is not None else None
        if update is None and notify is None:
            raise ConfigurationError(f"observer {name!r} has neither update() nor notify()")
        # An observer that defers its own slow work (the audit observer builds each record on
        # the caller's thread and only writes in the background) is never run on the worker.
        own = bool(getattr(observer, "defers_own_writes", False))
        bg = (self.enable_async_observers and not own) or bool(
            getattr(observer, "background", False) if background is None and not own else background
        )
        gate = None if plain else _optional_callable(observer, "gate")
        bind = None if plain else _optional_callable(observer, "bind")
        bind_batch = 0 if bind is None else _batch_size(observer, name)
        enter = None if plain else _optional_callable(observer, "enter")
        exit_ = None if plain else _optional_callable(observer, "exit")
        if (enter is None) != (exit_ is None):
            raise ConfigurationError(
                f"observer {name!r} defines only one of enter(context) and exit(context, token); "
                "an around-observer needs both"
            )
        if enter is not None and bg:
            raise ConfigurationError(
                f"observer {name!r} has enter/exit hooks around the function body; it must run "
                "on the caller's thread, so it cannot be a background observer"
            )
        ref = None
        if weak:
            if plain:
                raise ConfigurationError(
                    f"weak=True needs an observer object; {name!r} is a plain callable"
                )
            try:
                ref = weakref.ref(observer, self._drop_dead)
            except TypeError:
                raise ConfigurationError(
                    f"observer {name!r} ({type(observer).__name__}) does not support weak "
                    "references; add __weakref__ to its __slots__ or use weak=False"
                ) from None
            # Nothing of the observer may be held strongly: no bound methods in the pipeline.
            update = _weak_update(ref)
            notify = inject = gate = enter = exit_ = bind = None
            escalates = False
        if notify is not None and inject is not None:
            # Generic paths (failures, background) call notify too, fed from the context;
            # one that asks for the context by returning NEEDS_CONTEXT gets update(context).
            update = _engine_context_caller(notify, inject, name, update if escalates else None)
        elif update is None:
            update = notify  # no introspectable signature: it takes the context
        if bg:
            is_async = False  # the worker awaits it
        return Registration(
            owner=self,
            observer=None if weak else observer,
            ref=ref,
            name=name,
            priority=prio,
            seq=next(_SEQ),
            states=frozenset(wanted) if wanted is not None else None,
            is_async=is_async,
            background=bg,
            guard=guard,
            update=update,
            call=None if bg else notify,
            inject=None if bg else inject,
            escalates=escalates,
            gate=None if bg else gate,
            enter=enter,
            exit=exit_,
            bind=None if bg else bind,
            bind_batch=bind_batch,
        )

    def remove_observer(self, observer: Any) -> bool:
        """Detach every registration of ``observer``; False if it was not attached."""
        with self._lock:
            keep = tuple(r for r in self._registrations if r.target() is not observer)
            removed = len(keep) != len(self._registrations)
            if removed:
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
        """The current observer registrations (observer, states, priority), in dispatch order."""
        return self._registrations

    def _drop_dead(self, ref: Any) -> None:
        with self._lock:
            self._registrations = tuple(r for r in self._registrations if r.ref is not ref)
            self._rebuild_locked()

    def _observer_failed(self, reg: Registration, exc: BaseException) -> None:
        reg.failures += 1
        reg.total_failures += 1
        if reg.failures == 1:
            # Logged once per streak of failures, with the traceback; the rest are counted.
            try:
                _log().error(
                    "observer %r raised %r; the observed call is unaffected",
                    reg.name,
                    exc,
                    exc_info=exc,
                )
            except Exception:  # a logging failure (or the recursion limit) must not escape
                pass
        limit = self.max_observer_failures
        if limit is not None and reg.failures >= limit and not reg.disabled:
            if not self._disable(reg):
                return  # another thread got there first
            message = (
                f"observer {reg.name!r} failed {reg.failures} times in a row and was disabled; "
                "call enable_observer() to re-enable it"
            )
            try:
                _log().warning(message)
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

    # --- the pipeline -------------------------------------------------------------------
    @property
    def time_source(self) -> Any:
        """The time source calls use now (a test override, if one is active, else our own)."""
        override = _OVERRIDE.time_source
        return override if override is not None else self._time_source

    @time_source.setter
    def time_source(self, value: Any) -> None:
        self._time_source = _check_time_source(value)
        self._rebuild()

    def _build(self) -> Pipeline:
        return Pipeline(
            self._registrations + _OVERRIDE.registrations(self),
            self.chain,
            self.time_source,
            self.variable_extractor,
            self.variable_names,
            check=_engine._Checking.on,
        )

    def _rebuild(self) -> None:
        with self._lock:
            self._rebuild_locked()

    def _rebuild_locked(self) -> None:
        pipeline = self._build()
        self._pipeline_now = pipeline
        for bound in list(self._bound):
            target = bound.ref()
            if target is None:
                continue
            if bound.copy is None:
                _cengine.rebind(pipeline, target, bound.func, bound.info)
            else:
                _cengine.instrument(pipeline, target, bound.copy, bound.info)

    @property
    def pipeline(self) -> Optional[Pipeline]:
        """The pipeline calls use now (None: nothing to do, calls pass straight through)."""
        p = self._pipeline_now
        return None if p.empty else p

    @property
    def functions(self) -> List[Any]:
        """The functions this decorator observes (wrappers, and functions instrumented in place)."""
        return [t for t in (b.ref() for b in list(self._bound)) if t is not None]

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        counts = f"observers={len(self._registrations)} handlers={len(self.chain.handlers)}"
        return f"<CallPyBack{label} {counts}>"


class _Override:
    """Process-wide seams for tests (``callpyback.testing``): a time source in force for every
    pipeline, and observers attached to every decorator (a call capture).  Changing either
    rebuilds every live decorator once; no call pays anything while they are unused."""

    def __init__(self) -> None:
        self.time_source: Any = None
        self.observers: Tuple[Tuple[Any, Dict[int, Registration]], ...] = ()
        self.lock = threading.Lock()

    def registrations(self, decorator: CallPyBack) -> Tuple[Registration, ...]:
        out = []
        for observer, per_decorator in self.observers:
            reg = per_decorator.get(id(decorator))
            if reg is None:
                reg = per_decorator[id(decorator)] = decorator._registration(
                    observer, None, None, False, None, None
                )
            out.append(reg)
        return tuple(out)

    def set_time_source(self, source: Any) -> Any:
        """Put ``source`` in force for every pipeline (None: each its own); returns the previous."""
        with self.lock:
            previous, self.time_source = self.time_source, source
        rebuild_all()
        return previous

    def add_observer(self, observer: Any) -> None:
        """Attach ``observer`` to every decorator, those built later included."""
        with self.lock:
            self.observers = (*self.observers, (observer, {}))
        rebuild_all()

    def remove_observer(self, observer: Any) -> bool:
        """Detach it from every decorator; False if it was not attached."""
        with self.lock:
            keep = tuple(entry for entry in self.observers if entry[0] is not observer)
            removed = len(keep) != len(self.observers)
            self.observers = keep
        if removed:
            rebuild_all()
        return removed

    @property
    def active(self) -> bool:
        return self.time_source is not None or bool(self.observers)


_OVERRIDE = _Override()


def rebuild_all() -> None:
    """Recompile every live decorator's functions (after a process-wide seam changed)."""
    while True:
        try:
            live = list(_LIVE)
            break
        except RuntimeError:  # another thread made a decorator while we listed them
            continue
    for decorator in live:
        decorator._rebuild()


def _copy_metadata(wrapper: Any, func: Any) -> None:
    if type(func) is types.FunctionType:
        # What functools.update_wrapper does, without its generic getattr loop: the import
        # hook decorates thousands of functions at import time.
        wrapper.__module__ = func.__module__
        wrapper.__name__ = func.__name__
        wrapper.__qualname__ = func.__qualname__
        wrapper.__doc__ = func.__doc__
        if func.__dict__:
            wrapper.__dict__.update(func.__dict__)
        wrapper.__wrapped__ = func
        wrapper.__annotations__ = func.__annotations__
        if sys.version_info >= (3, 12):
            wrapper.__type_params__ = func.__type_params__
        return
    try:
        functools.update_wrapper(wrapper, func)
    except (AttributeError, TypeError):  # e.g. an object whose __dict__ is not copyable
        wrapper.__wrapped__ = func
    if not hasattr(func, "__name__"):
        wrapper.__name__ = wrapper.__qualname__ = type(func).__name__


def _as_list(value: Any, what: str) -> List[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        raise ConfigurationError(f"{what} must be a list, got the string {value!r}")
    try:
        return list(value)
    except TypeError:
        if what == "error_handlers" and (callable(value) or hasattr(value, "handle")):
            return [value]  # one handler given where a list was expected
        raise ConfigurationError(
            f"{what} must be a list (or other iterable), got {value!r} ({type(value).__name__})"
        ) from None


def _engine_context_caller(notify: Any, inject: Any, name: str, escalate_to: Any) -> Any:
    from ._inject import context_caller

    return context_caller(notify, inject, name, escalate_to)


def _batch_size(observer: Any, name: str) -> int:
    size = getattr(observer, "bind_batch", 0)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ConfigurationError(
            f"observer {name!r}: bind_batch must be an int >= 0 (0: bindings do not batch), "
            f"got {size!r}"
        )
    return size


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
                f"variable_extractor {extractor!r} needs a begin(code, names, caller) method "
                "returning a capture with finish() (see callpyback.extractors)"
            )
        return extractor
    if not names:
        return None
    from .extractors import TracingVariableExtractor  # only functions that ask pay for it

    return TracingVariableExtractor()


#: Lowercase alias, for those who prefer decorators to read like functions.
callpyback = CallPyBack
