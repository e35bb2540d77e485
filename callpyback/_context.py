"""Per-function info and the per-call context handed to observers and error handlers.

The context is one slotted object per call.  Everything an observer may not need (bound
arguments, the result object, the timestamp, the metadata dict) is computed on first access, so
a call whose observers read little pays little.
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
]

_EMPTY: Mapping[str, Any] = types.MappingProxyType({})


class FunctionInfo:
    """What is known about a wrapped function, computed once per function rather than per call.

    Everything but the function and its kind is derived on first use: the import hook wraps
    thousands of functions and most are never asked about.
    """

    __slots__ = ("__weakref__", "_code", "_signature", "function", "kind")

    def __init__(self, function: Callable[..., Any], kind: str) -> None:
        self.function = function
        self.kind = kind  # "function", "coroutine", "generator" or "async_generator"
        self._signature: Optional[inspect.Signature] = None
        self._code: Any = _UNSET

    @property
    def name(self) -> str:
        return getattr(self.function, "__name__", None) or type(self.function).__name__

    @property
    def qualname(self) -> str:
        return getattr(self.function, "__qualname__", None) or self.name

    @property
    def module(self) -> Optional[str]:
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
        if self._signature is None:
            import inspect

            try:
                self._signature = inspect.signature(self.function)
            except (TypeError, ValueError):
                return None
        return self._signature

    @property
    def target(self) -> str:
        """``module:qualname``, the form patterns and messages use."""
        return f"{self.module}:{self.qualname}"

    def __repr__(self) -> str:
        return f"<FunctionInfo {self.target} ({self.kind})>"


_UNSET: Any = object()


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

    # Class-level defaults, overridden by RecoveredResult: the fast path sets just two slots.
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
        return type(self.exception)

    @property
    def traceback(self) -> Optional[types.TracebackType]:
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


class ExecutionContext:
    """Everything about one call, as observers see it.  Read-only from an observer's side.

    The wrapper writes the private slots directly (and skips ``__init__``: see :func:`new_context`);
    the public surface is properties, so an observer cannot change what another observer (or the
    caller) sees, except through the deliberately writable :attr:`metadata` scratch space.
    Fields few calls need live in a lazily allocated ``_rare`` record.
    """

    __slots__ = (
        "_attempt",
        "_exception",
        "_rare",
        "_start",
        "_state",
        "_time",
        "_value",
        "args",
        "function_info",
        "kwargs",
        "time_source",
    )

    def __init__(
        self,
        function_info: FunctionInfo,
        args: Tuple[Any, ...],
        kwargs: Dict[str, Any],
        time_source: Any,
    ) -> None:
        self.function_info = function_info
        self.args = args
        self.kwargs = kwargs
        self.time_source = time_source
        self._start: float = time_source.monotonic()
        self._state = ExecutionState.INITIALIZED
        self._attempt = 0
        self._time: Optional[float] = None
        self._value: Any = None
        self._exception: Optional[BaseException] = None
        self._rare: Optional[_Rare] = None

    def _more(self) -> _Rare:
        rare = self._rare
        if rare is None:
            rare = self._rare = _Rare()
        return rare

    # --- identity of the call -------------------------------------------------------------
    @property
    def function(self) -> Callable[..., Any]:
        return self.function_info.function

    @property
    def function_signature(self) -> Optional[inspect.Signature]:
        return self.function_info.signature

    @property
    def state(self) -> ExecutionState:
        return self._state

    @property
    def attempt(self) -> int:
        """1 for the first attempt, 2 for the first retry, and so on (0 before execution)."""
        return self._attempt

    @property
    def arguments(self) -> Mapping[str, Any]:
        """Parameter name to value, defaults applied; bound on first access only."""
        rare = self._more()
        if rare.arguments is None:
            rare.arguments = _bind(self.function_info, self.args, self.kwargs)
        return rare.arguments

    @property
    def timestamp(self) -> float:
        """Wall-clock start of the call, seconds since the epoch, from the time source."""
        rare = self._more()
        if rare.timestamp is None:
            # Derived on demand from the monotonic start rather than read on every call.
            ts = self.time_source
            rare.timestamp = ts.now() - (ts.monotonic() - self._start)
        return rare.timestamp

    @property
    def execution_time(self) -> Optional[float]:
        """Seconds from the start of the first attempt to the outcome (None until known)."""
        return self._time

    # --- outcome ----------------------------------------------------------------------------
    @property
    def result(self) -> Any:
        """An :class:`ExecutionResult`, an :class:`ExecutionFailure`, or None before the outcome.

        Built on access from the context's fields (cheap, and only for observers that ask).
        """
        if self._time is None:
            return None
        rare = self._rare
        exc = self._exception
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
        return "success" if self._exception is None else "failure"

    @property
    def value(self) -> Any:
        """The returned (or recovered) value; None while there is none."""
        return self._value

    @property
    def exception(self) -> Optional[BaseException]:
        """The exception of the latest failed attempt, if any (kept after a recovery)."""
        return self._exception

    @property
    def succeeded(self) -> bool:
        return self._time is not None and self._exception is None and not self.cancelled

    @property
    def recovered(self) -> bool:
        return self._rare is not None and self._rare.recovered_by is not None

    @property
    def recovered_by(self) -> Optional[str]:
        return None if self._rare is None else self._rare.recovered_by

    @property
    def cancelled(self) -> bool:
        return self._rare is not None and self._rare.cancelled

    @property
    def local_variables(self) -> Mapping[str, Any]:
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

    def note(self, key: str, value: Any) -> None:
        """For error handlers: record a fact about this call in :attr:`handler_state`."""
        rare = self._more()
        if rare.handler_state is None:
            rare.handler_state = {}
        rare.handler_state[key] = value

    def snapshot(self) -> ExecutionContext:
        """A frozen copy of this context as it is now (for observers that run later).

        Plain assignments rather than a loop over ``__slots__``: background dispatch calls this
        on the caller's thread for every notification.
        """
        copy = _new(ExecutionContext)
        copy.function_info = self.function_info
        copy.args = self.args
        copy.kwargs = self.kwargs
        copy.time_source = self.time_source
        copy._start = self._start
        copy._state = self._state
        copy._attempt = self._attempt
        copy._time = self._time
        copy._value = self._value
        copy._exception = self._exception
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
            ts = self.time_source
            rare.timestamp = ts.now() - (ts.monotonic() - self._start)
        return copy

    def __repr__(self) -> str:
        return (
            f"<ExecutionContext {self.function_info.target} state={self._state.name} "
            f"attempt={self._attempt} result={self.result!r}>"
        )


_new = object.__new__
_INITIALIZED = ExecutionState.INITIALIZED


def new_context(
    info: FunctionInfo,
    args: Tuple[Any, ...],
    kwargs: Dict[str, Any],
    time_source: Any,
    start: float,
) -> ExecutionContext:
    """The wrappers' constructor: skips ``__init__``'s call overhead (this is per call)."""
    c = _new(ExecutionContext)
    c.function_info = info
    c.args = args
    c.kwargs = kwargs
    c.time_source = time_source
    c._start = start
    c._state = _INITIALIZED
    c._attempt = 0
    c._time = None
    c._value = None
    c._exception = None
    c._rare = None
    return c


def _bind(info: FunctionInfo, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Mapping[str, Any]:
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
