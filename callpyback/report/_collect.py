"""What the run report and the Prometheus collector read: every metrics and timing observer in
the process, and one row of numbers per observed target.

Observers are found through the decorators that exist: those the import hook applied
(:func:`callpyback.autoinstrument.decorators`) and those created in code (the live set of
``CallPyBack`` instances), so integrations' targets (``http:GET /x``) appear like functions.
Nothing here runs on the call path: it reads the observers' own state when asked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from .._histogram import Histogram

__all__ = [
    "FunctionReport",
    "RunReport",
    "collect",
    "decorators",
    "metrics_observers",
    "observers",
    "timing_observers",
]

#: The quantiles every report shows, whatever the observers were configured with: they are
#: computed from the observer's own histogram, so they never drift from its numbers.
QUANTILES = (0.5, 0.9, 0.99)


def decorators() -> List[Any]:
    """Every live ``CallPyBack``: those the import hook applied first, then those made in code."""
    from .. import _decorator, autoinstrument

    seen: Dict[int, Any] = {}
    for decorator in autoinstrument.decorators():
        seen.setdefault(id(decorator), decorator)
    for decorator in list(_decorator._LIVE):
        seen.setdefault(id(decorator), decorator)
    return list(seen.values())


def _is_metrics(observer: Any) -> bool:
    from ..observers.metrics import MetricsObserver

    return isinstance(observer, MetricsObserver)


def _is_timing(observer: Any) -> bool:
    from ..observers.timing import TimingObserver

    return isinstance(observer, TimingObserver)


def observers() -> List[Any]:
    """Every metrics and timing observer attached to a live decorator (each once)."""
    found: Dict[int, Any] = {}
    for decorator in decorators():
        for observer in decorator.observers:
            if _is_metrics(observer) or _is_timing(observer):
                found.setdefault(id(observer), observer)
    return list(found.values())


def metrics_observers() -> List[Any]:
    """Every ``MetricsObserver`` (subclasses included) attached to a live decorator."""
    return [o for o in observers() if _is_metrics(o)]


def timing_observers() -> List[Any]:
    """Every ``TimingObserver`` (subclasses included) attached to a live decorator."""
    return [o for o in observers() if _is_timing(o)]


def _function_infos(decorator: Any) -> Iterable[Any]:
    # The one read of a decorator's private list of what it observes (see the module
    # docstring of _decorator): the FunctionInfo carries the target and the pipeline name.
    for bound in list(getattr(decorator, "_bound", ())):
        ref = getattr(bound, "ref", None)
        if ref is not None and ref() is not None:
            yield bound.info


def pipelines_by_target(decorators_: Sequence[Any]) -> Tuple[Dict[str, str], int]:
    """``target -> pipeline name(s)`` and how many distinct functions the decorators observe."""
    names: Dict[str, List[str]] = {}
    functions = 0
    seen: Set[int] = set()
    for decorator in decorators_:
        for info in _function_infos(decorator):
            if id(info) in seen:
                continue
            seen.add(id(info))
            functions += 1
            pipeline = info.pipeline or decorator.name
            entry = names.setdefault(info.target, [])
            if pipeline and pipeline not in entry:
                entry.append(pipeline)
    return {t: ", ".join(p) for t, p in names.items() if p}, functions


def timing_histogram(observer: Any, target: str) -> Optional[Histogram]:
    """A copy of one target's histogram in a ``TimingObserver`` (None if never called)."""
    return observer.histogram(target)  # type: ignore[no-any-return]


@dataclass
class MetricsEntry:
    """One target as one metrics observer counts it: counters and a histogram copy."""

    target: str
    counts: Dict[str, int]
    histogram: Histogram


def metrics_entries(observers_: Optional[Iterable[Any]] = None) -> Dict[str, MetricsEntry]:
    """Per target, the counters and histogram of the metrics observer that saw it most.

    Two observers on one target (a function in two pipelines) would otherwise be exported
    twice under the same labels; the one with the most calls is the truthful one.
    """
    out: Dict[str, MetricsEntry] = {}
    for observer in metrics_observers() if observers_ is None else observers_:
        for target, stats in observer.get_metrics().items():
            current = out.get(target)
            if current is not None and current.counts["calls"] >= stats["calls"]:
                continue
            histogram = observer.histogram(target)
            if histogram is None:
                histogram = Histogram(observer.relative_accuracy)
            counts = {k: v for k, v in stats.items() if isinstance(v, int)}
            out[target] = MetricsEntry(target, counts, histogram)
    return out


