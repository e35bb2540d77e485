"""Observers: the base class, the callback factories and the built-in observers."""

from __future__ import annotations

from typing import Any

from ._base import (
    NEEDS_CONTEXT,
    BaseObserver,
    CallbackObserver,
    create_callback_observer,
    on_call,
    on_completion,
    on_error,
    on_failure,
    on_success,
)

# Built-in observers live in their own modules and are imported on first use.
_LAZY = {
    "MetricsObserver": "metrics",
    "LoggingObserver": "logging",
    "TimingObserver": "timing",
    "AlertingObserver": "alerting",
    "AlertRule": "alerting",
    "Alert": "alerting",
    "ConcurrencyObserver": "concurrency",
    "Overlap": "concurrency",
    "CallIdentity": "concurrency",
    "AuditObserver": "audit",
    "Redactor": "redaction",
    "SlowCall": "timing",
}

__all__ = [
    "NEEDS_CONTEXT",
    "Alert",
    "AlertRule",
    "AlertingObserver",
    "AuditObserver",
    "BaseObserver",
    "CallIdentity",
    "CallbackObserver",
    "ConcurrencyObserver",
    "LoggingObserver",
    "MetricsObserver",
    "Overlap",
    "Redactor",
    "SlowCall",
    "TimingObserver",
    "create_callback_observer",
    "on_call",
    "on_completion",
    "on_error",
    "on_failure",
    "on_success",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
