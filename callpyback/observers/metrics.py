"""``MetricsObserver``: exact per-function call counts plus a bounded latency histogram."""

from __future__ import annotations

import functools
import threading
from itertools import accumulate, repeat
from typing import Any, Dict, Iterable, List, Optional, Tuple

from .._histogram import Histogram
from ..errors import ConfigurationError
from ..states import ExecutionState
from ._base import BaseObserver, _fork_safe, state_for_function

__all__ = ["FunctionStats", "MetricsObserver"]

_PRE = ExecutionState.PRE_EXECUTION
_DONE = ExecutionState.COMPLETED
_ERROR = ExecutionState.ERROR

_COUNTERS = ("calls", "successes", "failures", "recoveries", "cancelled", "interrupted", "retries")

#: Events a call appends, folded into the counters in batches.  None is a call starting; a tuple
#: is (outcome, duration, attempt); anything else is the duration of a first-attempt success (the
#: common case).
_START = None
#: start -> +1, anything else -> the default (-1): the in-flight change of each event
_DELTA = {None: 1}.get
_SUCCESS, _FAILURE, _RECOVERED, _CANCELLED, _INTERRUPTED = range(5)
_CODES = {
    "success": _SUCCESS,
    "failure": _FAILURE,
    "recovered": _RECOVERED,
    "cancelled": _CANCELLED,
    "interrupted": _INTERRUPTED,
}
_OUTCOME_FIELD = ("successes", "failures", "recoveries", "cancelled", "interrupted")
#: Events kept before a call folds them (bounds memory between reads).
_BATCH = 256


def _recorder_type() -> Any:
    """The C accumulator (``_speedups.Recorder``) when the compiled engine is active, else None."""
    from .._cengine import speedups

    module = speedups()
    return None if module is None else module.Recorder


