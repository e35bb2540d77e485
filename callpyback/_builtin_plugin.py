"""The core as its own first plugin: registers the built-in components under short names.

It goes through the same ``callpyback_register_components`` hook as any third-party plugin, but
:mod:`callpyback.plugins` registers it directly (not through an entry point) so that it can be
neither missing nor denied.  Factories import their module on first use: listing the registry
does not import every built-in observer.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any, Callable, Dict, Tuple

from . import _builtin_options as o
from .hookspecs import hookimpl

if TYPE_CHECKING:
    from .plugins import ComponentRegistrar

__all__ = ["callpyback_install", "callpyback_register_components", "callpyback_uninstall"]


def _lazy(module: str, attr: str, adapt: Callable[..., Any] | None = None) -> Callable[..., Any]:
    """A factory importing ``module.attr`` when first called, then ``adapt(cls, **options)``."""

    def factory(**options: Any) -> Any:
        cls = getattr(importlib.import_module(module), attr)
        if adapt is not None:
            return adapt(cls, **options)
        return cls(**options)

    factory.__name__ = attr
    factory.__qualname__ = f"{module}.{attr}"
    factory.__doc__ = f"Build {module}.{attr} from validated options."
    return factory


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _exceptions_as_tuples(cls: Any, **options: Any) -> Any:
    return cls(
        **{k: _tuple(v) if k in ("exceptions", "exclude") else v for k, v in options.items()}
    )


def _default_handler(cls: Any, *, value: Any, exceptions: Any, name: Any) -> Any:
    return cls(value, tuple(exceptions), name=name)


def _timeout(cls: Any, *, seconds: float, name: Any) -> Any:
    return cls(seconds, name=name)


def _mapping(cls: Any, *, raise_as: Any, return_values: Any, name: Any) -> Any:
    from ._builtin_options import resolve_exception

    mapping: Dict[Any, Any] = {resolve_exception(k): v for k, v in return_values.items()}
    for source, target in raise_as.items():
        mapping[resolve_exception(source)] = resolve_exception(target)
    return cls(mapping, name=name)


def _with_redactor(cls: Any, *, redact: Any, **options: Any) -> Any:
    from .observers.redaction import Redactor

    return cls(redactor=Redactor(keys=redact) if redact else None, **options)


def _alerting(cls: Any, *, rules: Any, **options: Any) -> Any:
    from .observers.alerting import AlertRule

    built = []
    for rule in rules:
        fields = dict(rule)
        name, kind, threshold = fields.pop("name"), fields.pop("kind"), fields.pop("threshold")
        built.append(AlertRule(name, kind, threshold, **fields))
    return cls(built, **options)


def _quantiles(cls: Any, *, quantiles: Any, **options: Any) -> Any:
    return cls(quantiles=tuple(quantiles), **options)


#: (kind, name, module, class, options model, adapter, description); each registered only if its
#: module exists, which is checked without importing it.
_BUILTINS: Tuple[Tuple[str, str, str, str, type, Any, str], ...] = (
    (
        "time_source",
        "system",
        "callpyback.time_sources",
        "SystemTimeSource",
        o.NoOptions,
        None,
        "The real clocks (time.time, time.perf_counter, time.sleep).",
    ),
    (
        "time_source",
        "mock",
        "callpyback.time_sources",
        "MockTimeSource",
        o.MockTimeOptions,
        None,
        "A manual clock for tests; sleep advances it instead of blocking.",
    ),
    (
        "variable_extractor",
        "tracing",
        "callpyback.extractors",
        "TracingVariableExtractor",
        o.TracingOptions,
        None,
        "Capture named locals of each call (sys.monitoring or profile hook).",
    ),
    (
        "variable_extractor",
        "noop",
        "callpyback.extractors",
        "NoOpVariableExtractor",
        o.NoOptions,
        None,
        "Capture nothing.",
    ),
    (
        "error_handler",
        "default",
        "callpyback._handling",
        "DefaultErrorHandler",
        o.DefaultHandlerOptions,
        _default_handler,
        "Recover the listed exceptions with a value.",
    ),
    (
        "error_handler",
        "fallback",
        "callpyback.handlers",
        "FallbackHandler",
        o.FallbackOptions,
        _exceptions_as_tuples,
        "Recover matching failures with a value; put it last.",
    ),
    (
        "error_handler",
        "retry",
        "callpyback.handlers",
        "RetryHandler",
        o.RetryOptions,
        _exceptions_as_tuples,
        "Retry with jittered exponential back-off and an explicit stop.",
    ),
    (
        "error_handler",
        "circuit_breaker",
        "callpyback.handlers",
        "CircuitBreakerHandler",
        o.CircuitBreakerOptions,
        _exceptions_as_tuples,
        "Fail fast while a dependency keeps failing (closed, open, half-open).",
    ),
    (
        "error_handler",
        "timeout",
        "callpyback.handlers",
        "TimeoutHandler",
        o.TimeoutOptions,
        _timeout,
        "Fail an attempt that runs longer than the limit.",
    ),
    (
        "error_handler",
        "exception_mapping",
        "callpyback.handlers",
        "ExceptionMappingHandler",
        o.ExceptionMappingOptions,
        _mapping,
        "Translate exceptions to others, or to values.",
    ),
    (
        "error_handler",
        "logging_handler",
        "callpyback.handlers",
        "LoggingErrorHandler",
        o.LoggingHandlerOptions,
        _exceptions_as_tuples,
        "Log matching failures and pass them on.",
    ),
    (
        "error_handler",
        "log",
        "callpyback.handlers",
        "LoggingErrorHandler",
        o.LoggingHandlerOptions,
        _exceptions_as_tuples,
        "Alias of logging_handler.",
    ),
    (
        "error_handler",
        "reraise",
        "callpyback.handlers",
        "ReraiseHandler",
        o.ReraiseOptions,
        _exceptions_as_tuples,
        "Stop the chain for matching exceptions: re-raise them.",
    ),
    (
        "observer",
        "metrics",
        "callpyback.observers.metrics",
        "MetricsObserver",
        o.MetricsOptions,
        _quantiles,
        "Call counts, outcomes and latency quantiles per function.",
    ),
    (
        "observer",
        "logging",
        "callpyback.observers.logging",
        "LoggingObserver",
        o.LoggingOptions,
        _with_redactor,
        "One log line per call outcome.",
    ),
    (
        "observer",
        "timing",
        "callpyback.observers.timing",
        "TimingObserver",
        o.TimingOptions,
        _quantiles,
        "Latency quantiles and slow-call detection.",
    ),
    (
        "observer",
        "alerting",
        "callpyback.observers.alerting",
        "AlertingObserver",
        o.AlertingOptions,
        _alerting,
        "Error-rate and latency alerts over a sliding window.",
    ),
    (
        "observer",
        "concurrency",
        "callpyback.observers.concurrency",
        "ConcurrencyObserver",
        o.ConcurrencyOptions,
        None,
        "Detect overlapping calls that must not run concurrently.",
    ),
    (
        "observer",
        "audit",
        "callpyback.observers.audit",
        "AuditObserver",
        o.AuditOptions,
        _with_redactor,
        "Append-only JSON-lines audit trail of calls.",
    ),
)


def _exists(module: str) -> bool:
    # find_spec on a submodule imports its parent package, which for these is cheap.
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


@hookimpl
def callpyback_register_components(registry: ComponentRegistrar) -> None:
    for kind, name, module, attr, options, adapt, description in _BUILTINS:
        if _exists(module):
            registry.add(
                kind, name, _lazy(module, attr, adapt), options=options, description=description
            )
    # The core's own tables: the run report and the exporters `callpyback run` starts.
    from .report._settings import ExportTable, ReportTable

    registry.table("report", ReportTable, description="the run report callpyback run writes")
    registry.table("export", ExportTable, description="exporters callpyback run starts")


@hookimpl
def callpyback_install(config: Any) -> None:
    from .report import _runtime

    _runtime.installed(config)


@hookimpl
def callpyback_uninstall() -> None:
    from .report import _runtime

    _runtime.uninstalled()
