"""``AlertingObserver`` and ``AlertRule``: real-time alerts on error rate and latency.

Each rule keeps, per function, a sliding window cut into ``resolution`` slots of counts, so
memory is fixed and an evaluation costs ``resolution`` additions.  Time comes from the
observer's ``time_source`` (by default the decorator's), so rules are testable with
``MockTimeSource``.

A latency rule "p99 above 0.2 s" is evaluated exactly, without storing latencies: the p-quantile
(nearest rank) of ``n`` calls exceeds ``T`` exactly when more than ``n - ceil(p * n)`` of them
took longer than ``T``.

Value rules watch a number each call produces (a local variable captured with
``variable_names``, such as a training loop's ``loss``, or the returned value) instead of a
window of outcomes: ``nan`` fires when it is NaN or infinite, ``plateau`` when it has not
improved for ``patience`` calls.  They keep one best value and one counter per function.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Sequence, Tuple

from ..errors import ConfigurationError
from ..states import ExecutionState
from ._base import BaseObserver, call_user_callback
from ._patterns import matches

__all__ = ["Alert", "AlertRule", "AlertingObserver"]

_WINDOW_KINDS = ("error_rate", "latency")
_VALUE_KINDS = ("nan", "plateau")
_KINDS = _WINDOW_KINDS + _VALUE_KINDS
_MODES = ("min", "max")


class AlertRule:
    """A condition over a sliding time window, checked per function at the end of each call.

    ``kind="error_rate"``: fires when failures / calls > ``threshold`` (a fraction in [0, 1));
    recovered calls count as failures unless ``count_recovered=False``.
    ``kind="latency"``: fires when the ``percentile`` (e.g. 0.99) of call durations in the
    window is above ``threshold`` seconds.  Nothing fires before ``min_calls`` calls are in the
    window.  ``functions`` limits the rule to matching functions (globs, as in
    ``TimingObserver``).  After firing, a rule stays quiet until it resolves (the condition is
    false again) and ``cooldown`` seconds have passed.

    Value rules (no ``threshold``, no window) watch ``variable``, a local variable captured
    with ``variable_names`` (or, when ``variable`` is None, the returned value), each time a
    call completes; a call without a number there is not counted:

    * ``kind="nan"``: fires when the value is NaN or infinite, resolves when it is finite;
    * ``kind="plateau"``: fires when the value has not improved on its best for ``patience``
      calls (default 5) in a row; improving means going below the best by more than
      ``min_delta`` (default 0) with ``mode="min"`` (a loss), above it with ``mode="max"``
      (an accuracy).  A NaN never improves.  It resolves at the next improvement.
    """

    def __init__(
        self,
        name: str,
        kind: str,
        threshold: Optional[float] = None,
        *,
        window: float = 60.0,
        percentile: Optional[float] = None,
        min_calls: int = 10,
        functions: Optional[Iterable[str]] = None,
        cooldown: float = 0.0,
        count_recovered: bool = True,
        variable: Optional[str] = None,
        patience: Optional[int] = None,
        min_delta: Optional[float] = None,
        mode: Optional[str] = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"AlertRule name must be a non-empty string, got {name!r}")
        where = f"AlertRule {name!r}"
        if kind not in _KINDS:
            raise ConfigurationError(f"{where}: kind must be one of {list(_KINDS)}, got {kind!r}")
        if kind in _VALUE_KINDS:
            if threshold is not None:
                raise ConfigurationError(
                    f"{where}: a {kind} rule has no threshold (it watches a value; "
                    f"{'use min_delta' if kind == 'plateau' else 'remove threshold'})"
                )
            threshold = 0.0
        elif variable is not None:
            raise ConfigurationError(f"{where}: variable applies to nan and plateau rules only")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold < 0:
            raise ConfigurationError(
                f"{where}: threshold must be a non-negative number, got {threshold!r}"
            )
        if variable is not None and (not isinstance(variable, str) or not variable):
            raise ConfigurationError(
                f"{where}: variable must be the name of a captured local variable, got {variable!r}"
            )
        if kind != "plateau":
            for option, given in (("patience", patience), ("min_delta", min_delta), ("mode", mode)):
                if given is not None:
                    raise ConfigurationError(f"{where}: {option} applies to plateau rules only")
        else:
            patience = 5 if patience is None else patience
            if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
                raise ConfigurationError(
                    f"{where}: patience must be a positive int (calls without improvement), "
                    f"got {patience!r}"
                )
            min_delta = 0.0 if min_delta is None else min_delta
            if (
                isinstance(min_delta, bool)
                or not isinstance(min_delta, (int, float))
                or not min_delta >= 0
            ):
                raise ConfigurationError(
                    f"{where}: min_delta must be a non-negative number, got {min_delta!r}"
                )
            mode = "min" if mode is None else mode
            if mode not in _MODES:
                raise ConfigurationError(
                    f"{where}: mode must be 'min' (lower is better, a loss) or 'max' (higher is "
                    f"better, an accuracy), got {mode!r}"
                )
        if kind == "error_rate" and not threshold < 1:
            raise ConfigurationError(
                f"{where}: an error_rate threshold is a fraction below 1 (0.05 = 5 %), "
                f"got {threshold!r}"
            )
        if kind == "latency":
            if percentile is None:
                percentile = 0.99
            if (
                isinstance(percentile, bool)
                or not isinstance(percentile, (int, float))
                or not 0 < percentile <= 1
            ):
                raise ConfigurationError(
                    f"{where}: percentile must be in (0, 1] (0.99 for p99), got {percentile!r}"
                )
        elif percentile is not None:
            raise ConfigurationError(f"{where}: percentile applies to latency rules only")
        if isinstance(window, bool) or not isinstance(window, (int, float)) or window <= 0:
            raise ConfigurationError(
                f"{where}: window must be a positive number of seconds, got {window!r}"
            )
        if isinstance(min_calls, bool) or not isinstance(min_calls, int) or min_calls < 1:
            raise ConfigurationError(
                f"{where}: min_calls must be a positive int, got {min_calls!r}"
            )
        if isinstance(cooldown, bool) or not isinstance(cooldown, (int, float)) or cooldown < 0:
            raise ConfigurationError(
                f"{where}: cooldown must be a non-negative number of seconds, got {cooldown!r}"
            )
        patterns = [functions] if isinstance(functions, str) else list(functions or ())
        for p in patterns:
            if not isinstance(p, str) or not p:
                raise ConfigurationError(
                    f"{where}: functions must be patterns (strings), got {p!r}"
                )
        self.name = name
        self.kind = kind
        self.threshold = float(threshold)
        self.window = float(window)
        self.percentile = None if percentile is None else float(percentile)
        self.min_calls = min_calls
        self.functions = tuple(patterns)
        self.cooldown = float(cooldown)
        self.count_recovered = bool(count_recovered)
        self.variable = variable
        self.patience = patience
        self.min_delta = None if min_delta is None else float(min_delta)
        self.mode = mode

    @classmethod
    def error_rate(
        cls, threshold: float, *, name: Optional[str] = None, **options: Any
    ) -> AlertRule:
        """Fire when more than ``threshold`` (a fraction) of the calls in the window failed."""
        return cls(name or f"error_rate>{threshold:g}", "error_rate", threshold, **options)

    @classmethod
    def latency(
        cls,
        threshold: float,
        percentile: float = 0.99,
        *,
        name: Optional[str] = None,
        **options: Any,
    ) -> AlertRule:
        """Fire when the ``percentile`` of durations in the window is above ``threshold`` s."""
        label = name or f"p{percentile * 100:g}>{threshold:g}s"
        return cls(label, "latency", threshold, percentile=percentile, **options)

    @classmethod
    def nan(
        cls, variable: Optional[str] = None, *, name: Optional[str] = None, **options: Any
    ) -> AlertRule:
        """Fire when ``variable`` (or the returned value) is NaN or infinite."""
        return cls(name or f"{variable or 'value'} is nan", "nan", variable=variable, **options)

    @classmethod
    def plateau(
        cls,
        variable: Optional[str] = None,
        patience: int = 5,
        *,
        min_delta: float = 0.0,
        mode: str = "min",
        name: Optional[str] = None,
        **options: Any,
    ) -> AlertRule:
        """Fire when ``variable`` has not improved for ``patience`` calls."""
        label = name or f"{variable or 'value'} stopped improving"
        return cls(
            label,
            "plateau",
            variable=variable,
            patience=patience,
            min_delta=min_delta,
            mode=mode,
            **options,
        )

    def applies_to(self, info: Any) -> bool:
        """Whether this rule watches the function ``info`` (its ``functions`` patterns, or all)."""
        return not self.functions or any(matches(p, info) for p in self.functions)

    def __repr__(self) -> str:
        if self.kind in _VALUE_KINDS:
            extra = f", variable={self.variable!r}"
            if self.kind == "plateau":
                extra += (
                    f", patience={self.patience}, min_delta={self.min_delta}, mode={self.mode!r}"
                )
            return f"AlertRule({self.name!r}, {self.kind!r}{extra})"
        extra = f", percentile={self.percentile}" if self.percentile is not None else ""
        return (
            f"AlertRule({self.name!r}, {self.kind!r}, {self.threshold}{extra}, "
            f"window={self.window}, min_calls={self.min_calls})"
        )


@dataclass(frozen=True)
class Alert:
    """What an alert callback receives."""

    rule: str
    kind: str
    function: str  # module:qualname
    firing: bool  # True when it starts, False when it resolves
    value: float  # the error rate, the fraction of slow calls, or the watched value
    threshold: float  # the rule's threshold; for a plateau rule, the best value so far
    calls: int  # calls in the window (value rules: values seen)
    bad: int  # failed (or slow) calls in the window (plateau: calls since the best)
    window: float  # seconds (0 for value rules)
    timestamp: float  # wall clock, seconds since the epoch
    message: str


class _Window:
    """Counts per slot of a sliding window, for one (rule, function) pair."""

    __slots__ = ("bad", "calls", "firing", "last_fired", "last_slot", "lock", "width")

    def __init__(self, window: float, resolution: int) -> None:
        self.lock = threading.Lock()
        self.width = window / resolution
        self.calls = [0] * resolution
        self.bad = [0] * resolution
        self.last_slot: Optional[int] = None
        self.firing = False
        self.last_fired = -math.inf

    def add(self, now: float, bad: bool) -> Tuple[int, int]:
        """Count one call at ``now``; return (calls, bad) within the window."""
        calls, bads = self.calls, self.bad
        size = len(calls)
        slot = math.floor(now / self.width)
        last = self.last_slot
        if last is None or slot - last >= size:
            for i in range(size):
                calls[i] = bads[i] = 0
        elif slot > last:
            for s in range(last + 1, slot + 1):  # slots that went by are emptied
                calls[s % size] = bads[s % size] = 0
        if last is None or slot > last:
            self.last_slot = slot
        i = slot % size
        calls[i] += 1
        if bad:
            bads[i] += 1
        return sum(calls), sum(bads)


class _Watch:
    """A value rule's state for one function: the best value and the calls since it."""

    __slots__ = ("best", "calls", "firing", "last_fired", "lock", "since")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.best: Optional[float] = None
        self.since = 0
        self.calls = 0
        self.firing = False
        self.last_fired = -math.inf


