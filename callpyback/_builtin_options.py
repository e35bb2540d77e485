"""Pydantic options models of the built-in components (one model per registered name).

Each model forbids unknown keys, so a misspelt option in ``callpyback.toml`` is an error naming
the key.  Field names are what the config file uses; the factories in :mod:`._builtin_plugin`
translate them to constructor arguments.  Imported only when plugins are discovered.
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, Tuple, Type, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from typing_extensions import Annotated

from ._handling import MISSING
from .config._exceptions import check_exception_name, resolve_exception

__all__ = [
    "NO_IMPORT",
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


#: Validation context key: ``{NO_IMPORT: True}`` checks exception names without importing
#: their modules (what ``callpyback check --no-build``, ``explain`` and ``config show`` need);
#: without it (``Registry.create``) names are resolved to classes.
NO_IMPORT = "callpyback_no_import"


def resolve_exceptions(value: Any) -> Tuple[Type[BaseException], ...]:
    if isinstance(value, (str, type)):
        value = [value]
    return tuple(resolve_exception(v) for v in value)


def _one_exception(value: Any, info: ValidationInfo) -> Any:
    if info.context and info.context.get(NO_IMPORT):
        return check_exception_name(value)
    return resolve_exception(value)


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, (str, type)) else value


#: Names such as "ValueError" or "pkg.mod.Error"; each is checked on its own, so every bad
#: name of a list is reported at once, and resolved to its class when the component is built.
ExceptionName = Annotated[Any, AfterValidator(_one_exception)]
Exceptions = Annotated[List[ExceptionName], BeforeValidator(_listify)]


class MockTimeOptions(Options):
    """``mock``: a manual clock starting at ``initial`` seconds since the epoch."""

    initial: float = 0.0


Level = Union[int, str, None]


def _all() -> List[Any]:
    return ["Exception"]


# --- error handlers --------------------------------------------------------------------------


class HandlerOptions(Options):
    name: Optional[str] = None


class DefaultHandlerOptions(HandlerOptions):
    """``default``: recover the listed exceptions with ``value``."""

    value: Any = None
    exceptions: Exceptions = Field(default_factory=_all)


class FallbackOptions(HandlerOptions):
    """``fallback``: recover matching failures with ``value`` (put it last in the chain)."""

    value: Any = None
    exceptions: Exceptions = Field(default_factory=_all)
    exclude: Exceptions = Field(default_factory=list)


class RetryOptions(HandlerOptions):
    """``retry``: give ``attempts`` or ``max_time`` (or both): there is no endless default."""

    attempts: Optional[int] = Field(default=None, ge=1)
    max_time: Optional[float] = Field(default=None, gt=0)
    exceptions: Exceptions = Field(default_factory=_all)
    exclude: Optional[Exceptions] = None
    # At most a day, as RetryHandler itself checks: said here too, so the error is located
    # in the file (key, line, allowed range) instead of coming from the handler's constructor.
    backoff: float = Field(default=0.1, ge=0, le=86400)
    multiplier: float = Field(default=2.0, ge=1)
    max_delay: float = Field(default=30.0, ge=0, le=86400)
    jitter: Literal["equal", "full", "none"] = "equal"
    retry_after: Optional[str] = None


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
    #: None: shared when the [state] table's patterns select it; true: always; false: never.
    shared: Optional[bool] = None


class TimeoutOptions(HandlerOptions):
    """``timeout``: fail an attempt that runs longer than ``seconds``."""

    seconds: float = Field(gt=0)


class ExceptionMappingOptions(HandlerOptions):
    """``exception_mapping``: ``raise_as`` maps exception names to the exception to raise
    instead; ``return_values`` maps exception names to a value the call returns."""

    raise_as: Dict[str, str] = Field(default_factory=dict)
    return_values: Dict[str, Any] = Field(default_factory=dict)

    @field_validator("raise_as", "return_values")
    @classmethod
    def _names(cls, value: Dict[str, Any], info: ValidationInfo) -> Dict[str, Any]:
        # The factory resolves the names; here they are only checked, each one, and imported
        # only when the component is being built.
        problems = []
        for key, target in value.items():
            names = [key, target] if info.field_name == "raise_as" else [key]
            for name in names:
                try:
                    _one_exception(name, info)
                except ValueError as exc:
                    problems.append(str(exc))
        if problems:
            raise ValueError("; ".join(problems))
        return value


class LoggingHandlerOptions(HandlerOptions):
    """``logging_handler`` / ``log``: log matching failures, then pass them on."""

    logger: Optional[str] = None
    level: Level = "ERROR"
    exceptions: Exceptions = Field(default_factory=_all)
    exc_info: bool = True


class ReraiseOptions(HandlerOptions):
    """``reraise``: stop the chain for these exceptions."""

    exceptions: Exceptions


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
    kind: Literal["error_rate", "latency", "nan", "plateau"]
    threshold: Optional[float] = None  # required by error_rate and latency (AlertRule says so)
    window: float = Field(default=60.0, gt=0)
    percentile: Optional[float] = None
    min_calls: int = Field(default=10, ge=1)
    functions: Optional[List[str]] = None
    cooldown: float = Field(default=0.0, ge=0)
    count_recovered: bool = True
    # nan and plateau rules: the captured variable they watch (None: the returned value)
    variable: Optional[str] = None
    patience: Optional[int] = Field(default=None, ge=1)
    min_delta: Optional[float] = Field(default=None, ge=0)
    mode: Optional[Literal["min", "max"]] = None


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
