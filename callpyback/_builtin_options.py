"""Pydantic options models of the built-in components (one model per registered name).

Each model forbids unknown keys, so a misspelt option in ``callpyback.toml`` is an error naming
the key.  Field names are what the config file uses; the factories in :mod:`._builtin_plugin`
translate them to constructor arguments.  Imported only when plugins are discovered.
"""

from __future__ import annotations

import builtins
import importlib
from typing import Any, Dict, List, Literal, Optional, Tuple, Type, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._handling import MISSING

__all__ = [
    "AlertRuleOptions",
    "AlertingOptions",
    "AuditOptions",
    "CircuitBreakerOptions",
    "ConcurrencyOptions",
    "DefaultHandlerOptions",
    "ExceptionMappingOptions",
    "FallbackOptions",
    "LoggingHandlerOptions",
    "LoggingOptions",
    "MetricsOptions",
    "MockTimeOptions",
    "NoOptions",
    "ObserverOptions",
    "Options",
    "ReraiseOptions",
    "RetryOptions",
    "TimeoutOptions",
    "TimingOptions",
    "TracingOptions",
    "resolve_exception",
    "resolve_exceptions",
]


class Options(BaseModel):
    """Base of every built-in options model: unknown keys are errors."""

    # defer_build: a schema is compiled when a component is first validated, not at discovery.
    model_config = ConfigDict(
        extra="forbid", arbitrary_types_allowed=True, validate_default=True, defer_build=True
    )


class NoOptions(Options):
    """For components that take no options."""


def resolve_exception(name: Any) -> Type[BaseException]:
    """``"ValueError"`` or ``"package.module.Error"`` / ``"package.module:Error"`` -> the class."""
    if isinstance(name, type) and issubclass(name, BaseException):
        return name
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"expected an exception class name such as 'ValueError', got {name!r}")
    text = name.strip()
    if ":" in text:
        module_name, _, attr = text.partition(":")
    elif "." in text:
        module_name, _, attr = text.rpartition(".")
    else:
        module_name, attr = "builtins", text
    if module_name == "builtins":
        found = getattr(builtins, attr, None)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(
                f"cannot import module {module_name!r} for exception {name!r}: {exc}"
            ) from None
        found = getattr(module, attr, None)
    if not (isinstance(found, type) and issubclass(found, BaseException)):
        if module_name == "builtins":
            import difflib

            known = [
                n
                for n, v in vars(builtins).items()
                if isinstance(v, type) and issubclass(v, BaseException)
            ]
            close = difflib.get_close_matches(attr, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"{name!r} is not a built-in exception{hint} (use 'package.module.Error' for "
                "others)"
            )
        raise ValueError(f"{name!r} does not name an exception class in {module_name!r}")
    return found


def resolve_exceptions(value: Any) -> Tuple[Type[BaseException], ...]:
    if isinstance(value, (str, type)):
        value = [value]
    return tuple(resolve_exception(v) for v in value)


class MockTimeOptions(Options):
    """``mock``: a manual clock starting at ``initial`` seconds since the epoch."""

    initial: float = 0.0


def _exc_list(value: Any) -> Optional[List[Any]]:
    return None if value is None else list(resolve_exceptions(value))


Level = Union[int, str, None]
Exceptions = List[Any]  # names such as "ValueError" or "pkg.mod.Error", resolved to classes


def _all() -> List[Any]:
    return ["Exception"]


# --- error handlers --------------------------------------------------------------------------


class HandlerOptions(Options):
    name: Optional[str] = None


class DefaultHandlerOptions(HandlerOptions):
    """``default``: recover the listed exceptions with ``value``."""

    value: Any = None
    exceptions: Exceptions = Field(default_factory=_all)

    _check = field_validator("exceptions", mode="before")(_exc_list)


class FallbackOptions(HandlerOptions):
    """``fallback``: recover matching failures with ``value`` (put it last in the chain)."""

    value: Any = None
    exceptions: Exceptions = Field(default_factory=_all)
    exclude: Exceptions = Field(default_factory=list)

    _check = field_validator("exceptions", "exclude", mode="before")(_exc_list)


class RetryOptions(HandlerOptions):
    """``retry``: give ``attempts`` or ``max_time`` (or both): there is no endless default."""

    attempts: Optional[int] = Field(default=None, ge=1)
    max_time: Optional[float] = Field(default=None, gt=0)
    exceptions: Exceptions = Field(default_factory=_all)
    exclude: Optional[Exceptions] = None
    backoff: float = Field(default=0.1, ge=0)
    multiplier: float = Field(default=2.0, ge=1)
    max_delay: float = Field(default=30.0, ge=0)
    jitter: Literal["equal", "full", "none"] = "equal"
    retry_after: Optional[str] = None

    _check = field_validator("exceptions", "exclude", mode="before")(_exc_list)


