"""Per-function info and the per-call context handed to observers and error handlers.

The context is one slotted object per call.  Everything an observer may not need (bound
arguments, the result object, the timestamp, the metadata dict) is computed on first access, so
a call whose observers read little pays little.
"""

from __future__ import annotations

import inspect
import types
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from .states import ExecutionState

__all__ = ["ExecutionContext", "ExecutionFailure", "ExecutionResult", "FunctionInfo"]

_EMPTY: Mapping[str, Any] = types.MappingProxyType({})


class FunctionInfo:
    """What is known about a wrapped function, computed once per function rather than per call."""

    __slots__ = ("__weakref__", "_signature", "code", "function", "kind", "module", "name", "qualname")

    def __init__(self, function: Callable[..., Any], kind: str) -> None:
        self.function = function
        self.kind = kind  # "function", "coroutine", "generator" or "async_generator"
        self.name: str = getattr(function, "__name__", type(function).__name__)
        self.qualname: str = getattr(function, "__qualname__", self.name)
        self.module: Optional[str] = getattr(function, "__module__", None)
        self.code: Optional[types.CodeType] = getattr(inspect.unwrap(function), "__code__", None)
        self._signature: Optional[inspect.Signature] = None

    @property
    def signature(self) -> Optional[inspect.Signature]:
        # Lazy: the import hook wraps thousands of functions and most are never asked.
        if self._signature is None:
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


class ExecutionResult:
    """A successful (or recovered) outcome: the value and the time the call took."""

    __slots__ = ("execution_time", "recovered", "recovered_by", "value")

    def __init__(
        self,
        value: Any,
        execution_time: float,
        recovered: bool = False,
        recovered_by: Optional[str] = None,
    ) -> None:
        self.value = value
        self.execution_time = execution_time
        self.recovered = recovered
        self.recovered_by = recovered_by

    @property
    def success(self) -> bool:
        return True

    def __repr__(self) -> str:
        extra = f", recovered_by={self.recovered_by!r}" if self.recovered else ""
        return f"ExecutionResult(value={self.value!r}, execution_time={self.execution_time!r}{extra})"


class ExecutionFailure:
    """A failed outcome: the exception (with its traceback) and the time the attempt took."""

    __slots__ = ("exception", "execution_time")

    def __init__(self, exception: BaseException, execution_time: float) -> None:
        self.exception = exception
        self.execution_time = execution_time

    @property
    def success(self) -> bool:
        return False

    @property
    def exception_type(self) -> type:
        return type(self.exception)

    @property
    def traceback(self) -> Optional[types.TracebackType]:
        return self.exception.__traceback__

    def __repr__(self) -> str:
        return f"ExecutionFailure(exception={self.exception!r}, execution_time={self.execution_time!r})"


class ExecutionContext:
    """Everything about one call, as observers see it.  Read-only from an observer's side.

    The wrapper writes the private slots directly; the public surface is properties, so an
    observer cannot change what another observer (or the caller) sees, except through the
    deliberately writable :attr:`metadata` scratch space.
    """

    __slots__ = (
        "_arguments",
        "_attempt",
        "_cancelled",
        "_exception",
        "_handler_state",
        "_locals",
        "_metadata",
        "_recovered_by",
        "_result",
        "_start",
        "_state",
        "_time",
        "_timestamp",
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
        self._result: Any = None
        self._recovered_by: Optional[str] = None
        self._cancelled = False
        self._arguments: Optional[Mapping[str, Any]] = None
        self._metadata: Optional[Dict[str, Any]] = None
        self._handler_state: Optional[Dict[str, Any]] = None
        self._locals: Optional[Mapping[str, Any]] = None
        self._timestamp: Optional[float] = None

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
        if self._arguments is None:
            self._arguments = _bind(self.function_info, self.args, self.kwargs)
        return self._arguments

    @property
    def timestamp(self) -> float:
        """Wall-clock start of the call, seconds since the epoch, from the time source."""
        if self._timestamp is None:
            # Derived on demand from the monotonic start rather than read on every call.
            ts = self.time_source
            self._timestamp = ts.now() - (ts.monotonic() - self._start)
        return self._timestamp

    @property
    def execution_time(self) -> Optional[float]:
        """Seconds from the start of the first attempt to the outcome (None until known)."""
        return self._time

    # --- outcome ----------------------------------------------------------------------------
    @property
    def result(self) -> Any:
        """An :class:`ExecutionResult`, an :class:`ExecutionFailure`, or None before the outcome."""
        result = self._result
        if result is None and self._time is not None:
            if self._exception is not None and self._recovered_by is None:
                result = ExecutionFailure(self._exception, self._time)
            elif self._state is not ExecutionState.ERROR and not self._cancelled:
                recovered = self._recovered_by is not None
                result = ExecutionResult(self._value, self._time, recovered, self._recovered_by)
            else:
                result = ExecutionFailure(self._exception, self._time)  # type: ignore[arg-type]
            self._result = result
        return result

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
        return self._time is not None and self._exception is None and not self._cancelled

    @property
    def recovered(self) -> bool:
        return self._recovered_by is not None

    @property
    def recovered_by(self) -> Optional[str]:
        return self._recovered_by

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def local_variables(self) -> Mapping[str, Any]:
        return self._locals if self._locals is not None else _EMPTY

    @property
    def metadata(self) -> Dict[str, Any]:
        """Per-call scratch space observers may write (e.g. a span opened before the call)."""
        md = self._metadata
        if md is None:
            md = self._metadata = {}
        return md

    @property
    def handler_state(self) -> Mapping[str, Any]:
        """What error handlers recorded about this call (attempts, delays, breaker state...)."""
        hs = self._handler_state
        return types.MappingProxyType(hs) if hs is not None else _EMPTY

    def note(self, key: str, value: Any) -> None:
        """For error handlers: record a fact about this call in :attr:`handler_state`."""
        hs = self._handler_state
        if hs is None:
            hs = self._handler_state = {}
        hs[key] = value

    def snapshot(self) -> ExecutionContext:
        """A frozen copy of this context as it is now (for observers that run later)."""
        copy = ExecutionContext.__new__(ExecutionContext)
        for slot in ExecutionContext.__slots__:
            object.__setattr__(copy, slot, getattr(self, slot))
        copy._result = self.result
        copy._timestamp = self.timestamp
        if self._metadata is not None:
            copy._metadata = dict(self._metadata)
        if self._handler_state is not None:
            copy._handler_state = dict(self._handler_state)
        return copy

    def __repr__(self) -> str:
        return (
            f"<ExecutionContext {self.function_info.target} state={self._state.name} "
            f"attempt={self._attempt} result={self.result!r}>"
        )


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
