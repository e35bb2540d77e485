"""``TimingObserver``: latency percentiles per function and slow-call detection."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, Iterable, List, Mapping, Optional, Tuple

from .._histogram import Histogram
from ..errors import ConfigurationError
from ..states import ExecutionState
from ._base import NEEDS_CONTEXT, BaseObserver, _fork_safe, call_user_callback, state_for_function
from ._patterns import matches

__all__ = ["SlowCall", "TimingObserver"]


@dataclass(frozen=True)
class SlowCall:
    """One call that took at least its threshold."""

    function: str  # module:qualname
    duration: float  # seconds
    threshold: float
    timestamp: float  # wall-clock start, seconds since the epoch
    outcome: str  # "success", "failure", "recovered" or "cancelled"
    thread: str
    attempt: int


class _Timing:
    """One function's durations: appended lock-free per call, folded into the histogram in
    batches under ``lock`` (see ``metrics.FunctionStats`` for why this loses nothing).

    Also the engine's per-function binding for :class:`TimingObserver`: ``done(t)`` after a
    first-attempt success (``list.append`` itself when there is no threshold: no Python frame),
    ``pending``/``flush()`` for the batch."""

    __slots__ = (
        "add",
        "done",
        "durations",
        "histogram",
        "lock",
        "pending",
        "recorder",
        "seen",
        "slow",
        "threshold",
    )

    def __init__(self, threshold: Optional[float], accuracy: float, recorder: Any = None) -> None:
        self.lock = threading.Lock()
        self.durations: List[float] = []
        self.pending = self.durations
        self.histogram = Histogram(accuracy)
        self.threshold = threshold
        self.slow = 0
        self.seen = False  # bound at wrap time; reported once a call was recorded
        #: the C accumulator (compiled engine: buckets updated in C, ``done`` checks the
        #: threshold there), or None: durations go to ``durations``
        self.recorder = (
            recorder(self.histogram._inv_log_gamma, threshold, NEEDS_CONTEXT)
            if recorder is not None
            else None
        )
        if self.recorder is not None:
            self.done: Any = self.recorder.done
            self.add: Any = self.recorder.add
        else:
            self.done = self.durations.append if threshold is None else self._done
            self.add = None

    def _done(self, execution_time: float) -> Any:
        if execution_time >= self.threshold:  # type: ignore[operator]
            return NEEDS_CONTEXT  # update() records it and describes the slow call
        self.durations.append(execution_time)
        return None

    def flush(self) -> None:
        if self.lock.acquire(False):
            try:
                self.fold_locked()
            finally:
                self.lock.release()

    def fold_locked(self) -> None:
        if self.recorder is not None:
            if self.recorder.fold_into(self.histogram) is not None:
                self.seen = True
            return
        durations = self.durations
        n = len(durations)
        if n:
            # Failure-atomic like the metrics fold: the batch leaves only once it is counted.
            self.histogram.add_many(durations[:n])
            del durations[:n]
            self.seen = True

    def copy(self) -> Optional[Tuple[Histogram, int]]:
        """The histogram and slow-call count now (None if no call was ever recorded)."""
        with self.lock:
            self.fold_locked()
            return (self.histogram.copy(), self.slow) if self.seen else None


_BATCH = 256
_REPORTING = threading.local()


def _recorder_type() -> Any:
    from .._cengine import speedups

    module = speedups()
    return None if module is None else module.Recorder


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigurationError(
            f"TimingObserver {what} must be a non-negative number of seconds, got {value!r}"
        )
    return float(value)


class TimingObserver(BaseObserver):
    """Latency per function, and calls slower than a threshold.

    ``threshold`` (seconds) applies to every function; ``thresholds`` maps patterns (a glob over
    ``module:qualname``, or over the qualname when the pattern has no ``:``) to their own
    threshold, the first match winning.  A slow call is kept in a bounded list
    (:meth:`slow_calls`), passed to ``on_slow`` if given, and otherwise logged as a warning on
    the ``callpyback.timing`` logger.
    """

    def __init__(
        self,
        threshold: Optional[float] = None,
        *,
        thresholds: Optional[Mapping[str, float]] = None,
        on_slow: Optional[Callable[[SlowCall], Any]] = None,
        keep: int = 100,
        quantiles: Iterable[float] = (0.5, 0.9, 0.99),
        relative_accuracy: float = 0.01,
        priority: int = 0,
        name: Optional[str] = None,
        background: bool = False,
    ) -> None:
        super().__init__(priority=priority, name=name, background=background)
        self.threshold = None if threshold is None else _seconds(threshold, "threshold")
        pairs: List[Tuple[str, float]] = []
        for pattern, value in (thresholds or {}).items():
            if not isinstance(pattern, str) or not pattern:
                raise ConfigurationError(
                    f"TimingObserver thresholds keys must be patterns, got {pattern!r}"
                )
            pairs.append((pattern, _seconds(value, f"thresholds[{pattern!r}]")))
        self.thresholds = tuple(pairs)
        if on_slow is not None and not callable(on_slow):
            raise ConfigurationError(f"TimingObserver on_slow must be callable, got {on_slow!r}")
        self.on_slow = on_slow
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ConfigurationError(
                f"TimingObserver keep must be a non-negative int, got {keep!r}"
            )
        self.quantiles = tuple(quantiles)
        for q in self.quantiles:
            if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q <= 1:
                raise ConfigurationError(f"TimingObserver quantiles must be in (0, 1], got {q!r}")
        Histogram(relative_accuracy)  # validate now
        self.relative_accuracy = float(relative_accuracy)
        self._recent: Deque[SlowCall] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._by_info: Dict[Any, _Timing] = {}
        self._by_target: Dict[str, _Timing] = {}
        self.callback_failures = 0
        self.states = frozenset({ExecutionState.COMPLETED})
        self._recorder = _recorder_type()
        if self._recorder is not None:
            self.bind_batch = 0  # the recorder needs no folding on the call path
        _fork_safe(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        for timing in list(self._by_target.values()):
            timing.lock = threading.Lock()

    def threshold_for(self, info: Any) -> Optional[float]:
        """The threshold that applies to the function described by ``info`` (a FunctionInfo)."""
        for pattern, value in self.thresholds:
            if matches(pattern, info):
                return value
        return self.threshold

    def _timing_for(self, info: Any) -> _Timing:
        return state_for_function(  # type: ignore[no-any-return]
            self._lock,
            self._by_info,
            self._by_target,
            info,
            lambda i: _Timing(self.threshold_for(i), self.relative_accuracy, self._recorder),
        )

    #: No lock on the call path, and user code (on_slow, logging) only runs for slow calls,
    #: where :meth:`_slow` keeps a slow call's own reporting from being reported again.
    reentrancy_guard = False
    #: The engine folds a function's pending durations at each multiple of this many.
    bind_batch = _BATCH

    def bind(self, function_info: Any) -> _Timing:
        """The engine's per-function fast path (see :class:`_Timing`)."""
        timing = self._by_info.get(function_info)
        return timing if timing is not None else self._timing_for(function_info)

    def notify(self, function_info: Any, execution_time: Optional[float]) -> Any:
        """Called by the engine at COMPLETED with these values injected (no context)."""
        if execution_time is None:
            return None
        timing = self._by_info.get(function_info)
        if timing is None:
            timing = self._timing_for(function_info)
        threshold = timing.threshold
        if threshold is not None and execution_time >= threshold:
            return NEEDS_CONTEXT  # update() records it and describes the slow call
        self._record(timing, execution_time)
        return None

    def _record(self, timing: _Timing, elapsed: float) -> None:
        if timing.add is not None:
            timing.add(elapsed)
            return
        durations = timing.durations
        durations.append(elapsed)
        if not len(durations) % _BATCH and timing.lock.acquire(False):
            try:
                timing.fold_locked()
            finally:
                timing.lock.release()

    def update(self, context: Any) -> None:
        """Record the call's duration, and report it if it was slow."""
        elapsed = context.execution_time
        if elapsed is None:
            return
        timing = self._by_info.get(context.function_info)
        if timing is None:
            timing = self._timing_for(context.function_info)
        self._record(timing, elapsed)
        threshold = timing.threshold
        if threshold is not None and elapsed >= threshold:
            self._slow(context, timing, elapsed, threshold)

    def _slow(self, context: Any, timing: _Timing, elapsed: float, threshold: float) -> None:
        if getattr(_REPORTING, "active", False):
            return  # a slow call made while reporting a slow call (by on_slow, or logging)
        _REPORTING.active = True
        try:
            self._report_slow(context, timing, elapsed, threshold)
        finally:
            _REPORTING.active = False

    def _report_slow(self, context: Any, timing: _Timing, elapsed: float, threshold: float) -> None:
        outcome = context.outcome
        record = SlowCall(
            function=context.function_info.target,
            duration=elapsed,
            threshold=threshold,
            timestamp=context.timestamp,
            outcome=outcome,
            thread=threading.current_thread().name,
            attempt=context.attempt,
        )
        with timing.lock:
            timing.slow += 1
        self._recent.append(record)  # deque.append is atomic; maxlen bounds memory
        if self.on_slow is None:
            import logging

            logging.getLogger("callpyback.timing").warning(
                "slow call: %s took %.6f s (threshold %.6f s)",
                record.function,
                elapsed,
                threshold,
                extra={
                    "function": record.function,
                    "duration": elapsed,
                    "threshold": threshold,
                    "outcome": outcome,
                },
            )
            return
        call_user_callback(
            self, self.on_slow, record, "callpyback.timing", "TimingObserver on_slow callback"
        )

    # --- reading --------------------------------------------------------------------------
    def slow_calls(self) -> List[SlowCall]:
        """The most recent slow calls, oldest first (at most ``keep``)."""
        return list(self._recent)

    def percentiles(self, function: str) -> Dict[str, Optional[float]]:
        """count, mean, min, max and the configured quantiles of one ``module:qualname``."""
        timing = self._by_target.get(function)
        copied = timing.copy() if timing is not None else None
        if copied is None:
            return {}
        return copied[0].summary(self.quantiles)

    def histogram(self, function: str) -> Optional[Histogram]:
        """A copy of one target's latency histogram (None if it was never called)."""
        timing = self._by_target.get(function)
        copied = timing.copy() if timing is not None else None
        return copied[0] if copied is not None else None

    def get_stats(self) -> Dict[str, Dict[str, Any]]:
        """Per ``module:qualname``: the percentiles, the threshold and the number of slow calls."""
        with self._lock:
            items = sorted(self._by_target.items())
        out: Dict[str, Dict[str, Any]] = {}
        for target, timing in items:
            copied = timing.copy()
            if copied is None:
                continue
            histogram, slow = copied
            out[target] = {
                **histogram.summary(self.quantiles),
                "threshold": timing.threshold,
                "slow_calls": slow,
            }
        return out

    def reset(self) -> None:
        """Forget every measurement and slow call (thresholds stay)."""
        with self._lock:
            timings = list(self._by_target.values())
        for timing in timings:
            with timing.lock:
                timing.fold_locked()
                timing.histogram = Histogram(self.relative_accuracy)
                timing.slow = 0
        self._recent.clear()
