"""Per-function info and the per-call context handed to observers and error handlers.

The context is one slotted object per call, built by :func:`new_context` only (the engine's one
way to make one) and only when an observer or handler needs it.  Observers read it through the
public, read-only properties below; the underscored slots belong to the engine.  What few calls
need (bound arguments, the timestamp, the metadata dict) is computed on first access.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, Tuple

if TYPE_CHECKING:
    import inspect

from .states import ExecutionState

__all__ = [
    "ExecutionContext",
    "ExecutionFailure",
    "ExecutionResult",
    "FunctionInfo",
    "RecoveredResult",
    "new_context",
]

_EMPTY: Mapping[str, Any] = types.MappingProxyType({})
_UNSET: Any = object()


class FunctionInfo:
    """What is known about an observed function, computed once per function, never per call.

    ``target`` is how patterns, reports and metrics name it: ``module:qualname`` for a
    function, or a scheme of an integration's own (``http:GET /orders/{id}``).  Everything but
    the function, its kind and its target is derived on first use: the import hook wraps
    thousands of functions and most are never asked about.
    """

    __slots__ = (
        "__weakref__",
        "_code",
        "_params",
        "_signature",
        "_target",
        "function",
        "kind",
        "pipeline",
    )

    def __init__(
        self,
        function: Callable[..., Any],
        kind: str,
        *,
        target: Optional[str] = None,
        pipeline: Optional[str] = None,
    ) -> None:
        self.function = function
        #: "function", "coroutine", "generator" or "async_generator"
        self.kind = kind
        #: The name of the pipeline (decorator) observing it, if it has one.
        self.pipeline = pipeline
        self._target = target
        self._signature: Optional[inspect.Signature] = None
        self._code: Any = _UNSET
        self._params: Any = _UNSET

    @property
    def name(self) -> str:
        """The function's ``__name__``."""
        return getattr(self.function, "__name__", None) or type(self.function).__name__

    @property
    def qualname(self) -> str:
        """The function's ``__qualname__`` (``Class.method`` for methods)."""
        return getattr(self.function, "__qualname__", None) or self.name

    @property
    def module(self) -> Optional[str]:
        """The function's module name."""
        return getattr(self.function, "__module__", None)

    @property
    def code(self) -> Optional[types.CodeType]:
        """The code object that actually runs (through ``__wrapped__`` chains and methods)."""
        code = self._code
        if code is _UNSET:
            code = self._code = _code_of(self.function)
        return code  # type: ignore[no-any-return]

    @property
    def signature(self) -> Optional[inspect.Signature]:
        """The function's signature, computed on first access (None if it has none)."""
        if self._signature is None:
            import inspect

            try:
                self._signature = inspect.signature(self.function)
            except (TypeError, ValueError):
                return None
        return self._signature

    @property
    def target(self) -> str:
        """``module:qualname`` (or the integration's own target), as patterns and reports use."""
        target = self._target
        if target is None:
            target = self._target = f"{self.module}:{self.qualname}"
        return target

    @property
    def file_path(self) -> Optional[str]:
        """The file the function's code comes from, if known."""
        code = self.code
        return code.co_filename if code is not None else None

    @property
    def line_number(self) -> Optional[int]:
        """The first line of the function's code, if known."""
        code = self.code
        return code.co_firstlineno if code is not None else None

    def __repr__(self) -> str:
        return f"<FunctionInfo {self.target} ({self.kind})>"


def _code_of(function: Any) -> Optional[types.CodeType]:
    seen = 0
    while hasattr(function, "__wrapped__") and seen < 100:  # as inspect.unwrap, without inspect
        function = function.__wrapped__
        seen += 1
    function = getattr(function, "__func__", function)
    code = getattr(function, "__code__", None)
    return code if isinstance(code, types.CodeType) else None


