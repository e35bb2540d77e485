"""``capture()``: record every observed call in the process while a block runs.

The capture is an observer attached to every pipeline through the core's override seam
(``_decorator._OVERRIDE``): decorators made in code, those the import hook applied and those an
integration built (``deco.observe(func, target="http:...")``), including pipelines compiled
before the capture started, and those built while it runs.  Entering and leaving the block
recompiles every live decorator once; while no capture is active the seam costs a call nothing.
"""

from __future__ import annotations

import reprlib
import sys
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from .._decorator import _OVERRIDE
from ..states import ExecutionState

__all__ = ["CallRecord", "Capture", "capture"]

S = ExecutionState
_TERMINAL = frozenset({S.COMPLETED, S.ERROR})
_repr = reprlib.Repr()
_repr.maxstring = 40
_repr.maxother = 40
_repr.maxlist = _repr.maxtuple = _repr.maxdict = 5


class CallRecord:
    """One observed call, as the capture saw it.

    ``target`` is ``module:qualname`` (or an integration's target, ``http:GET /x``);
    ``arguments`` maps each parameter to its value (defaults applied); ``args``/``kwargs`` are
    what the function receives (CallPyBack passes named parameters positionally);
    ``outcome`` is ``"success"``, ``"failure"``, ``"recovered"``, ``"cancelled"``,
    ``"interrupted"``, or None while the call has not ended.  ``exceptions`` holds the
    exception of every failed attempt, in order; ``exception`` is the last one (kept after a
    recovery).  ``duration`` is seconds from the time source in force (a mock clock's seconds
    under ``mock_time()``).  ``states`` lists every state the observers were notified of.
    """

    __slots__ = (
        "_context",
        "args",
        "arguments",
        "attempts",
        "duration",
        "exception",
        "exceptions",
        "function_info",
        "index",
        "kwargs",
        "outcome",
        "pipeline",
        "recovered_by",
        "states",
        "target",
        "task",
        "thread",
        "value",
    )

    def __init__(self, context: Any, index: int) -> None:
        info = context.function_info
        self.index = index  # position in the capture, from 0
        self.function_info = info
        self.target: str = info.target
        self.pipeline: Optional[str] = info.pipeline
        self.args: Tuple[Any, ...] = tuple(context.args)
        self.kwargs: Dict[str, Any] = dict(context.kwargs)
        self.arguments: Dict[str, Any] = {}
        self.outcome: Optional[str] = None
        self.value: Any = None
        self.exception: Optional[BaseException] = None
        self.exceptions: List[BaseException] = []
        self.attempts = 0
        self.duration: Optional[float] = None
        self.recovered_by: Optional[str] = None
        self.states: List[ExecutionState] = []
        self.thread = threading.current_thread().name
        self.task = _task_name()
        self._context = context  # held while the call runs (see _Recorder), then dropped
        try:
            self.arguments = dict(context.arguments)
        except Exception:  # a signature we cannot bind: args and kwargs still tell
            self.arguments = {}

    @property
    def finished(self) -> bool:
        """Whether the call has ended (it has an outcome); False while it still runs."""
        return self.outcome is not None

    @property
    def cancelled(self) -> bool:
        """Whether the call was cancelled (a coroutine's CancelledError, a closed generator)."""
        return self.outcome == "cancelled"

    def _end(self, context: Any) -> None:
        self.outcome = context.outcome
        self.value = context.value
        self.exception = context.exception
        self.attempts = context.attempt
        self.duration = context.execution_time
        self.recovered_by = context.recovered_by
        self._context = None

    def call_text(self) -> str:
        """``target(name=value, ...)`` with short reprs."""
        if self.arguments:
            shown = ", ".join(f"{k}={_repr.repr(v)}" for k, v in self.arguments.items())
        else:
            parts = [_repr.repr(a) for a in self.args]
            parts += [f"{k}={_repr.repr(v)}" for k, v in self.kwargs.items()]
            shown = ", ".join(parts)
        return f"{self.target}({shown})"

    def describe(self) -> str:
        """One line: the call, its outcome, attempts, duration, pipeline and thread."""
        if self.outcome is None:
            result = "still running"
        elif self.outcome in ("success", "recovered"):
            result = f"{self.outcome} -> {_repr.repr(self.value)}"
            if self.recovered_by:
                result += f" (by {self.recovered_by})"
        else:
            result = self.outcome
            if self.exception is not None:
                result += f": {self.exception!r}"
        facts = [f"{self.attempts} attempt{'' if self.attempts == 1 else 's'}"]
        if self.duration is not None:
            facts.append(f"{self.duration:.6g}s")
        if self.pipeline:
            facts.append(f"pipeline {self.pipeline!r}")
        if self.thread != "MainThread":
            facts.append(f"thread {self.thread!r}")
        if self.task:
            facts.append(f"task {self.task!r}")
        return f"#{self.index + 1} {self.call_text()} {result} [{', '.join(facts)}]"

    def __repr__(self) -> str:
        return f"<CallRecord {self.describe()}>"


