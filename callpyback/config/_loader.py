"""Loading: find the file, parse it, substitute the environment, validate it with the models.

Validation collects *every* problem before raising one :class:`ConfigError`; nothing is built
from a configuration with problems.  The models (:mod:`._models`) produce the configuration;
this module only reads the file and turns pydantic's errors into located problems.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from pydantic import ValidationError

from ._config import Config
from ._env import substitute
from ._errors import ConfigError, KeyPath, Problem, pydantic_problem, suggest
from ._exceptions import resolve_exception
from ._models import (
    REFERENCE_ERROR,
    TAGS,
    TOP_LEVEL_KEYS,
    DocumentModel,
    PipelineModel,
    Scope,
    SettingsModel,
    document_model,
    reference_problem,
)
from ._precedence import CONFIG_ENV, UNSET, choose, discover
from ._secrets import REDACTED, is_secret
from ._toml import Locator, parse_toml, too_deep

__all__ = ["build_config", "load_config", "resolve_exception"]

PathLike = Union[str, "os.PathLike[str]"]


def _registry() -> Any:
    try:
        from ..plugins import get_registry
    except ImportError:  # plugin discovery not available: only explicit registries work
        from .._registry import Registry

        return Registry()
    return get_registry()


def load_config(
    path: Optional[PathLike] = None,
    *,
    settings: Optional[Mapping[str, Any]] = None,
    registry: Any = None,
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[PathLike] = None,
) -> Config:
    """Find, read and validate the configuration; raise :class:`ConfigError` listing every problem.

    The file is ``path`` if given, else ``$CALLPYBACK_CONFIG``, else ``callpyback.toml`` (or a
    ``pyproject.toml`` with ``[tool.callpyback]``) in ``cwd`` or its parents up to the project
    root.  With none of those, the result is an empty configuration (no pipelines).
    ``settings`` overrides ``[settings]`` and the ``CALLPYBACK_*`` variables.
    """
    env = os.environ if env is None else env
    discovered = discover(cwd)
    chosen = choose(
        UNSET if path is None else path,
        env=env,
        variable=CONFIG_ENV,
        file=UNSET if discovered is None else discovered[0],
        default=None,
    )
    if chosen.value is None:
        return build_config({}, source="<defaults>", settings=settings, registry=registry, env=env)
    file = Path(chosen.value)
    if not file.is_file():
        how = f"set by {CONFIG_ENV}" if chosen.origin.startswith("environment") else "given"
        raise ConfigError(
            [
                Problem(
                    f"configuration file {str(file)!r} ({how}) does not exist or is not a file",
                    file=str(file),
                    allowed="the path of a callpyback.toml or of a pyproject.toml with "
                    "[tool.callpyback]",
                )
            ],
            str(file),
        )
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            [Problem(f"cannot read the configuration: {exc}", file=str(file))], str(file)
        ) from None
    return load_text(
        text,
        file=str(file),
        pyproject=file.name == "pyproject.toml",
        settings=settings,
        registry=registry,
        env=env,
    )


def load_text(
    text: str,
    *,
    file: str = "<string>",
    pyproject: bool = False,
    settings: Optional[Mapping[str, Any]] = None,
    registry: Any = None,
    env: Optional[Mapping[str, str]] = None,
) -> Config:
    """Validate TOML source ``text`` as if it were read from ``file``."""
    env = os.environ if env is None else env
    document, problems = parse_toml(text, file)
    if document is None:
        raise ConfigError(problems, file)
    prefix: KeyPath = ()
    if pyproject:
        tool = document.get("tool")
        table = tool.get("callpyback") if isinstance(tool, dict) else None
        if not isinstance(table, dict):
            raise ConfigError(
                [
                    Problem(
                        "pyproject.toml has no [tool.callpyback] table",
                        file=file,
                        allowed="a [tool.callpyback] table with the keys of callpyback.toml",
                    )
                ],
                file,
            )
        document, prefix = table, ("tool", "callpyback")
    return build_config(
        document,
        source=file,
        locator=Locator(text, prefix),
        settings=settings,
        registry=registry,
        env=env,
    )


def _located(
    problem: Problem,
    scope: Scope,
    source: str,
    locator: Optional[Locator],
    env_refs: Mapping[KeyPath, List[str]],
) -> Problem:
    """Set the problem's file and line; hide the value it quotes if that is a secret."""
    path = problem.path
    origin = scope.origins.get(str(path[1])) if len(path) >= 2 and path[0] == "settings" else None
    if origin is not None and origin != "file":
        # A setting given as an argument or in the environment: that is where it is wrong.
        problem.file = "<argument>" if origin == "argument" else f"<{origin.split(' (')[0]}>"
        problem.line = None
    else:
        problem.file = None if source == "<defaults>" else source
        problem.line = locator.line(path) if locator is not None else None
    if problem.has_given and _secret(path, env_refs):
        problem.given = REDACTED
    return problem


def _secret(path: KeyPath, env_refs: Mapping[KeyPath, List[str]]) -> bool:
    """Error messages must not print secrets: secret-looking keys or env values."""
    if path and isinstance(path[-1], str) and is_secret(path[-1]):
        return True
    return any(is_secret(name) for name in env_refs.get(path, ()))