class FunctionStats:
    """Counters and latency of one function: the engine's per-function *binding* (see
    ``docs/observers.md``) for :class:`MetricsObserver`.

    The hot path takes no lock and runs no Python code of ours.  With the compiled engine,
    ``start()``/``done(t)``/``end(...)`` are methods of a C ``recorder`` that updates the
    in-flight count, the counters and the histogram buckets under the GIL (exact under threads),
    and a fold adds its buckets to ``histogram``.  Without it, ``start()`` appends ``None`` and
    ``done(t)`` the duration to ``events`` (``list.append`` through C callables: atomic, no
    frame), and the engine calls ``flush()`` when ``pending`` reaches the observer's
    ``bind_batch``.  Events are folded into the counters and the histogram under ``lock``, in
    batches, and always before anything is read; ``del events[:n]`` removes exactly the events
    folded, so an event appended meanwhile by another thread is kept for the next fold.
    """

    __slots__ = (
        "done",
        "events",
        "histogram",
        "in_flight",
        "lock",
        "max_in_flight",
        "pending",
        "recorder",
        "seen",
        "start",
        "target",
        *_COUNTERS,
    )

    def __init__(self, target: str, relative_accuracy: float, recorder: Any = None) -> None:
        self.lock = threading.Lock()
        self.target = target
        #: None (a call started), a float (the duration of a first-attempt success, by far
        #: the most common ending) or ``(outcome, duration, attempt)``
        self.events: List[Any] = []
        self.pending = self.events
        self.histogram = Histogram(relative_accuracy)
        #: the C accumulator (compiled engine), or None: events go to ``events``
        self.recorder = recorder(self.histogram._inv_log_gamma) if recorder is not None else None
        if self.recorder is not None:
            self.done = self.recorder.done
            self.start = self.recorder.start
        else:
            self.done = self.events.append
            self.start = functools.partial(self.events.append, _START)
        #: Whether a call was ever recorded: the engine binds every function it wraps (the import
        #: hook, thousands), and one never called is not reported.
        self.seen = False
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls = self.successes = self.failures = self.recoveries = 0
        self.cancelled = self.interrupted = self.retries = 0

    def flush(self) -> None:
        """Fold what is pending, unless another thread is folding (it will)."""
        self.fold(blocking=False)

    def end(self, outcome: int, execution_time: Optional[float], attempt: int) -> None:
        """Any ending but a first-attempt success (``outcome``: a code of ``_CODES``)."""
        if self.recorder is not None:
            self.recorder.end(outcome, execution_time, attempt)
            return
        events = self.events
        events.append((outcome, execution_time, attempt))
        if not len(events) % _BATCH:
            self.fold(blocking=False)

    def fold(self, blocking: bool = True) -> None:
        """Fold pending events; without ``blocking``, skip if another thread is folding."""
        if not self.lock.acquire(blocking):
            return
        try:
            self._fold_locked()
        finally:
            self.lock.release()

    def _fold_locked(self) -> None:
        # Failure-atomic: the tallies are computed first and the histogram (the only call that
        # could fail, e.g. at the recursion limit) is updated before the events are removed, so
        # a fold that fails leaves every event for the next one.  C-level passes over the batch
        # (a comprehension or a map per kind of event), not a Python loop per event.
        if self.recorder is not None:
            self._fold_recorder()
            return
        events = self.events
        n = len(events)
        if not n:
            return
        batch = events[:n]
        starts = batch.count(_START)
        if (starts * 2 == n or not starts) and self._fold_successes(batch, starts):
            return
        durations = [e for e in batch if e.__class__ is float]
        successes = len(durations)
        tallies = [0, 0, 0, 0, 0]
        retries = 0
        if starts + successes < n:
            for outcome, elapsed, attempt in (e for e in batch if e.__class__ is tuple):
                tallies[outcome] += 1
                if attempt > 1:
                    retries += attempt - 1
                if elapsed is not None:
                    durations.append(elapsed)
        ended = n - starts
        in_flight, peak = self.in_flight, self.max_in_flight
        if starts:
            # The most calls running at once in this batch: the highest running sum of +1 per
            # start and -1 per ending, in order.
            running = accumulate(map(_DELTA, batch, repeat(-1)), initial=in_flight)
            peak = max(peak, max(running))
        self.histogram.add_many(durations)
        del events[:n]
        self.seen = True
        # A call that started before the observer was attached ends without a start: never
        # below zero.
        self.in_flight = max(0, in_flight + starts - ended)
        self.max_in_flight = peak
        self.calls += ended
        self.successes += successes + tallies[_SUCCESS]
        self.failures += tallies[_FAILURE]
        self.recoveries += tallies[_RECOVERED]
        self.cancelled += tallies[_CANCELLED]
        self.interrupted += tallies[_INTERRUPTED]
        self.retries += retries

    def _fold_recorder(self) -> None:
        # The recorder adds its buckets to the histogram and hands back its counters, both
        # only once every value is computed (see Recorder.fold_into): failure-atomic too.
        recorder: Any = self.recorder
        folded = recorder.fold_into(self.histogram)
        self.in_flight = recorder.in_flight
        self.max_in_flight = recorder.max_in_flight
        if folded is None:
            return
        _events, calls, tallies, retries = folded
        self.seen = True
        self.calls += calls
        self.successes += tallies[_SUCCESS]
        self.failures += tallies[_FAILURE]
        self.recoveries += tallies[_RECOVERED]
        self.cancelled += tallies[_CANCELLED]
        self.interrupted += tallies[_INTERRUPTED]
        self.retries += retries

    def _fold_successes(self, batch: List[Any], starts: int) -> bool:
        """The usual batch, folded without a Python loop: first-attempt successes only, with
        no starts (in-flight not tracked, or started before the batch) or each call's start
        just before its end (calls one
        after the other: then the most in flight is one more than at the batch's start).
        False, with nothing changed, for any other batch."""
        if starts:
            if batch[0::2].count(_START) != starts:
                return False  # interleaved: calls overlapped (threads, recursion)
            durations = batch[1::2]
        else:
            durations = batch
        try:
            sum(durations)  # a failure's tuple among the floats: the general fold
        except TypeError:
            return False
        self.histogram.add_many(durations)
        del self.events[: len(batch)]
        self.seen = True
        if starts:
            self.max_in_flight = max(self.max_in_flight, self.in_flight + 1)
        elif self.in_flight:  # calls whose start an earlier fold counted
            self.in_flight = max(0, self.in_flight - len(durations))
        self.calls += len(durations)
        self.successes += len(durations)
        return True

    def reset(self) -> None:
        """Forget the counts and latencies (calls in flight stay counted)."""
        with self.lock:
            self._fold_locked()
            self.histogram = Histogram(self.histogram.relative_accuracy)
            # in_flight is live state, not a statistic: calls still running will complete.
            self.max_in_flight = self.in_flight
            if self.recorder is not None:
                self.recorder.max_in_flight = self.in_flight
            self.calls = self.successes = self.failures = self.recoveries = 0
            self.cancelled = self.interrupted = self.retries = 0

    def snapshot(self, quantiles: Tuple[float, ...]) -> Optional[Dict[str, Any]]:
        """The statistics now (None if no call was ever recorded)."""
        with self.lock:
            self._fold_locked()
            if not self.seen:
                return None
            counts = {name: getattr(self, name) for name in _COUNTERS}
            in_flight, max_in_flight = self.in_flight, self.max_in_flight
            histogram = self.histogram.copy()
        # The quantile walk happens outside the lock, on the copy, so callers never wait on it.
        return {
            **counts,
            "in_flight": in_flight,
            "max_in_flight": max_in_flight,
            "latency": histogram.summary(quantiles),
        }


