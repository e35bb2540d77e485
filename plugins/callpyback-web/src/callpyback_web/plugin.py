"""The plugin: what the ``callpyback`` entry point points at.

It owns the ``[web]`` table of ``callpyback.toml`` (validated here, with the configuration's
usual errors), registers the ``web.calltree`` observer, and, once the import hook is installed,
attaches to the frameworks the table names as they are imported.  Nothing here imports a
framework.
"""

from __future__ import annotations

import difflib
from typing import Any, Dict, List, Optional, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from callpyback.hookspecs import hookimpl

CALLPYBACK_REQUIRES = ">=3,<4"

FRAMEWORK_NAMES = ("auto", "flask", "starlette", "fastapi", "django")


def _problem(message: str, **fields: Any) -> PydanticCustomError:
    # The configuration's own error shape: a Problem carried by an error of type "callpyback",
    # which the loader locates (file, line, key path) like its own.
    from callpyback.config import Problem

    problem = Problem(message, **fields)
    return PydanticCustomError("callpyback", "{message}", {"message": message, "problem": problem})


def _unknown_keys(cls: type, data: Any, what: str) -> Any:
    if not isinstance(data, dict):
        return data
    known = list(cls.model_fields)  # type: ignore[attr-defined]
    errors = []
    for key in data:
        if key not in known:
            errors.append(
                InitErrorDetails(
                    type=_problem(
                        f"unknown key {key!r} in {what}",
                        allowed=", ".join(known),
                        suggestions=difflib.get_close_matches(str(key), known, n=2, cutoff=0.6),
                    ),
                    loc=(str(key),),
                    input=data[key],
                )
            )
    if errors:
        raise ValidationError.from_exception_data(cls.__name__, errors)
    return data


def _patterns(values: List[str]) -> List[str]:
    from ._routes import RoutePattern, RoutePatternError

    errors = []
    for i, raw in enumerate(values):
        try:
            RoutePattern(raw)
        except RoutePatternError as exc:
            errors.append(
                InitErrorDetails(
                    type=_problem(
                        str(exc),
                        given=raw,
                        allowed="'METHOD /path' or '/path' with * and ** globs, or 're:REGEX'",
                        suggestions=[exc.suggestion] if exc.suggestion else [],
                    ),
                    loc=(i,),
                    input=raw,
                )
            )
    if errors:
        raise ValidationError.from_exception_data("route patterns", errors)
    return values


class RouteTable(BaseModel):
    """One ``[[web.routes]]`` entry: the pipeline of the requests it matches."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    match: List[str] = Field(min_length=1)
    exclude: List[str] = Field(default_factory=list)
    pipeline: Optional[str] = Field(None, min_length=1)
    observe: bool = True

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        return _unknown_keys(cls, data, "a [[web.routes]] entry")

    @field_validator("match", "exclude")
    @classmethod
    def _compile(cls, value: List[str]) -> List[str]:
        return _patterns(value)

    @model_validator(mode="after")
    def _pipeline_or_not(self) -> RouteTable:
        if self.observe and self.pipeline is None:
            raise _problem(
                "a route entry needs the pipeline that observes its requests",
                allowed='pipeline = "NAME" (a [[pipelines]] name), or observe = false',
            )
        return self


def _default_statuses() -> List[Union[int, str]]:
    return ["5xx"]


class WebTable(BaseModel):
    """The ``[web]`` table."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    frameworks: List[str] = Field(default_factory=lambda: ["auto"])
    pipeline: Optional[str] = Field(None, min_length=1)
    routes: List[RouteTable] = Field(default_factory=list)
    failure_statuses: List[Union[int, str]] = Field(default_factory=_default_statuses)
    unmatched_route: str = Field("<unmatched>", min_length=1)
    trace_context: str = "auto"
    capture_headers: bool = True

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        return _unknown_keys(cls, data, "[web]")

    @field_validator("frameworks")
    @classmethod
    def _frameworks(cls, value: List[str]) -> List[str]:
        errors = []
        for i, name in enumerate(value):
            if name not in FRAMEWORK_NAMES:
                errors.append(
                    InitErrorDetails(
                        type=_problem(
                            f"unknown framework {name!r}",
                            given=name,
                            allowed=", ".join(FRAMEWORK_NAMES),
                            suggestions=difflib.get_close_matches(
                                str(name).lower(), FRAMEWORK_NAMES, n=1, cutoff=0.6
                            ),
                        ),
                        loc=(i,),
                        input=name,
                    )
                )
        if errors:
            raise ValidationError.from_exception_data("frameworks", errors)
        return value

    @field_validator("failure_statuses")
    @classmethod
    def _statuses(cls, value: List[Union[int, str]]) -> List[Union[int, str]]:
        from ._core import parse_statuses

        errors = []
        for i, item in enumerate(value):
            try:
                parse_statuses([item])
            except ValueError as exc:
                errors.append(
                    InitErrorDetails(
                        type=_problem(
                            str(exc),
                            given=item,
                            allowed="status codes (503), classes ('4xx', '5xx') or ranges "
                            "('500-504')",
                        ),
                        loc=(i,),
                        input=item,
                    )
                )
        if errors:
            raise ValidationError.from_exception_data("failure_statuses", errors)
        return value

    @field_validator("trace_context")
    @classmethod
    def _trace(cls, value: str) -> str:
        allowed = ("auto", "always", "never")
        if value not in allowed:
            raise _problem(
                "unknown trace_context mode",
                given=value,
                allowed=", ".join(allowed),
                suggestions=difflib.get_close_matches(value, allowed, n=1, cutoff=0.5),
            )
        return value