def _number(value: Any) -> Optional[float]:
    """``value`` as a float, or None when it is not a number (a NullVariable, a string...)."""
    if value is None or isinstance(value, (bool, str, bytes)):
        return None
    try:
        return float(value)  # numpy scalars and 0-d arrays too
    except (TypeError, ValueError, OverflowError):
        return None


class AlertingObserver(BaseObserver):
    """Checks :class:`AlertRule` s at the end of each call and calls ``on_alert`` on transitions.

    ``on_alert(alert)`` gets an :class:`Alert` when a rule starts firing for a function, and
    ``on_resolve(alert)`` (optional) when it stops.  Without ``on_alert``, alerts are logged as
    warnings on ``callpyback.alerts``.  :attr:`alerts` keeps the last ``keep`` alerts.
    """

    def __init__(
        self,
        rules: Sequence[AlertRule],
        *,
        on_alert: Optional[Callable[[Alert], Any]] = None,
        on_resolve: Optional[Callable[[Alert], Any]] = None,
        time_source: Any = None,
        resolution: int = 10,
        keep: int = 100,
        priority: int = 0,
        name: Optional[str] = None,
        background: bool = False,
    ) -> None:
        super().__init__(priority=priority, name=name, background=background)
        rules = list(rules) if not isinstance(rules, AlertRule) else [rules]
        if not rules:
            raise ConfigurationError("AlertingObserver needs at least one AlertRule")
        seen = set()
        for rule in rules:
            if not isinstance(rule, AlertRule):
                raise ConfigurationError(
                    f"AlertingObserver rules must be AlertRule objects, got {rule!r}"
                )
            if rule.name in seen:
                raise ConfigurationError(
                    f"AlertingObserver: two rules are named {rule.name!r}; names must be unique"
                )
            seen.add(rule.name)
        self.rules = tuple(rules)
        for cb, what in ((on_alert, "on_alert"), (on_resolve, "on_resolve")):
            if cb is not None and not callable(cb):
                raise ConfigurationError(f"AlertingObserver {what} must be callable, got {cb!r}")
        self.on_alert = on_alert
        self.on_resolve = on_resolve
        if time_source is not None and not callable(getattr(time_source, "monotonic", None)):
            raise ConfigurationError(
                f"AlertingObserver time_source needs monotonic() and now(), got {time_source!r}"
            )
        self.time_source = time_source
        if (
            isinstance(resolution, bool)
            or not isinstance(resolution, int)
            or not 1 <= resolution <= 1000
        ):
            raise ConfigurationError(
                f"AlertingObserver resolution must be an int in 1..1000, got {resolution!r}"
            )
        self.resolution = resolution
        self.alerts: Deque[Alert] = deque(maxlen=keep)
        self.callback_failures = 0
        self._lock = threading.Lock()
        self._by_info: Dict[Any, List[Tuple[AlertRule, Any]]] = {}
        self._by_target: Dict[Tuple[str, str], Any] = {}  # a _Window, or a _Watch
        self.states = frozenset({ExecutionState.COMPLETED})

    def _windows_for(self, info: Any) -> List[Tuple[AlertRule, Any]]:
        with self._lock:
            pairs = self._by_info.get(info)
            if pairs is None:
                pairs = []
                for rule in self.rules:
                    if rule.applies_to(info):
                        key = (rule.name, info.target)
                        window = self._by_target.get(key)
                        if window is None:
                            window = self._by_target[key] = (
                                _Watch()
                                if rule.kind in _VALUE_KINDS
                                else _Window(rule.window, self.resolution)
                            )
                        pairs.append((rule, window))
                self._by_info[info] = pairs
            return pairs

    def update(self, context: Any) -> None:
        """Count the completed call in each rule's window and fire or resolve alerts."""
        pairs = self._by_info.get(context.function_info)
        if pairs is None:
            pairs = self._windows_for(context.function_info)
        if not pairs or context.cancelled:
            return
        clock = self.time_source or context.time_source
        now = clock.monotonic()
        failed = context.exception is not None
        recovered = failed and context.recovered
        elapsed = context.execution_time or 0.0
        for rule, window in pairs:
            if type(window) is _Watch:
                self._watch(rule, window, context, now, clock)
                continue
            if rule.kind == "error_rate":
                bad = failed and (rule.count_recovered or not recovered)
            else:
                bad = elapsed > rule.threshold
            with window.lock:
                calls, bads = window.add(now, bad)
                if calls < rule.min_calls:
                    condition = False
                elif rule.kind == "error_rate":
                    condition = bads / calls > rule.threshold
                else:
                    assert rule.percentile is not None
                    condition = bads > calls - math.ceil(rule.percentile * calls)
                if condition == window.firing:
                    continue
                if condition and now - window.last_fired < rule.cooldown:
                    continue
                window.firing = condition
                if condition:
                    window.last_fired = now
            self._emit(rule, context, condition, calls, bads, clock)

    def _watch(self, rule: AlertRule, watch: _Watch, context: Any, now: float, clock: Any) -> None:
        if rule.variable is None:
            raw = context.value if context.outcome in ("success", "recovered") else None
        else:
            raw = context.local_variables.get(rule.variable)
        value = _number(raw)
        if value is None:
            return  # nothing to judge this call by
        with watch.lock:
            watch.calls += 1
            if rule.kind == "nan":
                condition = math.isnan(value) or math.isinf(value)
            else:
                best = watch.best
                if best is None or math.isnan(best):
                    improved = not math.isnan(value)
                else:
                    assert rule.min_delta is not None
                    improved = (
                        value < best - rule.min_delta
                        if rule.mode == "min"
                        else value > best + rule.min_delta
                    )
                if improved:
                    watch.best, watch.since = value, 0
                else:
                    watch.since += 1
                assert rule.patience is not None
                condition = watch.since >= rule.patience
            if condition == watch.firing:
                return
            if condition and now - watch.last_fired < rule.cooldown:
                return
            watch.firing = condition
            if condition:
                watch.last_fired = now
            best_now = watch.best
            calls, since = watch.calls, watch.since
        target = context.function_info.target
        what = rule.variable or "the returned value"
        if rule.kind == "nan":
            detail = f"{what} is {value!r}" if condition else f"{what} is finite again ({value:g})"
            threshold = 0.0
            bad = 1 if condition else 0
        else:
            if not condition:
                detail = f"{what} improved to {value:g}"
            elif best_now is None:
                detail = f"{what} has had no value to improve on for {since} calls (only NaN)"
            else:
                detail = (
                    f"{what} has not improved on its best {best_now:g} for {since} calls "
                    f"(patience {rule.patience}, min_delta {rule.min_delta:g}, mode {rule.mode})"
                )
            threshold = best_now if best_now is not None else math.nan
            bad = since
        state = "firing" if condition else "resolved"
        alert = Alert(
            rule=rule.name,
            kind=rule.kind,
            function=target,
            firing=condition,
            value=value,
            threshold=threshold,
            calls=calls,
            bad=bad,
            window=0.0,
            timestamp=clock.now(),
            message=f"alert {rule.name!r} {state} for {target}: {detail}",
        )
        self._deliver(alert, condition)

    def _emit(
        self, rule: AlertRule, context: Any, firing: bool, calls: int, bads: int, clock: Any
    ) -> None:
        target = context.function_info.target
        value = bads / calls if calls else 0.0
        if rule.kind == "error_rate":
            what = f"error rate {value:.1%} over the last {rule.window:g} s ({bads}/{calls} calls)"
            limit = f"{rule.threshold:.1%}"
        else:
            assert rule.percentile is not None
            what = (
                f"p{rule.percentile * 100:g} latency above {rule.threshold:g} s over the last "
                f"{rule.window:g} s ({bads}/{calls} calls slower)"
            )
            limit = f"{1 - rule.percentile:.1%} of calls slower"
        state = "firing" if firing else "resolved"
        message = f"alert {rule.name!r} {state} for {target}: {what}; limit {limit}"
        alert = Alert(
            rule=rule.name,
            kind=rule.kind,
            function=target,
            firing=firing,
            value=value,
            threshold=rule.threshold,
            calls=calls,
            bad=bads,
            window=rule.window,
            timestamp=clock.now(),
            message=message,
        )
        self._deliver(alert, firing)

    def _deliver(self, alert: Alert, firing: bool) -> None:
        self.alerts.append(alert)
        callback = self.on_alert if firing else self.on_resolve
        if callback is None:
            if firing:
                import logging

                logging.getLogger("callpyback.alerts").warning(alert.message)
            return
        call_user_callback(self, callback, alert, "callpyback.alerts", "alert callback")

    def active(self) -> List[Tuple[str, str]]:
        """``(rule name, module:qualname)`` of every rule firing now."""
        with self._lock:
            items = list(self._by_target.items())
        return sorted(key for key, window in items if window.firing)
