"""Fixtures for the OpenTelemetry plugin's tests: the real SDK, in-memory exporters, and the
observers built through the installed distribution's entry point, as a user's config gets them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.test.globals_test import reset_metrics_globals, reset_trace_globals

from callpyback import plugins

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers next to the tests


@pytest.fixture(autouse=True)
def _fresh_discovery(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(plugins.ALLOW_ENV, raising=False)
    monkeypatch.delenv(plugins.DENY_ENV, raising=False)
    plugins.reset()
    yield
    plugins.reset()


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """A global SDK tracer provider exporting synchronously to memory (reset afterwards)."""
    reset_trace_globals()
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    yield spans
    provider.shutdown()
    reset_trace_globals()


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    """A global SDK meter provider read in memory (reset afterwards)."""
    reset_metrics_globals()
    metric_reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[metric_reader])
    metrics.set_meter_provider(provider)
    yield metric_reader
    provider.shutdown()
    reset_metrics_globals()


@pytest.fixture
def create() -> Callable[..., Any]:
    """``create(kind, name, **options)``: build a component by its registered name."""

    def build(kind: str, name: str, **options: Any) -> Any:
        return plugins.get_registry().create(kind, name, options)

    return build


@pytest.fixture
def span_observer(create: Callable[..., Any], exporter: InMemorySpanExporter) -> Any:
    """``otel.span`` with default options, from the registry, on the global provider."""
    return create("observer", "otel.span")
