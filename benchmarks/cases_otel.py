"""The OpenTelemetry plugin (group "otel"): otel.span side by side with OpenTelemetry's own
``start_as_current_span`` decorator on the same SDK provider, and both observers with no SDK
configured against the empty pipeline.

    python benchmarks/overhead.py -k otel

The SDK provider has no span processor: both sides create, attribute and end real SDK spans,
and nothing is exported (an exporter's cost is the same on both sides and not ours).
"""

from __future__ import annotations

from typing import Any, Callable

from _harness import Case, atarget, direct, target

from callpyback import CallPyBack


def _provider() -> Any:
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider()


def _otel_decorated(kind: str) -> Callable[[], Any]:
    """The baseline: ``@tracer.start_as_current_span(name)`` around the same function."""
    tracer = _provider().get_tracer("bench")
    fn = atarget if kind == "async" else target
    return direct(tracer.start_as_current_span("target")(fn), 1, kind=kind)


def _otel_same_span() -> Callable[[], Any]:
    """OTel's decorator producing the span otel.span produces: the same static code.*
    attributes at the start and the outcome attributes at the end."""
    from callpyback_opentelemetry.spans import function_name
    from opentelemetry import trace

    from callpyback import FunctionInfo

    info = FunctionInfo(target, "function")
    attributes = {
        "code.function.name": function_name(info),
        "code.file.path": info.file_path,
        "code.line.number": info.line_number,
    }
    tracer = _provider().get_tracer("bench")

    def same(x: int) -> int:
        value = target(x)
        trace.get_current_span().set_attributes(
            {"callpyback.outcome": "success", "callpyback.attempts": 1}
        )
        return value

    return direct(tracer.start_as_current_span("target", attributes=attributes)(same), 1)


def _span(kind: str, **options: Any) -> Callable[[], Callable[[], Any]]:
    def build() -> Callable[[], Any]:
        from callpyback_opentelemetry import OTelSpanObserver

        observer = OTelSpanObserver(tracer_provider=_provider(), **options)
        fn = atarget if kind == "async" else target
        return direct(CallPyBack(observers=[observer])(fn), 1, kind=kind)

    return build


def _empty() -> Callable[[], Any]:
    return direct(CallPyBack()(target), 1)


def _no_sdk(which: str) -> Callable[[], Callable[[], Any]]:
    """No provider set: the API's proxy, as in a program that never configured OpenTelemetry."""

    def build() -> Callable[[], Any]:
        from callpyback_opentelemetry import OTelMetricsObserver, OTelSpanObserver
        from opentelemetry import trace

        assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        observers = {
            "span": [OTelSpanObserver()],
            "metrics": [OTelMetricsObserver()],
            "both": [OTelSpanObserver(), OTelMetricsObserver()],
        }[which]
        return direct(CallPyBack(observers=observers)(target), 1)

    return build


class _AroundFloor:
    """The engine's floor for otel.span's shape: enter/exit hooks and PRE/COMPLETED updates
    that do nothing (what any observer making something current while the body runs costs)."""

    from callpyback import ExecutionState as _S

    states = frozenset({_S.PRE_EXECUTION, _S.COMPLETED})
    priority = 0
    name = "around-floor"

    def update(self, context: Any) -> None:
        return None

    def enter(self, context: Any) -> Any:
        return None

    def exit(self, context: Any, token: Any) -> None:
        return None


def _around_floor() -> Callable[[], Any]:
    return direct(CallPyBack(observers=[_AroundFloor()])(target), 1)


def _metrics_sdk() -> Callable[[], Any]:
    from callpyback_opentelemetry import OTelMetricsObserver
    from opentelemetry.sdk.metrics import MeterProvider

    observer = OTelMetricsObserver(meter_provider=MeterProvider())
    return direct(CallPyBack(observers=[observer])(target), 1)


CASES = [
    Case(
        "otel.span vs start_as_current_span (SDK)",
        _span("sync"),
        base_build=lambda: _otel_decorated("sync"),
        target=1.0,
        group="otel",
        note="ratio to OTel's own decorator",
    ),
    Case(
        "otel.span vs start_as_current_span (SDK, async)",
        _span("async"),
        kind="async",
        base_build=lambda: _otel_decorated("async"),
        target=1.0,
        group="otel",
        note="ratio to OTel's own decorator",
    ),
    Case(
        "otel.span vs start_as_current_span making the same span",
        _span("sync"),
        base_build=_otel_same_span,
        group="otel",
        note="same attributes on both sides",
    ),
    Case(
        "otel.span record_arguments=['x'] vs start_as_current_span",
        _span("sync", record_arguments=["x"]),
        base_build=lambda: _otel_decorated("sync"),
        group="otel",
        note="ratio to OTel's own decorator",
    ),
    Case(
        "otel.span, no SDK, vs empty pipeline",
        _no_sdk("span"),
        base_build=_empty,
        group="otel",
        note="ratio to CallPyBack() with no observers",
    ),
    Case(
        "otel.span, no SDK, vs the no-op enter/exit floor",
        _no_sdk("span"),
        base_build=_around_floor,
        target=1.25,
        group="otel",
        note="what the plugin adds to the engine's own cost",
    ),
    Case(
        "floor: no-op enter/exit observer vs empty pipeline",
        _around_floor,
        base_build=_empty,
        group="otel",
        note="the engine's own cost for otel.span's shape",
    ),
    Case(
        "otel.metrics, no SDK, vs empty pipeline",
        _no_sdk("metrics"),
        base_build=_empty,
        target=7.0,
        group="otel",
        note="ratio to CallPyBack() with no observers",
    ),
    Case(
        "otel.span + otel.metrics, no SDK, vs empty pipeline",
        _no_sdk("both"),
        base_build=_empty,
        group="otel",
        note="ratio to CallPyBack() with no observers",
    ),
    Case("otel.metrics (SDK, no reader)", _metrics_sdk, group="otel"),
]