def _task_name() -> Optional[str]:
    asyncio = sys.modules.get("asyncio")  # never imported for this
    if asyncio is None:
        return None
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop in this thread
        return None
    return task.get_name() if task is not None else None


class _Recorder:
    """The observer the capture attaches everywhere.  It never runs user code."""

    # Attached to every decorator by the override seam, it must run on the caller's thread
    # even where the decorator sends its observers to the background worker
    # (enable_async_observers): that is what ``defers_own_writes`` tells the core.
    defers_own_writes = True
    priority = 1_000_000  # first in each state: it sees the call before anyone can fail it
    name = "callpyback.testing.capture"

    def __init__(self, owner: Capture) -> None:
        self._owner = owner

    def update(self, context: Any) -> None:
        self._owner._notified(context)


class Capture:
    """What :func:`capture` yields: the observed calls, in the order they started.

    It is a sequence of :class:`CallRecord` (``len``, indexing, iteration) with query helpers
    and assertions whose failure messages list what was captured.
    """

    def __init__(self) -> None:
        self._records: List[CallRecord] = []
        self._open: Dict[int, CallRecord] = {}  # id(context) -> record of a running call
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._observer = _Recorder(self)
        self.active = False
        self.started: Optional[float] = None

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> Capture:
        """Start recording (what ``with capture()`` does on entry); returns the capture."""
        if self.active:
            raise RuntimeError("this capture is already active")
        self.active = True
        self.started = time.time()
        _OVERRIDE.add_observer(self._observer)
        return self

    def stop(self) -> None:
        """Detach from every pipeline.  Calls still running are left unfinished."""
        if not self.active:
            return
        self.active = False
        _OVERRIDE.remove_observer(self._observer)
        with self._lock:
            for record in self._open.values():
                record._context = None
            self._open.clear()

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- recording (the observer's side) ------------------------------------------------------
    def _notified(self, context: Any) -> None:
        if not self.active:
            return
        state = context.state
        key = id(context)
        with self._lock:
            record = self._open.get(key)
            if record is None or record._context is not context:
                # PRE_EXECUTION, or a later state of a call that started before the capture.
                record = CallRecord(context, len(self._records))
                self._records.append(record)
                self._open[key] = record  # the record holds the context: its id stays unique
            record.states.append(state)
            if state is S.POST_FAILURE:
                exc = context.exception
                if exc is not None:
                    record.exceptions.append(exc)
                record.attempts = context.attempt
            elif state in _TERMINAL:
                record._end(context)
                del self._open[key]
                self._changed.notify_all()

    # --- reading ------------------------------------------------------------------------------
    @property
    def calls(self) -> List[CallRecord]:
        """Every call captured so far (a copy)."""
        with self._lock:
            return list(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[CallRecord]:
        return iter(self.calls)

    def __getitem__(self, index: int) -> CallRecord:
        return self.calls[index]

    def __bool__(self) -> bool:
        return True  # a capture is truthy even when nothing was called yet

    def clear(self) -> None:
        """Forget what was captured so far (running calls are still recorded when they end)."""
        with self._lock:
            self._records = [r for r in self._records if r.outcome is None]
            for i, record in enumerate(self._records):
                record.index = i

    def for_target(self, target: str) -> List[CallRecord]:
        """The calls of ``target`` (``module:qualname``; ``*``/``?`` globs allowed), in order."""
        from ._expect import target_matches

        return [r for r in self.calls if target_matches(target, r.target)]

    def targets(self) -> List[str]:
        """Each target called, once, in the order of its first call."""
        seen: Dict[str, None] = {}
        for record in self.calls:
            seen.setdefault(record.target, None)
        return list(seen)

    def outcomes(self, target: Optional[str] = None) -> Dict[str, List[Optional[str]]]:
        """``{target: [outcome of each call, in order]}`` (only ``target``'s calls if given)."""
        out: Dict[str, List[Optional[str]]] = {}
        records = self.calls if target is None else self.for_target(target)
        for record in records:
            out.setdefault(record.target, []).append(record.outcome)
        return out

    def describe(self, records: Optional[Sequence[CallRecord]] = None) -> str:
        """Every captured call, one per line (what failing assertions show)."""
        records = self.calls if records is None else records
        if not records:
            return "  (no observed call was captured)"
        return "\n".join(f"  {r.describe()}" for r in records)

    # --- assertions ---------------------------------------------------------------------------
    def assert_called(
        self, expected: Union[str, Any], *, times: Optional[int] = None, **filters: Any
    ) -> List[CallRecord]:
        """Assert that a call matching ``expected`` was captured; returns the matching calls.

        ``expected`` is a target (with the filters of :func:`called` as keywords:
        ``outcome="failure", attempts=3``...) or an expectation built with :func:`called` and
        ``>>`` (in this order), ``&`` (all, any order), ``|`` (either).  ``times=N`` asks for
        exactly N matching calls of a single target.
        """
        __tracebackhide__ = True
        from ._expect import check_called

        return check_called(self, expected, times, filters)

    def assert_not_called(self, expected: Union[str, Any], **filters: Any) -> None:
        """Assert that no captured call matches (a target with filters, or :func:`called`)."""
        __tracebackhide__ = True
        from ._expect import check_not_called

        check_not_called(self, expected, filters)

    def wait_for(
        self, expected: Union[str, Any], *, timeout: float = 5.0, **filters: Any
    ) -> List[CallRecord]:
        """Block until a call matching ``expected`` has *ended* (for calls made by threads the
        test started); raises the assertion's ``AssertionError`` after ``timeout`` seconds."""
        __tracebackhide__ = True
        from ._expect import as_expectation, failure_message

        expectation = as_expectation(expected, filters)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = expectation.find(self._records, finished=True)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
        raise AssertionError(failure_message(self, expectation, waited=timeout))

    async def await_for(
        self, expected: Union[str, Any], *, timeout: float = 5.0, **filters: Any
    ) -> List[CallRecord]:
        """:meth:`wait_for` for asyncio: yields to the loop instead of blocking it."""
        __tracebackhide__ = True
        import asyncio

        from ._expect import as_expectation, failure_message

        expectation = as_expectation(expected, filters)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with self._lock:
                found = expectation.find(self._records, finished=True)
            if found is not None:
                return found
            if loop.time() >= deadline:
                raise AssertionError(failure_message(self, expectation, waited=timeout))
            await asyncio.sleep(0.001)

    def __repr__(self) -> str:
        state = "active" if self.active else "stopped"
        return f"<Capture {state}, {len(self._records)} calls>"


def capture() -> Capture:
    """Record every observed call while the ``with`` block runs::

        with callpyback.testing.capture() as calls:
            charge(5)
        calls.assert_called("shop.payments:charge", outcome="success")

    Every pipeline records into it: decorators and the import hook alike, in every thread and
    asyncio task, including pipelines compiled before the block.  What the calls do is
    unchanged.  Captures may nest; each sees every call made while it is active.
    """
    return Capture()