def _submodel(model: Any, path: Sequence[Any]) -> Any:
    """The pydantic model that validates the table at ``path`` below ``model`` (list items and
    optional values unwrapped), or None when the path leaves the models."""
    import typing

    for part in path:
        if isinstance(part, int):
            continue  # an item of the list whose annotation was unwrapped below
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return None
        annotation = fields[part].annotation
        while typing.get_origin(annotation) is not None:
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            models = [a for a in args if hasattr(a, "model_fields")]
            annotation = models[0] if models else (args[-1] if args else None)
        model = annotation
    return model if hasattr(model, "model_fields") else None


def _from_pydantic(
    error: Mapping[str, Any], tables: Sequence[str] = (), registry: Any = None
) -> Problem:
    """One of the document model's errors as a problem (not yet located in the file)."""
    loc: KeyPath = tuple(part for part in error.get("loc", ()) if part not in TAGS)
    kind = error.get("type")
    if kind == "callpyback":
        ctx = error.get("ctx") or {}
        original: Problem = ctx["problem"]
        return dataclasses.replace(original, path=loc, suggestions=list(original.suggestions))
    if kind == REFERENCE_ERROR:
        problem = reference_problem(loc, error.get("input"))
        problem.path = loc
        return problem
    error = {**error, "loc": loc}
    if len(loc) == 1 and kind == "extra_forbidden":
        key = str(loc[0])
        known = (*TOP_LEVEL_KEYS, *tables)  # plugins' tables too ([web], [db], [state]...)
        return Problem(
            f"unknown top-level key {key!r}",
            loc,
            allowed=", ".join(known),
            suggestions=suggest(key, known),
        )
    if len(loc) == 2 and loc[0] == "settings":
        return pydantic_problem(error, what="[settings]", fields=list(SettingsModel.model_fields))
    if len(loc) == 3 and loc[0] == "pipelines":
        return pydantic_problem(error, what="a pipeline", fields=list(PipelineModel.model_fields))
    if loc and loc[0] in tables and registry is not None and kind in ("extra_forbidden", "missing"):
        # A plugin's table ([web], [[db.drivers]]...): the keys its model allows, and a
        # did-you-mean, as for the core's own tables.
        model = _submodel(getattr(registry.get("table", str(loc[0])), "options", None), loc[1:-1])
        if model is not None:
            where = ".".join(str(part) for part in loc[:-1] if not isinstance(part, int))
            return pydantic_problem(error, what=f"[{where}]", fields=list(model.model_fields))
    return pydantic_problem(error)


def build_config(
    document: Any,
    *,
    source: str = "<mapping>",
    locator: Optional[Locator] = None,
    settings: Optional[Mapping[str, Any]] = None,
    registry: Any = None,
    env: Optional[Mapping[str, str]] = None,
) -> Config:
    """Validate a parsed document (a TOML table) and assemble the :class:`Config`."""
    env = os.environ if env is None else env
    registry = _registry() if registry is None else registry
    scope = Scope(registry, explicit=settings, env=env, locator=locator)

    def fail(problems: List[Problem]) -> ConfigError:
        located = [_located(p, scope, source, locator, env_refs) for p in problems]
        return ConfigError(_dedupe(located), source)

    env_refs: Dict[KeyPath, List[str]] = {}
    if not isinstance(document, Mapping):
        raise fail([Problem("the configuration must be a table (a mapping)", given=document)])
    deep = too_deep(document)
    if deep is not None:
        path, problem = deep
        problem.path = path
        raise fail([problem])
    document, env_problems, env_refs = substitute(dict(document), env)
    problems: List[Problem] = []
    for path, problem in env_problems:
        problem.path = path
        problems.append(problem)
    model: Optional[DocumentModel] = None
    try:
        model = document_model(registry).model_validate(document, context=scope)
    except ValidationError as exc:
        # A value whose ${VAR} could not be substituted is one problem, not also whatever the
        # unsubstituted text then fails.
        unset = [path for path, _ in env_problems]
        tables = registry.names("table") if registry is not None else []
        for error in exc.errors(include_url=False):
            problem = _from_pydantic(error, tables, registry)
            if not any(problem.path[: len(path)] == path for path in unset):
                problems.append(problem)
    if problems or model is None:
        raise fail(problems)
    linked = model.linked
    config = Config(
        source=source,
        settings=linked.settings,
        pipelines=linked.pipelines,
        components=linked.components,
        origins=dict(scope.origins),
        env_refs=env_refs,
        version=int(document.get("version", 1)),
        registry=registry,
        locator=locator,
        tables=dict(linked.tables),
    )
    _notify(config)
    return config


def _dedupe(problems: List[Problem]) -> List[Problem]:
    seen = set()
    out = []
    for p in problems:
        key = (p.file, p.path, p.message)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _notify(config: Config) -> None:
    try:
        from .. import plugins
    except ImportError:
        return
    from ..errors import ConfigurationError

    try:
        plugins.notify_config(config)
    except ConfigError:
        raise
    except ConfigurationError as exc:  # a plugin's callpyback_configure rejected it
        raise ConfigError(
            [
                Problem(
                    f"a plugin rejected the configuration: {exc}",
                    file=config.file,
                    allowed="what the plugin's message asks for (see `callpyback plugins`)",
                )
            ],
            config.source,
        ) from exc
