"""Variable extractors: capture named local variables of *this* call of *this* function.

How :class:`TracingVariableExtractor` finds the right frame
-----------------------------------------------------------
The wrapper calls ``begin(code, names)`` from the frame that is about to call the target, so
that frame (the *caller*) is known.  A hook then watches for the first frame that runs ``code``
and has the caller among its nearest ancestors: that is the target frame of this call, never a
nested helper (different code) nor a recursive inner call (its parent is the target frame, which
is already claimed).  The hook is removed as soon as the frame is found, so the function body
runs at full speed; the frame object is kept, and its locals are read in ``finish()`` after the
call has returned or raised (CPython keeps a finished frame's locals while it is referenced).

The hook, by Python version:

* 3.12+: ``sys.monitoring`` ``PY_START`` events enabled for the target code object only; no
  profile or trace function is touched, so cProfile, debuggers and coverage are unaffected.
* 3.9-3.11: a per-thread ``sys.setprofile`` function installed for the instant between
  ``begin`` and the target's first line.  It calls any profile function already installed
  (so that profiler still sees every event) and restores it afterwards.  A profiler that cannot
  be called from Python (cProfile's C profiler) is left in place untouched, and the trace slot
  (``sys.settrace``, chained the same way) is used for that instant instead.

All bookkeeping is per thread and per call, so concurrent calls from threads or asyncio tasks
never see each other's variables.
"""

from __future__ import annotations

import sys
import threading
import types
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

__all__ = ["NoOpVariableExtractor", "NullVariable", "TracingVariableExtractor"]

#: How many frames up from the target frame the caller may be: a handler's ``call_sync`` or a
#: timeout wrapper sits between the wrapper and the function.
_MAX_DEPTH = 8