class CircuitBreakerOptions(HandlerOptions):
    """``circuit_breaker``: handlers with the same ``name`` share one breaker."""

    failure_threshold: Optional[int] = Field(default=None, ge=1)
    failure_rate: Optional[float] = Field(default=None, gt=0, le=1)
    window_size: int = Field(default=20, ge=1)
    minimum_calls: Optional[int] = Field(default=None, ge=1)
    recovery_timeout: float = Field(default=30.0, gt=0)
    half_open_max_calls: int = Field(default=1, ge=1)
    success_threshold: int = Field(default=1, ge=1)
    exceptions: Exceptions = Field(default_factory=_all)
    exclude: Exceptions = Field(default_factory=list)
    fallback: Any = MISSING

    _check = field_validator("exceptions", "exclude", mode="before")(_exc_list)


class TimeoutOptions(HandlerOptions):
    """``timeout``: fail an attempt that runs longer than ``seconds``."""

    seconds: float = Field(gt=0)


class ExceptionMappingOptions(HandlerOptions):
    """``exception_mapping``: ``raise_as`` maps exception names to the exception to raise
    instead; ``return_values`` maps exception names to a value the call returns."""

    raise_as: Dict[str, str] = Field(default_factory=dict)
    return_values: Dict[str, Any] = Field(default_factory=dict)

    @field_validator("raise_as")
    @classmethod
    def _targets(cls, value: Dict[str, str]) -> Dict[str, str]:
        for key, target in value.items():
            resolve_exception(key)
            resolve_exception(target)
        return value

    @field_validator("return_values")
    @classmethod
    def _sources(cls, value: Dict[str, Any]) -> Dict[str, Any]:
        for key in value:
            resolve_exception(key)
        return value


class LoggingHandlerOptions(HandlerOptions):
    """``logging_handler`` / ``log``: log matching failures, then pass them on."""

    logger: Optional[str] = None
    level: Level = "ERROR"
    exceptions: Exceptions = Field(default_factory=_all)
    exc_info: bool = True

    _check = field_validator("exceptions", mode="before")(_exc_list)


class ReraiseOptions(HandlerOptions):
    """``reraise``: stop the chain for these exceptions."""

    exceptions: Exceptions

    _check = field_validator("exceptions", mode="before")(_exc_list)


# --- observers -------------------------------------------------------------------------------


class ObserverOptions(Options):
    priority: int = 0
    name: Optional[str] = None
    background: bool = False


Quantiles = List[float]


def _quantiles() -> List[float]:
    return [0.5, 0.9, 0.99]


class MetricsOptions(ObserverOptions):
    """``metrics``: call counts, outcomes and latency quantiles per function."""

    track_in_flight: bool = True
    quantiles: Quantiles = Field(default_factory=_quantiles)
    relative_accuracy: float = Field(default=0.01, gt=0, lt=1)


class LoggingOptions(ObserverOptions):
    """``logging``: one log line per call outcome; ``redact`` adds sensitive argument names."""

    logger: Optional[str] = None
    call_level: Level = None
    success_level: Level = "INFO"
    failure_level: Level = "ERROR"
    recovered_level: Level = "WARNING"
    cancelled_level: Level = "INFO"
    interrupted_level: Level = "ERROR"
    include_arguments: bool = False
    include_result: bool = False
    exc_info: bool = True
    redact: List[str] = Field(default_factory=list)


class TimingOptions(ObserverOptions):
    """``timing``: latency quantiles, and slow calls over ``threshold`` (per-function
    ``thresholds`` by ``module:qualname`` pattern)."""

    threshold: Optional[float] = Field(default=None, gt=0)
    thresholds: Optional[Dict[str, float]] = None
    keep: int = Field(default=100, ge=1)
    quantiles: Quantiles = Field(default_factory=_quantiles)
    relative_accuracy: float = Field(default=0.01, gt=0, lt=1)


class AlertRuleOptions(Options):
    name: str
    kind: Literal["error_rate", "latency"]
    threshold: float
    window: float = Field(default=60.0, gt=0)
    percentile: Optional[float] = None
    min_calls: int = Field(default=10, ge=1)
    functions: Optional[List[str]] = None
    cooldown: float = Field(default=0.0, ge=0)
    count_recovered: bool = True


class AlertingOptions(ObserverOptions):
    """``alerting``: error-rate and latency rules over a sliding window."""

    rules: List[AlertRuleOptions] = Field(min_length=1)
    resolution: int = Field(default=10, ge=1)
    keep: int = Field(default=100, ge=1)


class ConcurrencyOptions(ObserverOptions):
    """``concurrency``: overlapping calls of functions that must not run concurrently."""

    non_reentrant: List[str] = Field(default_factory=list)
    single_writer: Optional[Dict[str, List[str]]] = None
    keep: int = Field(default=100, ge=1)


class AuditOptions(ObserverOptions):
    """``audit``: an append-only JSON-lines audit trail; ``redact`` adds sensitive names."""

    path: str
    include_arguments: bool = True
    include_result: bool = False
    redact: List[str] = Field(default_factory=list)
    fsync: bool = False
    max_bytes: Optional[int] = Field(default=None, ge=1)
    backup_count: int = Field(default=5, ge=1)
    create_dirs: bool = True


# --- variable extractors ---------------------------------------------------------------------


class TracingOptions(Options):
    """``tracing``: ``backend`` is ``auto``, ``monitoring`` (3.12+) or ``profile``."""

    backend: Literal["auto", "monitoring", "profile"] = "auto"