@dataclass
class FunctionReport:
    """One observed target (``module:qualname`` or an integration's own).

    Counts are None when only a timing observer saw the target (it does not count outcomes).
    Durations are seconds.  ``total_seconds`` is inclusive: a function's callees' time is in
    its total too.
    """

    target: str
    pipeline: Optional[str]
    source: str  # "metrics" or "timing": which observer the numbers come from
    calls: int
    successes: Optional[int] = None
    failures: Optional[int] = None
    recoveries: Optional[int] = None
    retries: Optional[int] = None
    cancelled: Optional[int] = None
    interrupted: Optional[int] = None
    in_flight: Optional[int] = None
    max_in_flight: Optional[int] = None
    slow_calls: Optional[int] = None
    total_seconds: float = 0.0
    mean_seconds: Optional[float] = None
    min_seconds: Optional[float] = None
    p50_seconds: Optional[float] = None
    p90_seconds: Optional[float] = None
    p99_seconds: Optional[float] = None
    max_seconds: Optional[float] = None
    histogram: Optional[Histogram] = field(default=None, repr=False)

    @property
    def errors(self) -> Optional[int]:
        """Failures and interruptions: calls that ended with an exception reaching the caller."""
        if self.failures is None:
            return None
        return self.failures + (self.interrupted or 0)


@dataclass
class RunReport:
    """Everything the run report shows; ``functions`` is sorted by total time, longest first."""

    functions: List[FunctionReport]
    wrapped: int  # distinct functions observed by any decorator (hook and code)
    wrapped_by_hook: int
    instrumentation_warnings: int
    observers: int  # metrics and timing observers found
    created: float = field(default_factory=time.time)
    duration_seconds: Optional[float] = None
    argv: Optional[List[str]] = None
    pid: Optional[int] = None
    exit_status: Optional[int] = None
    ended_by: Optional[str] = None  # "exit", "exception", "SIGTERM", "KeyboardInterrupt"

    @property
    def calls(self) -> int:
        """Calls of every target, added up."""
        return sum(f.calls for f in self.functions)

    @property
    def observed(self) -> bool:
        """Whether any call was observed."""
        return any(f.calls for f in self.functions)


def _latency(row: FunctionReport, histogram: Histogram) -> None:
    row.histogram = histogram
    summary = histogram.summary(QUANTILES)
    row.total_seconds = float(summary["sum"] or 0.0)
    row.mean_seconds = summary["mean"]
    row.min_seconds = summary["min"]
    row.max_seconds = summary["max"]
    row.p50_seconds, row.p90_seconds, row.p99_seconds = (
        summary["p50"],
        summary["p90"],
        summary["p99"],
    )


def collect(*, instrumentation_warnings: Optional[int] = None) -> RunReport:
    """Read every metrics and timing observer in the process into a :class:`RunReport`.

    ``instrumentation_warnings``: how many the caller counted (``callpyback run`` counts every
    warning of the import hook); by default, the functions the hook failed to instrument.
    """
    from .. import autoinstrument

    decos = decorators()
    found = observers()
    pipelines, wrapped = pipelines_by_target(decos)
    hook = autoinstrument.report()
    rows: Dict[str, FunctionReport] = {}
    for target, entry in metrics_entries([o for o in found if _is_metrics(o)]).items():
        c = entry.counts
        row = FunctionReport(
            target=target,
            pipeline=pipelines.get(target),
            source="metrics",
            calls=c.get("calls", 0),
            successes=c.get("successes"),
            failures=c.get("failures"),
            recoveries=c.get("recoveries"),
            retries=c.get("retries"),
            cancelled=c.get("cancelled"),
            interrupted=c.get("interrupted"),
            in_flight=c.get("in_flight"),
            max_in_flight=c.get("max_in_flight"),
        )
        _latency(row, entry.histogram)
        rows[target] = row
    for observer in found:
        if not _is_timing(observer):
            continue
        for target, stats in observer.get_stats().items():
            known = rows.get(target)
            if known is not None:
                known.slow_calls = (known.slow_calls or 0) + int(stats.get("slow_calls") or 0)
                continue
            histogram = timing_histogram(observer, target)
            if histogram is None:
                continue
            row = FunctionReport(
                target=target,
                pipeline=pipelines.get(target),
                source="timing",
                calls=histogram.count,
                slow_calls=int(stats.get("slow_calls") or 0),
            )
            _latency(row, histogram)
            rows[target] = row
    functions = sorted(rows.values(), key=lambda r: (-r.total_seconds, -r.calls, r.target))
    if instrumentation_warnings is None:
        instrumentation_warnings = len(hook.failed)
    return RunReport(
        functions=functions,
        wrapped=wrapped,
        wrapped_by_hook=len(hook.wrapped),
        instrumentation_warnings=instrumentation_warnings,
        observers=len(found),
    )
