"""A minimal OpenTelemetry SDK set-up with OTLP/HTTP exporters and a bounded shutdown at exit.

Needs the ``sdk`` extra (``pip install "callpyback-opentelemetry[sdk]"``).  Use it when nothing
else configures OpenTelemetry (``opentelemetry-instrument`` and ``opentelemetry-distro`` do
it from ``OTEL_*`` variables; then leave ``[otel] sdk`` off).

Why the shutdown is ours: with the collector unreachable, the OTLP exporter retries each batch
until its own deadline (``OTEL_EXPORTER_OTLP_TIMEOUT``, 10 s by default) and the SDK's exit
hook waits for it, so a short program can hang for many seconds at exit.  Here the providers
are shut down at exit on a helper thread that is given ``shutdown_timeout`` seconds; then the
exporters are told to stop retrying, and the process exits.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
from typing import Any, List, Optional

__all__ = ["SdkSetup", "setup_sdk"]

_log = logging.getLogger("callpyback_opentelemetry")


class SdkSetup:
    """What :func:`setup_sdk` installed: the providers and their exporters."""

    def __init__(
        self, tracer_provider: Any, meter_provider: Any, exporters: List[Any], timeout: float
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.exporters = exporters
        self.timeout = timeout
        self._done = False

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Flush and shut down within ``timeout`` seconds; True if it finished in time."""
        if self._done:
            return True
        self._done = True
        limit = self.timeout if timeout is None else timeout

        def stop() -> None:
            for provider in (self.tracer_provider, self.meter_provider):
                if provider is not None:
                    try:
                        provider.shutdown()
                    except Exception:  # pragma: no cover - the SDK logs its own failures
                        _log.exception("OpenTelemetry provider shutdown failed")

        worker = threading.Thread(target=stop, name="callpyback-otel-shutdown", daemon=True)
        worker.start()
        worker.join(limit)
        if not worker.is_alive():
            return True
        # Still retrying against an unreachable collector: stop the exporters' retries.
        for exporter in self.exporters:
            with contextlib.suppress(Exception):
                exporter.shutdown()
        worker.join(0.5)
        _log.warning(
            "OpenTelemetry exporters did not finish within %.1f s at shutdown; unsent "
            "telemetry was dropped (is the collector reachable?)",
            limit,
        )
        return False


_installed: Optional[SdkSetup] = None


def _mend_empty_propagation() -> None:
    """With ``OTEL_PROPAGATORS=none``, OpenTelemetry's empty composite propagator returns None
    from ``extract()`` (it returns the context it was given, and none was), and server
    instrumentations such as the WSGI middleware then attach None as the current context and
    fail on every request.  Replace it by one that propagates nothing and returns a context."""
    from opentelemetry import propagate
    from opentelemetry.context import Context
    from opentelemetry.propagators.textmap import TextMapPropagator

    if propagate.extract({}) is not None:
        return

    class NoPropagation(TextMapPropagator):
        def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Any:
            return Context() if context is None else context

        def inject(self, carrier: Any, context: Any = None, setter: Any = None) -> None:
            return None

        @property
        def fields(self) -> set:  # type: ignore[type-arg]
            return set()

    propagate.set_global_textmap(NoPropagation())


def setup_sdk(
    service_name: Optional[str] = None,
    endpoint: Optional[str] = None,
    *,
    metrics: bool = True,
    shutdown_timeout: float = 3.0,
    span_processor: Any = None,
    metric_reader: Any = None,
) -> Optional[SdkSetup]:
    """Set the global tracer (and meter) provider, exporting over OTLP/HTTP.

    ``endpoint``: the base URL (``http://127.0.0.1:4318``); without it the exporters read
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (and the per-signal variables).  ``service_name``: else
    ``OTEL_SERVICE_NAME``.  ``span_processor`` / ``metric_reader`` replace the OTLP ones (tests,
    other exporters).  Nothing is done (None is returned) if a tracer provider is already set,
    for example by ``opentelemetry-instrument``.  At exit, everything is flushed within
    ``shutdown_timeout`` seconds.
    """
    global _installed
    from opentelemetry import metrics as metrics_api
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider

    if _installed is not None:
        return _installed
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        _log.info("a tracer provider is already set; callpyback does not set up the SDK")
        return None
    _mend_empty_propagation()
    resource = Resource.create({SERVICE_NAME: service_name} if service_name else {})
    base = endpoint.rstrip("/") if endpoint else None
    exporters: List[Any] = []
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    if span_processor is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        span_exporter = OTLPSpanExporter(endpoint=f"{base}/v1/traces" if base else None)
        exporters.append(span_exporter)
        span_processor = BatchSpanProcessor(span_exporter)
    tracer_provider.add_span_processor(span_processor)
    trace.set_tracer_provider(tracer_provider)
    meter_provider = None
    if metrics:
        from opentelemetry.sdk.metrics import MeterProvider

        if metric_reader is None:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            metric_exporter = OTLPMetricExporter(endpoint=f"{base}/v1/metrics" if base else None)
            exporters.append(metric_exporter)
            metric_reader = PeriodicExportingMetricReader(metric_exporter)
        meter_provider = MeterProvider(
            resource=resource, metric_readers=[metric_reader], shutdown_on_exit=False
        )
        metrics_api.set_meter_provider(meter_provider)
    _installed = SdkSetup(tracer_provider, meter_provider, exporters, shutdown_timeout)
    atexit.register(_installed.shutdown)
    return _installed