class CallTreeOptions(BaseModel):
    """Options of ``web.calltree``."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    priority: int = 0
    name: Optional[str] = None


def _calltree(**options: Any) -> Any:
    from .calltree import CallTreeObserver

    return CallTreeObserver(**options)


@hookimpl
def callpyback_register_components(registry: Any) -> None:
    registry.table(
        "web",
        WebTable,
        description="Observe each HTTP request of Flask, Starlette/FastAPI and Django apps.",
    )
    registry.observer(
        "web.calltree",
        _calltree,
        options=CallTreeOptions,
        description="Record the observed calls made during a request as its call tree.",
    )


# --- the table against the rest of the configuration --------------------------------------------
def _names(table: WebTable) -> List[tuple[tuple[Union[str, int], ...], str]]:
    out: List[tuple[tuple[Union[str, int], ...], str]] = []
    if table.pipeline is not None:
        out.append((("web", "pipeline"), table.pipeline))
    for i, route in enumerate(table.routes):
        if route.pipeline is not None:
            out.append((("web", "routes", i, "pipeline"), route.pipeline))
    return out


def problems(config: Any, table: WebTable) -> List[Any]:
    """Every pipeline name of ``[web]`` that no ``[[pipelines]]`` entry has."""
    from callpyback.config import Problem

    declared = [p.name for p in config.pipelines if p.name]
    out = []
    for path, name in _names(table):
        if name in declared:
            continue
        file, line = config.locate(path)
        out.append(
            Problem(
                f"unknown pipeline {name!r}",
                path=path,
                file=file,
                line=line,
                given=name,
                allowed=", ".join(repr(n) for n in declared)
                or "(no named pipelines: give a [[pipelines]] entry a name)",
                suggestions=difflib.get_close_matches(name, declared, n=2, cutoff=0.6),
            )
        )
    return out


@hookimpl
def callpyback_configure(config: Any) -> None:
    tables = getattr(config, "tables", None)
    table = tables.get("web") if isinstance(tables, dict) else None
    if table is None:
        return
    found = problems(config, table)
    if found:
        from callpyback.config import ConfigError

        raise ConfigError(found, config.source)


def web_from_config(config: Any, table: WebTable) -> Any:
    """The :class:`~callpyback_web.Web` that ``[web]`` describes, its pipelines built by the
    configuration's assembly (the same decorators, hence observers, as its functions get)."""
    from ._core import RouteRule, Web
    from ._routes import RoutePattern

    assembly = config.assembly
    by_name: Dict[str, Any] = {p.name: p for p in config.pipelines if p.name}

    def decorator(name: str) -> Any:
        pipeline = by_name[name]
        if not (pipeline.applies and config.settings.enabled):
            return None
        return assembly.decorator(pipeline.index)

    def by_target(target: str) -> Any:
        if not config.settings.enabled:
            return None
        found = config.pipeline_for(target)
        if found is None or not found.pipeline.applies:
            return None
        return assembly.decorator(found.index)

    routes: Sequence[RouteRule] = [
        RouteRule(
            tuple(RoutePattern(p) for p in route.match),
            tuple(RoutePattern(p) for p in route.exclude),
            pipeline=decorator(route.pipeline) if route.pipeline else None,
            observe=route.observe,
        )
        for route in table.routes
    ]
    return Web(
        decorator(table.pipeline) if table.pipeline else by_target,
        routes=routes,
        failure_statuses=table.failure_statuses,
        unmatched_route=table.unmatched_route,
        trace_context=table.trace_context,
        capture_headers=table.capture_headers,
    )


@hookimpl
def callpyback_install(config: Any) -> None:
    table = config.tables.get("web")
    if table is None:
        return
    from . import _dropin

    _dropin.install(web_from_config(config, table), table.frameworks)


@hookimpl
def callpyback_uninstall() -> None:
    import sys

    dropin = sys.modules.get("callpyback_web._dropin")
    if dropin is not None:
        dropin.uninstall()