class MetricsObserver(BaseObserver):
    """Per-function calls, successes, failures, recoveries, in-flight count and latency.

    A call is counted once, when it ends: ``successes`` + ``failures`` + ``recoveries`` +
    ``cancelled`` + ``interrupted`` == ``calls``.  ``retries`` counts extra attempts.  Latency
    (``execution_time`` from the decorator's time source) goes into a streaming histogram whose
    quantiles are within ``relative_accuracy`` of an observed value and whose memory is bounded.
    Counts are exact under threads (see :class:`FunctionStats`: no lock on the call path).
    """

    # It never runs user code, so the core may skip the re-entrancy guard around it.
    reentrancy_guard = False
    #: The engine folds a function's pending events at each multiple of this many (0 with the
    #: compiled engine: its recorder needs no folding on the call path).
    bind_batch = _BATCH

    def __init__(
        self,
        *,
        track_in_flight: bool = True,
        quantiles: Iterable[float] = (0.5, 0.9, 0.99),
        relative_accuracy: float = 0.01,
        priority: int = 0,
        name: Optional[str] = None,
        background: bool = False,
    ) -> None:
        super().__init__(priority=priority, name=name, background=background)
        qs = tuple(quantiles)
        for q in qs:
            if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q <= 1:
                raise ConfigurationError(
                    f"{self.name}: quantiles must be numbers in (0, 1], got {q!r} in {qs!r}; "
                    "for example (0.5, 0.9, 0.99)"
                )
        self.quantiles = qs
        Histogram(relative_accuracy)  # validates the accuracy now, not at the first call
        self.relative_accuracy = float(relative_accuracy)
        self.track_in_flight = bool(track_in_flight)
        # Only the states we use: without in-flight tracking a call costs one notification.
        wanted = [_DONE, _ERROR] + ([_PRE] if self.track_in_flight else [])
        self.states = frozenset(wanted)
        self._lock = threading.Lock()  # guards the two maps below (creation only)
        self._recorder = _recorder_type()
        if self._recorder is not None:
            self.bind_batch = 0
        self._by_info: Dict[Any, FunctionStats] = {}
        self._by_target: Dict[str, FunctionStats] = {}
        _fork_safe(self)

    def _stats_for(self, info: Any) -> FunctionStats:
        return state_for_function(  # type: ignore[no-any-return]
            self._lock,
            self._by_info,
            self._by_target,
            info,
            lambda i: FunctionStats(i.target, self.relative_accuracy, self._recorder),
        )

    def bind(self, function_info: Any) -> FunctionStats:
        """The engine's per-function fast path: this function's stats (see FunctionStats)."""
        stats = self._by_info.get(function_info)
        return stats if stats is not None else self._stats_for(function_info)

    def notify(
        self,
        function_info: Any,
        state: ExecutionState,
        outcome: Optional[str],
        execution_time: Optional[float],
        attempt: int,
    ) -> None:
        """Every notification the binding does not take (failures, retries, interruptions)."""
        stats = self._by_info.get(function_info)
        if stats is None:
            stats = self._stats_for(function_info)
        if state is _PRE:
            stats.start()
            if stats.recorder is None and not len(stats.events) % _BATCH:
                stats.fold(blocking=False)
            return
        if attempt == 1 and outcome == "success":
            stats.done(float(execution_time or 0.0))
            if stats.recorder is None and not len(stats.events) % _BATCH:
                stats.fold(blocking=False)
        else:
            stats.end(_CODES[outcome or "interrupted"], execution_time, attempt)

    def update(self, context: Any) -> None:
        """Count the notification (the general form of :meth:`notify`)."""
        self.notify(
            context.function_info,
            context.state,
            context.outcome,
            context.execution_time,
            context.attempt,
        )

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        for stats in list(self._by_target.values()):
            stats.lock = threading.Lock()

    # --- reading --------------------------------------------------------------------------
    def get_metrics(self, function: Optional[str] = None) -> Dict[str, Any]:
        """``{"module:qualname": {counts..., "latency": {...}}}``; each entry is consistent.

        With ``function`` (a ``module:qualname`` target), only that function's entry (an empty
        dict if it was never called).
        """
        if function is not None:
            stats = self._by_target.get(function)
            one = stats.snapshot(self.quantiles) if stats is not None else None
            return one if one is not None else {}
        with self._lock:
            items = sorted(self._by_target.items())
        out: Dict[str, Any] = {}
        for target, stats in items:
            snapshot = stats.snapshot(self.quantiles)
            if snapshot is not None:
                out[target] = snapshot
        return out

    def reset_metrics(self, function: Optional[str] = None) -> None:
        """Zero the statistics (of one ``module:qualname`` target, or of all)."""
        with self._lock:
            items = list(self._by_target.values())
        for stats in items:
            if function is None or stats.target == function:
                stats.reset()

    def histogram(self, function: str) -> Optional[Histogram]:
        """A copy of one function's latency histogram (None if it was never called)."""
        stats = self._by_target.get(function)
        if stats is None:
            return None
        with stats.lock:
            stats._fold_locked()
            return stats.histogram.copy() if stats.seen else None

    def to_dict(self) -> Dict[str, Any]:
        """The same as :meth:`get_metrics`: plain, JSON-serialisable data."""
        return self.get_metrics()

    def to_prometheus(self, prefix: str = "callpyback") -> str:
        """Prometheus text exposition (format 0.0.4) of this observer's metrics.

        A thin wrapper over :class:`callpyback.report.CallPyBackCollector` (needs
        ``prometheus_client``): ``<prefix>_calls_total{target,outcome}``,
        ``<prefix>_retries_total``, ``<prefix>_calls_in_flight`` (and ``_max``) and the
        ``<prefix>_call_duration_seconds`` histogram.  To serve it, see ``docs/reports.md``.
        """
        from ..report._prometheus import CallPyBackCollector, check_prefix, exposition

        check_prefix(prefix)
        return exposition(CallPyBackCollector(lambda: [self], prefix=prefix))


def _outcome(context: Any) -> int:
    return _CODES[context.outcome]
