"""The plugin itself: what the ``callpyback`` entry point ``otel`` points at.

It registers the observers ``otel.span`` and ``otel.metrics`` and the ``[otel]`` table of
``callpyback.toml``.  Nothing here imports OpenTelemetry: discovery (``callpyback plugins``,
``callpyback check``) stays cheap, and the factories import the observers when one is built.
"""

from __future__ import annotations

import string
from typing import Any, List, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from callpyback.hookspecs import hookimpl

#: The callpyback versions this plugin works with; callpyback refuses the plugin otherwise.
CALLPYBACK_REQUIRES = ">=3,<4"

#: The fields a span-name template may use.
NAME_FIELDS = ("module", "qualname", "name", "target", "pipeline")


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


def _identifiers(values: List[str], what: str) -> List[str]:
    bad = [v for v in values if not v.isidentifier()]
    if bad:
        raise ValueError(f"{what} must be parameter names (identifiers), got {bad!r}")
    return values


class SpanOptions(_Options):
    """Options of ``otel.span``."""

    name_template: Optional[str] = Field(
        default=None,
        description="The span name, e.g. '{module}.{qualname}' (the default for functions; "
        "an integration's calls default to their target).",
    )
    record_arguments: List[str] = Field(
        default_factory=list, description="Arguments recorded as callpyback.argument.<name>."
    )
    redact: List[str] = Field(
        default_factory=list, description="Argument names to redact, on top of the defaults."
    )
    record_result: bool = False
    min_duration: float = Field(
        default=0.0, ge=0, description="Seconds; a call shorter than this gets no span."
    )
    baggage: List[str] = Field(
        default_factory=list,
        description="Baggage keys copied onto the span as attributes (an allow-list).",
    )
    priority: int = 0
    name: Optional[str] = None
    background: bool = Field(
        default=False,
        description="Must stay false: the span is made current on the caller's thread.",
    )

    @field_validator("name_template")
    @classmethod
    def _template(cls, value: Optional[str]) -> Optional[str]:
        if value is None:
            return value
        check_template(value)
        return value

    @field_validator("record_arguments")
    @classmethod
    def _arguments(cls, value: List[str]) -> List[str]:
        return _identifiers(value, "record_arguments")

    @field_validator("background")
    @classmethod
    def _foreground(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                "otel.span cannot run in the background: its span is made current on the "
                "caller's thread while the function body runs (background observers see a "
                "snapshot on a worker thread, after the call); remove background = true"
            )
        return value


def check_template(template: str) -> None:
    """Raise ``ValueError`` unless ``template`` is a format string over :data:`NAME_FIELDS`."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(
            f"name_template {template!r} is not a valid format string: {exc}"
        ) from None
    unknown = sorted({f for f in fields if f not in NAME_FIELDS})
    if unknown:
        raise ValueError(
            f"name_template {template!r} uses unknown field(s) {unknown}; allowed: "
            + ", ".join("{" + f + "}" for f in NAME_FIELDS)
        )
    if not template.strip():
        raise ValueError("name_template must not be empty")


class MetricsOptions(_Options):
    """Options of ``otel.metrics``."""

    buckets: Optional[List[float]] = Field(
        default=None,
        description="Advisory histogram bucket boundaries in seconds (strictly increasing).",
    )
    priority: int = 0
    name: Optional[str] = None
    background: bool = False

    @field_validator("buckets")
    @classmethod
    def _increasing(cls, value: Optional[List[float]]) -> Optional[List[float]]:
        if value is not None:
            if not value or any(b < 0 for b in value):
                raise ValueError("buckets must be a non-empty list of non-negative seconds")
            if any(a >= b for a, b in zip(value, value[1:])):
                raise ValueError(f"buckets must be strictly increasing, got {value!r}")
        return value


class OtelTable(_Options):
    """The ``[otel]`` table: optional SDK set-up, and trace continuation from the environment."""

    sdk: bool = Field(
        default=False,
        description="Set up the OpenTelemetry SDK with OTLP/HTTP exporters at start-up "
        "(needs callpyback-opentelemetry[sdk]); skipped if a tracer provider is already set.",
    )
    service_name: Optional[str] = Field(
        default=None, description="Resource service.name (else OTEL_SERVICE_NAME)."
    )
    endpoint: Optional[str] = Field(
        default=None,
        description="OTLP/HTTP base URL, e.g. http://127.0.0.1:4318 (else "
        "OTEL_EXPORTER_OTLP_ENDPOINT).",
    )
    metrics: bool = Field(default=True, description="With sdk: also export metrics.")
    shutdown_timeout: float = Field(
        default=3.0, gt=0, description="Seconds the exporters may take to flush at exit."
    )
    trace_from_environment: bool = Field(
        default=False,
        description="Continue the trace a parent process passed in TRACEPARENT/BAGGAGE.",
    )


def _span(**options: Any) -> Any:
    from .spans import OTelSpanObserver

    return OTelSpanObserver(**options)


def _metrics(**options: Any) -> Any:
    from .metrics import OTelMetricsObserver

    return OTelMetricsObserver(**options)


@hookimpl
def callpyback_register_components(registry: Any) -> None:
    registry.observer(
        "otel.span",
        _span,
        options=SpanOptions,
        description="One OpenTelemetry span per call, current while the function body runs.",
    )
    registry.observer(
        "otel.metrics",
        _metrics,
        options=MetricsOptions,
        description="OpenTelemetry call duration, calls by outcome, retries and calls in flight.",
    )
    registry.table(
        "otel",
        OtelTable,
        description="OpenTelemetry SDK set-up and trace continuation for `callpyback run`.",
    )


@hookimpl
def callpyback_install(config: Any) -> None:
    table: Optional[OtelTable] = config.tables.get("otel")
    if table is None:
        return
    if table.sdk:
        from .sdk import setup_sdk

        setup_sdk(
            service_name=table.service_name,
            endpoint=table.endpoint,
            metrics=table.metrics,
            shutdown_timeout=table.shutdown_timeout,
        )
    if table.trace_from_environment:
        from .propagation import attach_environment_context

        attach_environment_context()