class ExecutionResult:
    """A successful (or recovered) outcome: the value and the time the call took."""

    __slots__ = ("execution_time", "value")
    value: Any
    execution_time: float

    # Class-level defaults, overridden by RecoveredResult: the engine sets just two slots.
    recovered: bool = False
    recovered_by: Optional[str] = None
    success = True

    def __new__(
        cls,
        value: Any,
        execution_time: float,
        recovered: bool = False,
        recovered_by: Optional[str] = None,
    ) -> ExecutionResult:
        if recovered or recovered_by is not None:
            obj: ExecutionResult = object.__new__(RecoveredResult)
            obj.recovered_by = recovered_by  # type: ignore[misc]
        else:
            obj = object.__new__(cls)
        obj.value = value
        obj.execution_time = execution_time
        return obj

    def __repr__(self) -> str:
        extra = f", recovered_by={self.recovered_by!r}" if self.recovered else ""
        return (
            f"ExecutionResult(value={self.value!r}, execution_time={self.execution_time!r}{extra})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExecutionResult):
            return NotImplemented
        return (self.value, self.execution_time, self.recovered_by) == (
            other.value,
            other.execution_time,
            other.recovered_by,
        )

    __hash__ = None  # type: ignore[assignment]


class RecoveredResult(ExecutionResult):
    """A value an error handler returned in place of an exception."""

    __slots__ = ("recovered_by",)
    recovered = True


class ExecutionFailure:
    """A failed outcome: the exception (with its traceback) and the time the attempt took."""

    __slots__ = ("exception", "execution_time")

    def __init__(self, exception: BaseException, execution_time: float) -> None:
        self.exception = exception
        self.execution_time = execution_time

    success = False

    @property
    def exception_type(self) -> type:
        """The type of the exception."""
        return type(self.exception)

    @property
    def traceback(self) -> Optional[types.TracebackType]:
        """The exception's traceback."""
        return self.exception.__traceback__

    def __repr__(self) -> str:
        return (
            f"ExecutionFailure(exception={self.exception!r}, "
            f"execution_time={self.execution_time!r})"
        )


class _Rare:
    """Per-call fields most calls never touch, allocated on first use."""

    __slots__ = (
        "arguments",
        "cancelled",
        "handler_state",
        "locals",
        "metadata",
        "path",
        "raise_",
        "recovered_by",
        "timestamp",
    )

    def __init__(self) -> None:
        self.arguments: Optional[Mapping[str, Any]] = None
        self.metadata: Optional[Dict[str, Any]] = None
        self.handler_state: Optional[Dict[str, Any]] = None
        self.locals: Optional[Mapping[str, Any]] = None
        self.timestamp: Optional[float] = None
        self.recovered_by: Optional[str] = None
        self.cancelled = False
        self.path: Optional[list[ExecutionState]] = None  # the states taken (checking mode)
        self.raise_: Optional[BaseException] = None  # what the wrapper raises instead


def _reader(slot: str, doc: str) -> Any:
    """A read-only attribute backed by a slot, read in C (no Python frame: cheaper, and usable
    at the recursion limit)."""
    from operator import attrgetter

    return property(attrgetter(slot), doc=doc)


class ExecutionContext:
    """Everything about one call, as observers and handlers see it.  Read-only to them.

    Every public attribute is a read-only property: an observer cannot change what the
    function is called with, nor what another observer (or the caller) sees, except through
    :attr:`metadata`, the deliberately writable scratch space, and :meth:`note`, which error
    handlers use.
    """

    __slots__ = (
        "_args",
        "_attempt",
        "_exc",
        "_info",
        "_kwargs",
        "_rare",
        "_start",
        "_state",
        "_time",
        "_ts",
        "_value",
    )
    if TYPE_CHECKING:  # the slots, for the type checker
        _info: FunctionInfo
        _args: Tuple[Any, ...]
        _kwargs: Dict[str, Any]
        _ts: Any
        _start: float
        _state: ExecutionState
        _attempt: int
        _time: Optional[float]
        _value: Any
        _exc: Optional[BaseException]
        _rare: Optional[_Rare]

    def __init__(
        self,
        function_info: FunctionInfo,
        args: Tuple[Any, ...] = (),
        kwargs: Optional[Dict[str, Any]] = None,
        time_source: Any = None,
    ) -> None:
        if time_source is None:
            from .time_sources import SystemTimeSource

            time_source = SystemTimeSource()
        _fill(self, function_info, args, kwargs or {}, time_source, time_source.monotonic())

    # --- identity of the call -------------------------------------------------------------
    function_info: FunctionInfo = _reader(
        "_info", "The observed function (or integration target), described once."
    )

    @property
    def function(self) -> Callable[..., Any]:
        """The wrapped function."""
        return self._info.function

    @property
    def function_signature(self) -> Optional[inspect.Signature]:
        """The wrapped function's signature (None when it has none)."""
        return self._info.signature

    @property
    def target(self) -> str:
        """The call's ``module:qualname`` (or integration target)."""
        return self._info.target

    time_source: Any = _reader("_ts", "The time source this call is timed with.")

    args: Tuple[Any, ...] = _reader(
        "_args", "The positional arguments the function is called with (defaults applied)."
    )

    @property
    def kwargs(self) -> Mapping[str, Any]:
        """The keyword arguments the function is called with, as a read-only mapping."""
        return types.MappingProxyType(self._kwargs)

    state: ExecutionState = _reader("_state", "Where the call is in the state machine now.")

    attempt: int = _reader(
        "_attempt",
        "1 for the first attempt, 2 for the first retry, and so on (0 before execution).",
    )

    @property
    def arguments(self) -> Mapping[str, Any]:
        """Parameter name to value, defaults applied, read-only; bound on first access only."""
        rare = self._more()
        if rare.arguments is None:
            rare.arguments = _bind(self._info, self._args, self._kwargs)
        return rare.arguments

    @property
    def timestamp(self) -> float:
        """Wall-clock start of the call, seconds since the epoch, from the time source."""
        rare = self._more()
        if rare.timestamp is None:
            # Derived on demand from the monotonic start rather than read on every call.
            ts = self._ts
            rare.timestamp = ts.now() - max(0.0, ts.monotonic() - self._start)
        return rare.timestamp

    execution_time: Optional[float] = _reader(
        "_time", "Seconds from the start of the first attempt to the outcome (None until known)."
    )

    # --- outcome ----------------------------------------------------------------------------
    @property
    def result(self) -> Any:
        """An :class:`ExecutionResult`, an :class:`ExecutionFailure`, or None before the outcome."""
        if self._time is None:
            return None
        rare = self._rare
        exc = self._exc
        if rare is not None:
            if rare.recovered_by is not None:
                return ExecutionResult(self._value, self._time, True, rare.recovered_by)
            if rare.cancelled:
                return ExecutionFailure(exc, self._time)  # type: ignore[arg-type]
        if exc is None:
            return ExecutionResult(self._value, self._time)
        return ExecutionFailure(exc, self._time)

    @property
    def outcome(self) -> Optional[str]:
        """``"success"``, ``"failure"``, ``"recovered"``, ``"cancelled"`` or ``"interrupted"``.

        None before the first attempt has an outcome.  At POST_FAILURE it is the failed
        attempt's ("failure"), whatever the handlers then decide.
        """
        if self._time is None:
            return None
        if self._state is ExecutionState.ERROR:
            return "interrupted"
        rare = self._rare
        if rare is not None:
            if rare.cancelled:
                return "cancelled"
            if rare.recovered_by is not None:
                return "recovered"
        return "success" if self._exc is None else "failure"

    value: Any = _reader("_value", "The returned (or recovered) value; None while there is none.")

    exception: Optional[BaseException] = _reader(
        "_exc", "The exception of the latest failed attempt, if any (kept after a recovery)."
    )

    @property
    def succeeded(self) -> bool:
        """True once the call ended with a value (returned, or recovered)."""
        return self._time is not None and self._exc is None and not self.cancelled

    @property
    def recovered(self) -> bool:
        """True when an error handler (or ``default_return``) recovered the failure."""
        return self._rare is not None and self._rare.recovered_by is not None

    @property
    def recovered_by(self) -> Optional[str]:
        """The name of the handler that recovered the failure, or None."""
        return None if self._rare is None else self._rare.recovered_by

    @property
    def cancelled(self) -> bool:
        """True when the call was cancelled (a generator closed early, ``CancelledError``)."""
        return self._rare is not None and self._rare.cancelled

    @property
    def local_variables(self) -> Mapping[str, Any]:
        """The locals captured by the variable extractor (empty when none are)."""
        rare = self._rare
        return rare.locals if rare is not None and rare.locals is not None else _EMPTY

    @property
    def metadata(self) -> Dict[str, Any]:
        """Per-call scratch space observers may write (e.g. a span opened before the call)."""
        rare = self._more()
        if rare.metadata is None:
            rare.metadata = {}
        return rare.metadata

    @property
    def handler_state(self) -> Mapping[str, Any]:
        """What error handlers recorded about this call (attempts, delays, breaker state...)."""
        rare = self._rare
        if rare is None or rare.handler_state is None:
            return _EMPTY
        return types.MappingProxyType(rare.handler_state)

    @property
    def path(self) -> Tuple[ExecutionState, ...]:
        """The states this call went through, internal ones included (checking mode only)."""
        rare = self._rare
        return tuple(rare.path) if rare is not None and rare.path is not None else ()

    def note(self, key: str, value: Any) -> None:
        """For error handlers: record a fact about this call in :attr:`handler_state`."""
        rare = self._more()
        if rare.handler_state is None:
            rare.handler_state = {}
        rare.handler_state[key] = value

    def _more(self) -> _Rare:
        rare = self._rare
        if rare is None:
            rare = self._rare = _Rare()
        return rare

    def snapshot(self) -> ExecutionContext:
        """A frozen copy of this context as it is now (for observers that run later)."""
        copy = new_context(self._info, self._args, dict(self._kwargs), self._ts, self._start)
        copy._state = self._state
        copy._attempt = self._attempt
        copy._time = self._time
        copy._value = self._value
        copy._exc = self._exc
        rare = copy._rare = _Rare()
        old = self._rare
        if old is not None:
            rare.arguments = old.arguments
            rare.locals = old.locals
            rare.recovered_by = old.recovered_by
            rare.cancelled = old.cancelled
            rare.timestamp = old.timestamp
            if old.metadata is not None:
                rare.metadata = dict(old.metadata)
            if old.handler_state is not None:
                rare.handler_state = dict(old.handler_state)
        if rare.timestamp is None:
            rare.timestamp = self.timestamp
        return copy

    def __repr__(self) -> str:
        return (
            f"<ExecutionContext {self._info.target} state={self._state.name} "
            f"attempt={self._attempt} result={self.result!r}>"
        )


_new = object.__new__
_INITIALIZED = ExecutionState.INITIALIZED


def _fill(
    c: ExecutionContext,
    info: FunctionInfo,
    args: Tuple[Any, ...],
    kwargs: Dict[str, Any],
    time_source: Any,
    start: float,
) -> None:
    c._info = info
    c._args = args
    c._kwargs = kwargs
    c._ts = time_source
    c._start = start
    c._state = _INITIALIZED
    c._attempt = 0
    c._time = None
    c._value = None
    c._exc = None
    c._rare = None


def new_context(
    info: FunctionInfo,
    args: Tuple[Any, ...],
    kwargs: Dict[str, Any],
    time_source: Any,
    start: float,
) -> ExecutionContext:
    """The one way the engine builds a context (``__init__`` is for users and tests).

    ``kwargs`` must be a dict the function is *not* called with: observers get a read-only
    view of it, and it must not alias what the call uses.
    """
    c = _new(ExecutionContext)
    _fill(c, info, args, kwargs, time_source, start)
    return c


def _bind(info: FunctionInfo, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Mapping[str, Any]:
    params = info._params
    if params is _UNSET:
        params = info._params = _simple_params(info.function)
    # The common shape (no *args/**kwargs, no keyword-only parameters): the engine passes
    # every positional parameter, defaults applied, so zip is the whole binding.
    if params is not None and len(args) == len(params) and not kwargs:
        return types.MappingProxyType(dict(zip(params, args)))
    sig = info.signature
    if sig is None:
        return types.MappingProxyType({"args": args, "kwargs": dict(kwargs)})
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError:
        # The call itself fails the same way; show what can be bound rather than raising here.
        try:
            bound = sig.bind_partial(*args, **kwargs)
        except TypeError:
            return types.MappingProxyType({"args": args, "kwargs": dict(kwargs)})
    bound.apply_defaults()
    return types.MappingProxyType(dict(bound.arguments))


def _simple_params(function: Any) -> Optional[Tuple[str, ...]]:
    """Positional parameter names of a plain function with nothing but positional parameters."""
    code = getattr(function, "__code__", None)
    if not isinstance(code, types.CodeType) or type(function) is not types.FunctionType:
        return None
    if code.co_flags & 0x0C or code.co_kwonlyargcount:  # CO_VARARGS | CO_VARKEYWORDS
        return None
    return tuple(code.co_varnames[: code.co_argcount])
