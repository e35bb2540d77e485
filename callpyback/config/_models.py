"""The pydantic models of ``callpyback.toml`` (strict about keys, ``extra="forbid"``).

Component references (``observers = ["audit", {type = "timing", threshold = 0.5}]``) are kept
as raw values here and resolved by the loader, which knows the named instances and the plugin
registry and can say which names exist.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._errors import ConfigError, Problem

__all__ = [
    "INHERITED",
    "SECTIONS",
    "TOP_LEVEL_KEYS",
    "VERSIONS",
    "PipelineModel",
    "SettingsModel",
]

#: Supported values of the top-level ``version`` key.
VERSIONS = (1,)

#: Named-instance section -> component kind in the registry.
SECTIONS: Dict[str, str] = {
    "observers": "observer",
    "error_handlers": "error_handler",
    "time_sources": "time_source",
    "variable_extractors": "variable_extractor",
}

TOP_LEVEL_KEYS = ("version", "settings", *SECTIONS, "pipelines")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SettingsModel(_Strict):
    """``[settings]``: process-wide switches; each can be overridden by ``CALLPYBACK_<KEY>``."""

    enabled: bool = True
    max_observer_failures: int = Field(5, ge=1)
    enable_async_observers: bool = False
    time_source: Optional[str] = None
    variable_extractor: Optional[str] = None
    redact: List[str] = Field(default_factory=list)


class PipelineModel(_Strict):
    """One ``[[pipelines]]`` entry, before references are resolved."""

    name: Optional[str] = Field(None, min_length=1)
    description: str = ""
    extends: Optional[str] = Field(None, min_length=1)
    enabled: bool = True
    match: List[str] = Field(min_length=1)
    exclude: List[str] = Field(default_factory=list)
    observers: Optional[List[Any]] = None
    error_handlers: Optional[List[Any]] = None
    time_source: Any = None
    variable_extractor: Any = None
    variables: Optional[List[str]] = None
    exception_classes: Optional[List[str]] = None
    default_return: Any = None
    max_observer_failures: Optional[int] = Field(None, ge=1)
    enable_async_observers: Optional[bool] = None



#: Keys a pipeline inherits from the one it ``extends`` when it does not set them itself.
INHERITED = (
    "observers",
    "error_handlers",
    "time_source",
    "variable_extractor",
    "variables",
    "exception_classes",
    "default_return",
    "max_observer_failures",
    "enable_async_observers",
)


# --- registry.create(): a ConfigError that older code can still catch as pydantic's -------------


class ComponentOptionsError(ConfigError, ValidationError):
    """Bad options given to ``Registry.create`` / ``ComponentSpec.create``.

    A :class:`ConfigError` (its message and ``problems`` name each option, the value given,
    what is allowed and the component type), and also pydantic's ``ValidationError``, whose
    ``errors()`` it keeps, so that code written against earlier releases keeps working.
    """

    def __init__(self, *args: Any) -> None:
        # pydantic builds the instance (from_exception_data); options_error() fills it in.
        pass

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __reduce__(self) -> Any:
        return (ConfigError, (self.problems, self.source))


def options_error(problems: Sequence[Problem], source: str, cause: Any) -> ConfigError:
    """The error for options that failed their model: a ComponentOptionsError when pydantic can
    rebuild its own error from ``cause``, else a plain ConfigError (same message and problems)."""
    try:
        details = [
            {"type": e["type"], "loc": e["loc"], "input": e.get("input"), "ctx": e.get("ctx", {})}
            for e in cause.errors(include_url=False)
        ]
        error = ComponentOptionsError.from_exception_data(cause.title, details)  # type: ignore[arg-type]
    except Exception:
        error = None
    if not isinstance(error, ComponentOptionsError):
        return ConfigError(problems, source)
    ConfigError.__init__(error, problems, source)
    return error
