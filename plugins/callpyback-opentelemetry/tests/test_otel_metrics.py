"""otel.metrics with the real SDK and an InMemoryMetricReader: names, units, attributes,
exemplars linked to the call's span, and one set of instruments per meter provider."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from callpyback import CallPyBack, MockTimeSource
from callpyback.handlers import RetryHandler

MODULE = __name__


def points(reader: InMemoryMetricReader) -> Dict[str, Tuple[str, List[Any]]]:
    """metric name -> (unit, data points)"""
    data = reader.get_metrics_data()
    found: Dict[str, Tuple[str, List[Any]]] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found[metric.name] = (metric.unit or "", list(metric.data.data_points))
    return found


def test_instruments_names_units_and_attributes(
    create: Callable[..., Any], reader: InMemoryMetricReader
) -> None:
    """Duration (s), calls by outcome, retries, active calls; error.type on failures only."""
    clock = MockTimeSource()
    observer = create("observer", "otel.metrics")
    tries: List[int] = []

    @CallPyBack(
        observers=[observer],
        time_source=clock,
        error_handlers=[RetryHandler(2, exceptions=(ConnectionError,), backoff=0.1, jitter=None)],
    )
    def fetch(fail: bool) -> str:
        clock.advance(0.25)
        tries.append(1)
        if fail:
            raise ValueError("bad")
        if len(tries) == 1:
            raise ConnectionError("once")
        return "ok"

    assert fetch(False) == "ok"  # one retry, then success
    with pytest.raises(ValueError):
        fetch(True)
    name = f"{MODULE}.{fetch.__qualname__}"
    got = points(reader)
    assert set(got) == {
        "callpyback.call.duration",
        "callpyback.calls",
        "callpyback.call.retries",
        "callpyback.calls.active",
    }
    unit, durations = got["callpyback.call.duration"]
    assert unit == "s"
    by_outcome = {p.attributes["callpyback.outcome"]: p for p in durations}
    assert dict(by_outcome["success"].attributes) == {
        "code.function.name": name,
        "callpyback.outcome": "success",
    }
    assert dict(by_outcome["failure"].attributes) == {
        "code.function.name": name,
        "callpyback.outcome": "failure",
        "error.type": "ValueError",
    }
    # both attempts (0.25 s each) and the 0.1 s wait between them (the mock clock's sleep)
    assert by_outcome["success"].sum == pytest.approx(0.6)
    assert by_outcome["failure"].count == 1
    calls = {p.attributes["callpyback.outcome"]: p.value for p in got["callpyback.calls"][1]}
    assert calls == {"success": 1, "failure": 1}
    (retries,) = got["callpyback.call.retries"][1]
    assert (dict(retries.attributes), retries.value) == ({"code.function.name": name}, 1)
    (active,) = got["callpyback.calls.active"][1]
    assert (dict(active.attributes), active.value) == ({"code.function.name": name}, 0)


def test_calls_in_flight(create: Callable[..., Any], reader: InMemoryMetricReader) -> None:
    """The up-down counter counts a call while it runs."""
    observer = create("observer", "otel.metrics")
    during: List[int] = []

    @CallPyBack(observers=[observer])
    def busy() -> None:
        (point,) = points(reader)["callpyback.calls.active"][1]
        during.append(point.value)

    busy()
    assert during == [1]
    assert points(reader)["callpyback.calls.active"][1][0].value == 0


def test_recovered_and_cancelled_carry_no_error_type(
    create: Callable[..., Any], reader: InMemoryMetricReader
) -> None:
    """Only failures and interruptions get error.type."""
    observer = create("observer", "otel.metrics")
    deco = CallPyBack(observers=[observer], default_return=None)

    @deco
    def recovered() -> None:
        raise RuntimeError("handled")

    @CallPyBack(observers=[observer])
    def rows() -> Any:
        yield 1
        yield 2

    recovered()
    gen = rows()
    next(gen)
    gen.close()
    attrs = [dict(p.attributes) for p in points(reader)["callpyback.calls"][1]]
    assert sorted(a["callpyback.outcome"] for a in attrs) == ["cancelled", "recovered"]
    assert not [a for a in attrs if "error.type" in a]


def test_exemplars_link_measurements_to_the_span(
    create: Callable[..., Any], exporter: InMemorySpanExporter
) -> None:
    """With otel.span in the same pipeline the duration's exemplar names the call's span."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    from callpyback_opentelemetry import OTelMetricsObserver

    span = create("observer", "otel.span")
    meter = OTelMetricsObserver(meter_provider=provider)

    @CallPyBack(observers=[span, meter])
    def traced() -> int:
        return 1

    traced()
    (finished,) = exporter.get_finished_spans()
    (point,) = points(reader)["callpyback.call.duration"][1]
    assert point.exemplars, "no exemplar recorded"
    exemplar = point.exemplars[0]
    assert (exemplar.trace_id, exemplar.span_id) == (
        finished.context.trace_id,  # type: ignore[union-attr]
        finished.context.span_id,  # type: ignore[union-attr]
    )
    provider.shutdown()


def test_instruments_are_created_once_per_meter_provider() -> None:
    """Two observers on one provider share the instruments; another provider gets its own."""
    from callpyback_opentelemetry import OTelMetricsObserver

    first, second = MeterProvider(), MeterProvider()
    a = OTelMetricsObserver(meter_provider=first)
    b = OTelMetricsObserver(meter_provider=first)
    c = OTelMetricsObserver(meter_provider=second)
    assert a.instruments is b.instruments
    assert a.instruments is not c.instruments
    first.shutdown()
    second.shutdown()


def test_bucket_advice_reaches_the_histogram(create: Callable[..., Any]) -> None:
    """buckets= becomes the histogram's explicit bucket boundaries."""
    from callpyback_opentelemetry import OTelMetricsObserver

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    observer = OTelMetricsObserver(meter_provider=provider, buckets=[0.1, 1.0])
    CallPyBack(observers=[observer])(lambda: None)()
    (point,) = points(reader)["callpyback.call.duration"][1]
    assert list(point.explicit_bounds) == [0.1, 1.0]
    provider.shutdown()
