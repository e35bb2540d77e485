"""callpyback-opentelemetry: CallPyBack's observations as OpenTelemetry spans and metrics.

Use the observers by name in ``callpyback.toml`` (``otel.span``, ``otel.metrics``, and the
``[otel]`` table) once the package is installed, or build them in code from here.  Names are
imported on first use: discovering the plugin imports only its ``plugin`` module, and no
OpenTelemetry package.
"""

from __future__ import annotations

from typing import Any

__version__ = "1.0.0"

_LAZY = {
    "ATTEMPT_EVENT": "spans",
    "CallSpan": "spans",
    "OTelSpanObserver": "spans",
    "SPAN_KEY": "spans",
    "OTelMetricsObserver": "metrics",
    "EnvironmentGetter": "propagation",
    "EnvironmentSetter": "propagation",
    "attach_environment_context": "propagation",
    "child_environment": "propagation",
    "context_from_environment": "propagation",
    "SdkSetup": "sdk",
    "setup_sdk": "sdk",
}

__all__ = sorted(["__version__", *_LAZY])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
