"""The pydantic models of ``callpyback.toml`` (strict about keys, ``extra="forbid"``).

Component references (``observers = ["audit", {type = "timing", threshold = 0.5}]``) are kept
as raw values here and resolved by the loader, which knows the named instances and the plugin
registry and can say which names exist.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from pydantic import BaseModel, ConfigDict, Field

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
