"""CallPyBack: observe function calls declaratively, at almost no cost per call.

This module only re-exports.  Heavy parts (pydantic config, pluggy plugins, the import hook,
built-in observers and error handlers) are imported on first use, so ``import callpyback`` stays
cheap.
"""

from __future__ import annotations

from typing import Any

from ._context import ExecutionContext, ExecutionFailure, ExecutionResult, FunctionInfo
from ._decorator import CallPyBack, callpyback, instrumented_by
from ._handling import Decision, DefaultErrorHandler, Raise, Recover, Retry
from .errors import (
    CallPyBackError,
    CallPyBackWarning,
    ConfigurationError,
    ObserverDisabledWarning,
    ObserverFailureWarning,
)
from .observers import (
    BaseObserver,
    CallbackObserver,
    create_callback_observer,
    on_call,
    on_completion,
    on_error,
    on_failure,
    on_success,
)
from .states import ExecutionState, Phase
from .time_sources import MockTimeSource, SystemTimeSource

# name -> submodule that defines it; resolved on first attribute access.
_LAZY = {
    # built-in observers
    "MetricsObserver": "observers",
    "LoggingObserver": "observers",
    "TimingObserver": "observers",
    "AlertingObserver": "observers",
    "AlertRule": "observers",
    "ConcurrencyObserver": "observers",
    "AuditObserver": "observers",
    "Redactor": "observers",
    # variable extraction
    "NoOpVariableExtractor": "extractors",
    "TracingVariableExtractor": "extractors",
    "NullVariable": "extractors",
    # error handling
    "ErrorHandler": "handlers",
    "ErrorHandlerBuilder": "handlers",
    "RetryHandler": "handlers",
    "CircuitBreakerHandler": "handlers",
    "CircuitOpenError": "handlers",
    "TimeoutHandler": "handlers",
    "ExceptionMappingHandler": "handlers",
    "LoggingErrorHandler": "handlers",
    "ConditionalErrorHandler": "handlers",
    "FallbackHandler": "handlers",
    "CallTimeoutError": "handlers",
    "ReraiseHandler": "handlers",
    # plugins
    "hookimpl": "hookspecs",
    "register_plugin": "plugins",
    # auto-instrumentation (import hook)
    "install": "autoinstrument",
    "uninstall": "autoinstrument",
    # background observers
    "flush": "_background",
    "shutdown": "_background",
    # declarative configuration
    "Config": "config",
    "ConfigError": "config",
    "configure": "config",
    "load_config": "config",
}

# A literal list, so type checkers see the re-exports; a test keeps it in step with _LAZY.
__all__ = [
    "AlertRule",
    "AlertingObserver",
    "AuditObserver",
    "BaseObserver",
    "CallPyBack",
    "CallPyBackError",
    "CallPyBackWarning",
    "CallTimeoutError",
    "CallbackObserver",
    "CircuitBreakerHandler",
    "CircuitOpenError",
    "ConcurrencyObserver",
    "ConditionalErrorHandler",
    "Config",
    "ConfigError",
    "ConfigurationError",
    "Decision",
    "DefaultErrorHandler",
    "ErrorHandler",
    "ErrorHandlerBuilder",
    "ExceptionMappingHandler",
    "ExecutionContext",
    "ExecutionFailure",
    "ExecutionResult",
    "ExecutionState",
    "FallbackHandler",
    "FunctionInfo",
    "LoggingErrorHandler",
    "LoggingObserver",
    "MetricsObserver",
    "MockTimeSource",
    "NoOpVariableExtractor",
    "NullVariable",
    "ObserverDisabledWarning",
    "ObserverFailureWarning",
    "Phase",
    "Raise",
    "Recover",
    "Redactor",
    "ReraiseHandler",
    "Retry",
    "RetryHandler",
    "SystemTimeSource",
    "TimeoutHandler",
    "TimingObserver",
    "TracingVariableExtractor",
    "__version__",
    "callpyback",
    "configure",
    "create_callback_observer",
    "flush",
    "hookimpl",
    "install",
    "instrumented_by",
    "load_config",
    "on_call",
    "on_completion",
    "on_error",
    "on_failure",
    "on_success",
    "register_plugin",
    "shutdown",
    "uninstall",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        # Lazy: importlib.metadata is slow to import and most programs never ask.
        try:
            from importlib.metadata import version
        except ImportError:  # pragma: no cover - Python < 3.8 backport path
            from importlib_metadata import version  # type: ignore[no-redef,import-not-found]
        return version("callpyback")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'callpyback' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"callpyback.{module}"), name)
    globals()[name] = value
    return value