class NullVariable:
    """Stands for a requested variable that the call did not have (never assigned, or deleted).

    Falsy, and says which name was missing: ``NullVariable('total')``.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __bool__(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NullVariable) and other.name == self.name

    def __hash__(self) -> int:
        return hash((NullVariable, self.name))

    def __repr__(self) -> str:
        return f"NullVariable({self.name!r})"


def _nulls(names: Sequence[str]) -> Mapping[str, Any]:
    return types.MappingProxyType({n: NullVariable(n) for n in names})


class _NoCapture:
    __slots__ = ("names",)

    def __init__(self, names: Sequence[str]) -> None:
        self.names = names

    def finish(self) -> Mapping[str, Any]:
        return _nulls(self.names)


class NoOpVariableExtractor:
    """Captures nothing: every requested name gives a :class:`NullVariable`.  Costs nothing."""

    backend = "none"

    def begin(self, code: Any, names: Sequence[str]) -> _NoCapture:
        """A capture that records nothing."""
        return _NoCapture(names)

    def __repr__(self) -> str:
        return "NoOpVariableExtractor()"


class _Capture:
    """One call's capture: armed by ``begin``, reads the target frame's locals in ``finish``."""

    __slots__ = ("caller", "code", "frame", "names", "slot")

    def __init__(self, code: Any, names: Sequence[str], caller: Any, slot: Any) -> None:
        self.code = code
        self.names = names
        self.caller = caller
        self.frame: Any = None
        self.slot = slot  # the per-thread _Slot it waits in, None once claimed or finished

    def finish(self) -> Mapping[str, Any]:
        frame = self.frame
        slot = self.slot
        if slot is not None:  # the target never started (e.g. a before_attempt hook raised)
            slot.abandon(self)
        self.frame = self.caller = None  # drop the frame: it holds every local of the call
        if frame is None:
            return _nulls(self.names)
        local = frame.f_locals
        return types.MappingProxyType(
            {n: local[n] if n in local else NullVariable(n) for n in self.names}
        )


def _claim(pending: List[_Capture], frame: Any) -> Optional[_Capture]:
    """The pending capture ``frame`` belongs to: the one whose caller is its nearest ancestor."""
    code = frame.f_code
    back = frame.f_back
    depth = 0
    while back is not None and depth < _MAX_DEPTH:
        for cap in pending:
            if cap.caller is back and cap.code is code:
                return cap
        back = back.f_back
        depth += 1
    return None


# --- 3.9-3.11: a short-lived per-thread profile (or trace) function -------------------------


class _Slot:
    """Per-thread hook state for the setprofile/settrace path."""

    __slots__ = ("hook", "pending", "prev", "setter")

    def __init__(self) -> None:
        self.pending: List[_Capture] = []
        self.hook: Any = None
        self.prev: Any = None
        self.setter: Callable[[Any], None] = sys.setprofile

    def arm(self, cap: _Capture) -> bool:
        pending = self.pending
        if pending:
            pending.append(cap)
            return True
        prev: Any = sys.getprofile()  # typeshed says callable; cProfile's object is not
        if prev is None or callable(prev):
            self.setter = sys.setprofile
            hook = self._make_profile_hook(prev)
        else:
            # cProfile's C profiler cannot be called from Python: leave it in place and use the
            # trace slot for the instant it takes to reach the target frame.
            prev = sys.gettrace()
            if prev is not None and not callable(prev):  # pragma: no cover - no such tracer known
                return False
            self.setter = sys.settrace
            hook = self._make_trace_hook(prev)
        pending.append(cap)
        self.prev = prev
        self.hook = hook
        self.setter(hook)
        return True

    def _found(self, cap: _Capture, frame: Any) -> None:
        cap.frame = frame
        cap.slot = None
        pending = self.pending
        pending.remove(cap)
        if not pending:
            self._uninstall()

    def _uninstall(self) -> None:
        hook, self.hook = self.hook, None
        getter = sys.getprofile if self.setter is sys.setprofile else sys.gettrace
        # Someone installed another hook on top of ours meanwhile: theirs stays.
        if hook is not None and getter() is hook:
            self.setter(self.prev)
        self.prev = None

    def abandon(self, cap: _Capture) -> None:
        cap.slot = None
        pending = self.pending
        if cap in pending:
            pending.remove(cap)
            if not pending:
                self._uninstall()

    def _claimer(self) -> Callable[[Any], None]:
        """``on_call(frame)``: hand ``frame`` to the capture waiting for it, if one is."""
        pending = self.pending
        found = self._found

        def on_call(frame: Any) -> None:
            try:
                cap = _claim(pending, frame)
                if cap is not None:
                    found(cap, frame)
            except Exception:  # pragma: no cover - a hook must never break the program
                pass

        return on_call

    def _make_profile_hook(self, prev: Any) -> Callable[[Any, str, Any], None]:
        on_call = self._claimer()

        def profile_hook(frame: Any, event: str, arg: Any) -> None:
            if prev is not None:
                prev(frame, event, arg)  # the existing profiler sees every event, as before
            if event == "call":
                on_call(frame)

        return profile_hook

    def _make_trace_hook(self, prev: Any) -> Callable[[Any, str, Any], Any]:
        on_call = self._claimer()

        def trace_hook(frame: Any, event: str, arg: Any) -> Any:
            # A global trace function only receives "call"; what it returns traces the frame.
            local = prev(frame, event, arg) if prev is not None else None
            on_call(frame)
            return local

        return trace_hook


class _Local(threading.local):
    slot: Optional[_Slot] = None


# One slot per thread for the whole process: two extractors with separate hooks could restore
# each other's stale hook.
_LOCAL = _Local()


# --- 3.12+: sys.monitoring scoped to the target code objects ---------------------------------


class _Monitor:
    """One ``sys.monitoring`` tool shared by every extractor of the process."""

    _instance: Optional[_Monitor] = None
    _lock = threading.Lock()

    def __init__(self, tool: int) -> None:
        self.tool = tool
        self.codes: set[Any] = set()
        self.local = threading.local()
        mon = sys.monitoring  # type: ignore[attr-defined]
        mon.register_callback(tool, mon.events.PY_START, self._on_start)

    @classmethod
    def get(cls) -> Optional[_Monitor]:
        if cls._instance is not None:
            return cls._instance
        mon = getattr(sys, "monitoring", None)
        if mon is None:
            return None
        with cls._lock:
            if cls._instance is None:
                # 0-2 belong to debuggers, coverage and profilers, 5 to optimizers.
                for tool in (4, 3):
                    if mon.get_tool(tool) is None:
                        mon.use_tool_id(tool, "callpyback")
                        cls._instance = cls(tool)
                        break
        return cls._instance

    def watch(self, code: Any) -> None:
        if code not in self.codes:
            mon = sys.monitoring  # type: ignore[attr-defined]
            with self._lock:
                events = mon.get_local_events(self.tool, code)
                mon.set_local_events(self.tool, code, events | mon.events.PY_START)
                self.codes.add(code)

    def pending(self) -> List[_Capture]:
        pending: Optional[List[_Capture]] = getattr(self.local, "pending", None)
        if pending is None:
            pending = self.local.pending = []
        return pending

    def _on_start(self, code: Any, offset: int) -> Any:
        # Fires on every start of a watched function (in any thread); only frames some call on
        # this thread is waiting for are claimed.
        pending = getattr(self.local, "pending", None)
        if pending:
            frame = sys._getframe(1)
            cap = _claim(pending, frame)
            if cap is not None:
                cap.frame = frame
                cap.slot = None
                pending.remove(cap)
        return None

    def abandon(self, cap: _Capture) -> None:
        cap.slot = None
        pending = self.pending()
        if cap in pending:
            pending.remove(cap)


class TracingVariableExtractor:
    """Captures the requested locals of each call, on success and on failure.

    ``backend``: ``"auto"`` (``sys.monitoring`` on 3.12+, otherwise the profile hook),
    ``"monitoring"`` or ``"profile"``.  The module docstring explains both.
    """

    def __init__(self, backend: str = "auto") -> None:
        if backend not in ("auto", "monitoring", "profile"):
            from .errors import ConfigurationError

            raise ConfigurationError(
                f"TracingVariableExtractor backend must be 'auto', 'monitoring' or 'profile', "
                f"got {backend!r}"
            )
        self._monitor: Optional[_Monitor] = None
        if backend in ("auto", "monitoring"):
            self._monitor = _Monitor.get()
            if self._monitor is None and backend == "monitoring":
                from .errors import ConfigurationError

                raise ConfigurationError(
                    "backend='monitoring' needs sys.monitoring (Python 3.12+) and a free tool id; "
                    f"this is Python {sys.version.split()[0]}: use backend='auto' or 'profile'"
                )
        self.backend = "monitoring" if self._monitor is not None else "profile"

    def begin(self, code: Any, names: Sequence[str]) -> Any:
        """Arm a capture for the call the caller frame is about to make; see the module docs."""
        if code is None:  # a builtin or callable object without Python code: nothing to read
            return _NoCapture(names)
        caller = sys._getframe(1)
        monitor = self._monitor
        if monitor is not None:
            monitor.watch(code)
            cap = _Capture(code, names, caller, monitor)
            monitor.pending().append(cap)
            return cap
        slot = _LOCAL.slot
        if slot is None:
            slot = _LOCAL.slot = _Slot()
        cap = _Capture(code, names, caller, slot)
        if not slot.arm(cap):
            cap.slot = None
            _warn_once("no usable profile or trace slot; local variables are not captured")
        return cap

    def __repr__(self) -> str:
        return f"TracingVariableExtractor(backend={self.backend!r})"


_warned: Dict[str, bool] = {}


def _warn_once(message: str) -> None:
    if not _warned.get(message):
        _warned[message] = True
        import logging

        logging.getLogger("callpyback.extractors").warning(message)
