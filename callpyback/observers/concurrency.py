"""``ConcurrencyObserver``: in-flight calls, maximum concurrency, and overlapping execution.

This detects *overlapping execution*: two calls of functions you said must not run at the same
time were in flight together.  It does not prove a data race (overlapping calls may be
correctly synchronised inside), and it cannot see a race that happens outside observed calls.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, Iterable, List, Mapping, Optional, Tuple

from ..errors import ConfigurationError
from ..states import ExecutionState
from ._base import BaseObserver, call_user_callback
from ._patterns import matches

__all__ = ["CallIdentity", "ConcurrencyObserver", "Overlap"]

_PRE = ExecutionState.PRE_EXECUTION


@dataclass(frozen=True)
class CallIdentity:
    """Who ran a call: function, thread and (under asyncio) task."""

    function: str  # module:qualname
    thread_id: int
    thread_name: str
    task: Optional[str]  # the asyncio task's name, None outside a task


@dataclass(frozen=True)
class Overlap:
    """A call that started while other calls of the same guarded group were running."""

    group: str  # the function's target for non_reentrant, or the single_writer group name
    call: CallIdentity  # the call that just started
    running: Tuple[CallIdentity, ...]  # the calls already in flight
    timestamp: float

    @property
    def same_thread(self) -> bool:
        """True for re-entrance on one thread (recursion, or asyncio tasks interleaving)."""
        return all(r.thread_id == self.call.thread_id for r in self.running)


class _Group:
    __slots__ = ("active", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.active: Dict[Any, CallIdentity] = {}  # context -> identity (contexts hash by id)


class _Function:
    __slots__ = ("calls", "groups", "in_flight", "max_in_flight", "target")

    def __init__(self, target: str, groups: Tuple[_Group, ...]) -> None:
        self.target = target
        self.groups = groups
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls = 0


def _identity(target: str) -> CallIdentity:
    thread = threading.current_thread()
    task = None
    aio = sys.modules.get("asyncio")  # never import asyncio for this
    if aio is not None:
        try:
            current = aio.current_task()
        except RuntimeError:  # no running loop in this thread
            current = None
        if current is not None:
            task = current.get_name()
    return CallIdentity(target, thread.ident or 0, thread.name, task)


class ConcurrencyObserver(BaseObserver):
    """Track in-flight calls per function and report overlaps of guarded functions.

    ``non_reentrant``: patterns of functions that must never have two calls in flight at once
    (not even on one thread).  ``single_writer``: group name -> patterns; no two calls of the
    functions in one group may be in flight together (e.g. every function writing one ledger).
    Each overlap is recorded (the last ``keep`` are kept), counted, passed to ``on_overlap`` if
    given, and otherwise logged as a warning on ``callpyback.concurrency``.
    """

    def __init__(
        self,
        *,
        non_reentrant: Iterable[str] = (),
        single_writer: Optional[Mapping[str, Iterable[str]]] = None,
        on_overlap: Optional[Callable[[Overlap], Any]] = None,
        keep: int = 100,
        priority: int = 0,
        name: Optional[str] = None,
        background: bool = False,
    ) -> None:
        super().__init__(priority=priority, name=name, background=background)
        if background:
            # Overlap detection needs to see each start while the call is really running.
            raise ConfigurationError(
                "ConcurrencyObserver cannot run in the background: it must see each call start "
                "and end as they happen"
            )
        self.non_reentrant = _patterns(non_reentrant, "non_reentrant")
        groups: List[Tuple[str, Tuple[str, ...]]] = []
        for group, pats in (single_writer or {}).items():
            if not isinstance(group, str) or not group:
                raise ConfigurationError(
                    f"ConcurrencyObserver single_writer group names must be strings, got {group!r}"
                )
            groups.append((group, _patterns(pats, f"single_writer[{group!r}]")))
        self.single_writer = tuple(groups)
        if on_overlap is not None and not callable(on_overlap):
            raise ConfigurationError(
                f"ConcurrencyObserver on_overlap must be callable, got {on_overlap!r}"
            )
        self.on_overlap = on_overlap
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ConfigurationError(
                f"ConcurrencyObserver keep must be a non-negative int, got {keep!r}"
            )
        self.overlaps: Deque[Overlap] = deque(maxlen=keep)
        self.overlap_count = 0
        self.callback_failures = 0
        # One lock for all bookkeeping: overlap detection has to see group membership atomically.
        self._lock = threading.Lock()
        self._functions: Dict[Any, _Function] = {}
        self._targets: Dict[str, _Function] = {}
        self._groups: Dict[str, _Group] = {}
        self.states = frozenset({_PRE, ExecutionState.COMPLETED, ExecutionState.ERROR})

    def _function_for(self, info: Any) -> _Function:
        # Called with self._lock held.
        fn = self._functions.get(info)
        if fn is None:
            target = info.target
            fn = self._targets.get(target)
            if fn is None:
                names = (
                    [f"non_reentrant:{target}"]
                    if any(matches(p, info) for p in self.non_reentrant)
                    else []
                )
                names += [
                    f"single_writer:{g}"
                    for g, pats in self.single_writer
                    if any(matches(p, info) for p in pats)
                ]
                groups = tuple(self._groups.setdefault(n, _Group(n)) for n in names)
                fn = self._targets[target] = _Function(target, groups)
            self._functions[info] = fn
        return fn

    def update(self, context: Any) -> None:
        """Track a call starting or ending, and record overlaps it takes part in."""
        info = context.function_info
        if context.state is _PRE:
            found: List[Overlap] = []
            ident = _identity(info.target) if self._needs_identity(info) else None
            with self._lock:
                fn = self._function_for(info)
                fn.calls += 1
                fn.in_flight += 1
                if fn.in_flight > fn.max_in_flight:
                    fn.max_in_flight = fn.in_flight
                for group in fn.groups:
                    assert ident is not None
                    if group.active:
                        found.append(
                            Overlap(
                                group.name.split(":", 1)[1],
                                ident,
                                tuple(group.active.values()),
                                context.timestamp,
                            )
                        )
                    group.active[context] = ident
                self.overlap_count += len(found)
            for overlap in found:
                self._report(overlap)
            return
        with self._lock:
            fn = self._function_for(info)
            if fn.in_flight > 0:
                fn.in_flight -= 1
            for group in fn.groups:
                group.active.pop(context, None)

    def _needs_identity(self, info: Any) -> bool:
        fn = self._functions.get(info)
        if fn is None:
            with self._lock:
                fn = self._function_for(info)
        return bool(fn.groups)

    def _report(self, overlap: Overlap) -> None:
        self.overlaps.append(overlap)
        if self.on_overlap is None:
            import logging

            others = ", ".join(
                f"{r.function} on {r.thread_name}" + (f"/{r.task}" if r.task else "")
                for r in overlap.running
            )
            logging.getLogger("callpyback.concurrency").warning(
                "overlapping execution in %r: %s started on %s%s while running: %s",
                overlap.group,
                overlap.call.function,
                overlap.call.thread_name,
                f"/{overlap.call.task}" if overlap.call.task else "",
                others,
            )
            return
        call_user_callback(
            self, self.on_overlap, overlap, "callpyback.concurrency", "on_overlap callback"
        )

    def get_report(self) -> Dict[str, Any]:
        """Per function: calls, in_flight and max_concurrency; plus the overlap count and list."""
        with self._lock:
            functions = {
                t: {"calls": f.calls, "in_flight": f.in_flight, "max_concurrency": f.max_in_flight}
                for t, f in sorted(self._targets.items())
            }
            return {
                "functions": functions,
                "overlap_count": self.overlap_count,
                "overlaps": list(self.overlaps),
            }

    def max_concurrency(self, function: str) -> int:
        """The most calls of ``function`` (``module:qualname``) seen in flight at once."""
        fn = self._targets.get(function)
        return fn.max_in_flight if fn is not None else 0


def _patterns(values: Any, what: str) -> Tuple[str, ...]:
    items = [values] if isinstance(values, str) else list(values)
    for v in items:
        if not isinstance(v, str) or not v:
            raise ConfigurationError(
                f"ConcurrencyObserver {what} must be function patterns (strings), got {v!r}"
            )
    return tuple(items)
