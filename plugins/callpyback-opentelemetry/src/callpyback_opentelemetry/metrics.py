"""``otel.metrics``: OpenTelemetry instruments for observed calls.

* ``callpyback.call.duration`` (histogram, ``s``): each call's duration;
* ``callpyback.calls`` (counter, ``{call}``): calls by outcome;
* ``callpyback.call.retries`` (counter, ``{retry}``): retries (attempts after the first);
* ``callpyback.calls.active`` (up-down counter, ``{call}``): calls in flight.

Attributes: ``code.function.name``, plus ``callpyback.outcome`` on the duration and calls
instruments, and ``error.type`` only for a failure or an interruption.  The instruments are
created once per meter provider (every observer on the same provider shares them).  When the
call also has an ``otel.span`` span, measurements are recorded in that span's context, so
exemplars link them to the trace.
"""

from __future__ import annotations

import threading
import weakref
from importlib import import_module
from typing import Any, Dict, Optional, Sequence, Tuple

from opentelemetry import metrics, trace
from opentelemetry.semconv.attributes.code_attributes import CODE_FUNCTION_NAME
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE

from callpyback import BaseObserver, ConfigurationError, ExecutionState
from callpyback.observers._base import NEEDS_CONTEXT

from . import __version__
from .spans import SPAN_KEY, error_type, function_name

__all__ = ["DEFAULT_BUCKETS", "Instruments", "OTelMetricsObserver", "instruments_for"]

_PRE = ExecutionState.PRE_EXECUTION
_DONE = ExecutionState.COMPLETED
_ERROR = ExecutionState.ERROR

#: Advisory histogram boundaries in seconds: function calls run from microseconds to seconds.
DEFAULT_BUCKETS: Tuple[float, ...] = (
    0.0001,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_ERRORS = ("failure", "interrupted")


#: The API's globals: while ``_METER_PROVIDER`` is None no provider is set (no SDK) and the
#: proxy instruments drop every measurement.  Read like the proxies decide; the public
#: ``get_meter_provider()`` also looks up an environment variable per call, too slow for the call
#: path.  Should a future API drop the global, the lookup gives False: measure as usual.
_METRICS_GLOBALS = vars(import_module("opentelemetry.metrics._internal"))


class Instruments:
    """The four instruments of one meter provider."""

    __slots__ = ("active", "calls", "duration", "retries")

    def __init__(self, meter: Any, buckets: Sequence[float]) -> None:
        self.duration = meter.create_histogram(
            "callpyback.call.duration",
            unit="s",
            description="Duration of calls observed by CallPyBack.",
            explicit_bucket_boundaries_advisory=list(buckets),
        )
        self.calls = meter.create_counter(
            "callpyback.calls", unit="{call}", description="Observed calls, by outcome."
        )
        self.retries = meter.create_counter(
            "callpyback.call.retries",
            unit="{retry}",
            description="Attempts after the first, made by retrying error handlers.",
        )
        self.active = meter.create_up_down_counter(
            "callpyback.calls.active", unit="{call}", description="Observed calls in flight."
        )


_lock = threading.Lock()
_by_provider: weakref.WeakKeyDictionary[Any, Instruments] = weakref.WeakKeyDictionary()
_by_id: Dict[int, Tuple[Any, Instruments]] = {}  # providers that cannot be weakly referenced


def instruments_for(provider: Any = None, buckets: Optional[Sequence[float]] = None) -> Instruments:
    """The instruments of ``provider`` (default: the global meter provider), created once.

    The bucket advice of the first caller wins: an instrument exists once per provider.
    """
    if provider is None:
        provider = metrics.get_meter_provider()
    with _lock:
        try:
            found = _by_provider.get(provider)
        except TypeError:
            pair = _by_id.get(id(provider))
            found = pair[1] if pair is not None and pair[0] is provider else None
        if found is None:
            meter = provider.get_meter("callpyback_opentelemetry", __version__)
            found = Instruments(meter, buckets or DEFAULT_BUCKETS)
            try:
                _by_provider[provider] = found
            except TypeError:
                _by_id[id(provider)] = (provider, found)
        return found


class OTelMetricsObserver(BaseObserver):
    """Records each call's duration, outcome, retries and in-flight count (see module doc).

    ``meter_provider``: default the global one (a provider set later is followed by the API's
    proxy).  ``buckets``: advisory histogram boundaries in seconds.
    """

    def __init__(
        self,
        *,
        buckets: Optional[Sequence[float]] = None,
        meter_provider: Any = None,
        priority: int = 0,
        name: Optional[str] = None,
        background: bool = False,
    ) -> None:
        super().__init__(priority=priority, name=name or "otel.metrics", background=background)
        self.states = frozenset({_PRE, _DONE, _ERROR})
        if buckets is not None:
            values = list(buckets)
            if (
                not values
                or any(
                    isinstance(b, bool) or not isinstance(b, (int, float)) or b < 0 for b in values
                )
                or any(a >= b for a, b in zip(values, values[1:]))
            ):
                raise ConfigurationError(
                    f"otel.metrics buckets must be strictly increasing seconds, got {buckets!r}"
                )
        self.instruments = instruments_for(meter_provider, buckets)
        self._global = meter_provider is None
        self._attrs: Dict[Any, Dict[str, Any]] = {}

    def _attributes(self, info: Any, outcome: Optional[str], exc: Any) -> Dict[str, Any]:
        kind = error_type(exc) if outcome in _ERRORS and exc is not None else None
        key = (info, outcome, kind)
        attrs = self._attrs.get(key)
        if attrs is None:
            attrs = {CODE_FUNCTION_NAME: function_name(info)}
            if outcome is not None:
                attrs["callpyback.outcome"] = outcome
            if kind is not None:
                attrs[ERROR_TYPE] = kind
            self._attrs[key] = attrs
        return attrs

    def notify(self) -> Any:
        """The fast path, asked first: with no SDK there is nothing to record (and no context
        is built for us); otherwise ask for the context (``update``)."""
        if self._global and _METRICS_GLOBALS.get("_METER_PROVIDER", False) is None:
            return None
        return NEEDS_CONTEXT

    def update(self, context: Any) -> None:
        info = context.function_info
        inst = self.instruments
        if context.state is _PRE:
            inst.active.add(1, self._attributes(info, None, None))
            return
        inst.active.add(-1, self._attributes(info, None, None))
        # In the call's span context when otel.span runs too: exemplars point at the span.
        otel_ctx = None
        call = context.metadata.get(SPAN_KEY)
        if call is not None:
            otel_ctx = call.context
            if otel_ctx is None and call.span is not None:
                otel_ctx = trace.set_span_in_context(call.span)
        outcome = context.outcome
        attrs = self._attributes(info, outcome, context.exception)
        inst.duration.record(context.execution_time or 0.0, attrs, context=otel_ctx)
        inst.calls.add(1, attrs, context=otel_ctx)
        attempt = context.attempt or 1
        if attempt > 1:
            inst.retries.add(attempt - 1, self._attributes(info, None, None), context=otel_ctx)
