"""Loading: find the file, parse it, substitute the environment, validate everything, assemble.

Validation collects *every* problem before raising one :class:`ConfigError`; nothing is built
from a configuration with problems.
"""

from __future__ import annotations

import builtins
import importlib
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ._config import MISSING, REDACTED, ComponentRef, Config, PipelineConfig, is_secret
from ._env import substitute
from ._errors import ConfigError, KeyPath, Problem, format_path, suggest
from ._flags import kill_switch
from ._models import (
    INHERITED,
    SECTIONS,
    TOP_LEVEL_KEYS,
    VERSIONS,
    PipelineModel,
    SettingsModel,
)
from ._patterns import PatternError, compile_pattern
from ._precedence import CONFIG_ENV, DISABLED_ENV, UNSET, choose, discover, env_name
from ._toml import Locator, parse_toml, too_deep

__all__ = ["build_config", "load_config", "resolve_exception"]

_EXC_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:[.:][A-Za-z_][A-Za-z0-9_]*)*\Z")
_BUILTIN_EXCEPTIONS = sorted(
    n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)
)

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
        how = (
            f"set by {CONFIG_ENV}" if chosen.origin.startswith("environment") else "given"
        )
        raise ConfigError(
            [Problem(
                f"configuration file {str(file)!r} ({how}) does not exist or is not a file",
                file=str(file),
                allowed="the path of a callpyback.toml or of a pyproject.toml with "
                "[tool.callpyback]",
            )],
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
                [Problem(
                    "pyproject.toml has no [tool.callpyback] table",
                    file=file,
                    allowed="a [tool.callpyback] table with the keys of callpyback.toml",
                )],
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


def resolve_exception(name: str) -> type:
    """A built-in exception name, or ``package.module.Class`` / ``package.module:Class``."""
    if "." not in name and ":" not in name:
        found = getattr(builtins, name, None)
        if not (isinstance(found, type) and issubclass(found, BaseException)):
            raise AttributeError(f"{name!r} is not a built-in exception")
        return found
    module, sep, qual = name.partition(":")
    if not sep:
        module, _, qual = name.rpartition(".")
    obj: Any = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, BaseException)):
        raise TypeError(f"{name!r} is {obj!r}, not an exception class")
    return obj


class _Builder:
    """Collects problems while turning a document into a :class:`Config`."""

    def __init__(
        self,
        document: Mapping[str, Any],
        source: str,
        locator: Optional[Locator],
        registry: Any,
    ) -> None:
        self.doc = document
        self.source = source
        self.locator = locator
        self.registry = registry
        self.problems: List[Problem] = []
        self.components: Dict[str, Dict[str, ComponentRef]] = {k: {} for k in SECTIONS.values()}
        self._validated: Dict[Tuple[str, str], bool] = {}
        self.env_refs: Dict[KeyPath, List[str]] = {}

    def _secret(self, path: KeyPath) -> bool:
        """Error messages must not print secrets: secret-looking keys or env values."""
        if path and isinstance(path[-1], str) and is_secret(path[-1]):
            return True
        return any(is_secret(name) for name in self.env_refs.get(path, ()))

    # --- problems ---------------------------------------------------------------------------
    def add(self, path: KeyPath, problem: Problem, file: Optional[str] = None) -> None:
        problem.path = path
        if problem.has_given and self._secret(path):
            problem.given = REDACTED
        if file is not None:
            problem.file = file
        else:
            problem.file = None if self.source == "<defaults>" else self.source
            if self.locator is not None:
                problem.line = self.locator.line(path)
        self.problems.append(problem)

    def pydantic(self, exc: Any, base: KeyPath, fields: Sequence[str], what: str,
                 file: Optional[str] = None) -> None:
        """Map a pydantic ``ValidationError`` (or a list of its error dicts) to problems."""
        errors = exc if isinstance(exc, list) else exc.errors(include_url=False)
        for err in errors:
            loc = tuple(err.get("loc", ()))
            kind = err.get("type", "")
            key = loc[-1] if loc else ""
            if kind == "extra_forbidden":
                self.add(base + loc, Problem(
                    f"unknown key {key!r} in {what}",
                    allowed=", ".join(fields),
                    suggestions=suggest(str(key), fields),
                ), file)
            elif kind == "missing":
                self.add(base + loc, Problem(
                    f"required key {key!r} is missing from {what}", allowed=", ".join(fields)
                ), file)
            else:
                self.add(base + loc, Problem(
                    err.get("msg", "invalid value"), given=err.get("input"),
                    allowed=_allowed(kind, err.get("ctx") or {}),
                ), file)

    # --- components -------------------------------------------------------------------------
    def check_type(self, kind: str, type_: str, options: Mapping[str, Any], path: KeyPath,
                   type_path: KeyPath) -> bool:
        """Validate ``type_`` exists for ``kind`` and ``options`` suit its options model."""
        from .._registry import UnknownComponentError

        try:
            spec = self.registry.get(kind, type_)
        except UnknownComponentError as exc:
            known = self.registry.names(kind)
            self.add(type_path, Problem(
                f"unknown {kind} type {type_!r}; {self.registry.availability(type_)}",
                given=type_,
                allowed=", ".join(known) or f"(no {kind} types are registered)",
                suggestions=list(exc.suggestions),
            ))
            return False
        key = (kind, type_)
        if not options and key in self._validated:
            return self._validated[key]
        ok = True
        try:
            spec.validate(options)
        except Exception as exc:
            ok = False
            if hasattr(exc, "errors") and callable(exc.errors):
                model = spec.options
                fields = sorted(getattr(model, "model_fields", {}) or {})
                self.pydantic(exc, path, fields, f"the options of {kind} type {type_!r}")
            else:
                self.add(path, Problem(f"bad options for {kind} type {type_!r}: {exc}",
                                       given=dict(options)))
        if not options:
            self._validated[key] = ok
        return ok

    def declare(self) -> None:
        for section, kind in SECTIONS.items():
            table = self.doc.get(section)
            if table is None:
                continue
            if not isinstance(table, dict):
                self.add((section,), Problem(
                    f"[{section}] must be a table of named {kind}s", given=table,
                    allowed=f"[{section}.NAME] tables with a 'type' key",
                ))
                continue
            for name, decl in table.items():
                path = (section, name)
                if not isinstance(decl, dict):
                    self.add(path, Problem(
                        f"{section}.{name} must be a table with a 'type' key", given=decl,
                        allowed=f'[{section}.{name}] type = "..." and its options',
                    ))
                    continue
                ref = self.inline(kind, decl, path, name=name)
                if ref is not None:
                    self.components[kind][name] = ref

    def inline(self, kind: str, decl: Mapping[str, Any], path: KeyPath,
               name: Optional[str] = None) -> Optional[ComponentRef]:
        type_ = decl.get("type")
        if not isinstance(type_, str) or not type_:
            allowed = ", ".join(self.registry.names(kind)) or f"(no {kind} types are registered)"
            if "type" in decl:
                problem = Problem("'type' must be a non-empty string", given=type_,
                                  allowed=allowed)
                self.add((*path, "type"), problem)
            else:
                problem = Problem(f"a {kind} needs a 'type' naming a registered {kind} type",
                                  allowed=allowed)
                self.add(path, problem)
            return None
        options = {k: v for k, v in decl.items() if k != "type"}
        if not self.check_type(kind, type_, options, path, (*path, "type")):
            return None
        return ComponentRef(kind, type_, options, name, path)

    def reference(self, kind: str, value: Any, path: KeyPath) -> Optional[ComponentRef]:
        """A string names an instance declared in its section, else a type with no options."""
        if isinstance(value, dict):
            return self.inline(kind, value, path)
        section = next(s for s, k in SECTIONS.items() if k == kind)
        if not isinstance(value, str) or not value:
            self.add(path, Problem(
                f"a {kind} reference must be a name or an inline table", given=value,
                allowed=f'"NAME" of [{section}.NAME], a registered type, or {{type = "..."}}',
            ))
            return None
        named = self.components[kind].get(value)
        if named is not None:
            return named
        declared = self.doc.get(section)
        if isinstance(declared, dict) and value in declared:
            return None  # declared but invalid: its own problem is already reported
        if (kind, value) in self.registry:
            if self.check_type(kind, value, {}, path, path):
                return ComponentRef(kind, value, {}, None, path)
            return None
        names = sorted(declared) if isinstance(declared, dict) else []
        types = self.registry.names(kind)
        self.add(path, Problem(
            f"unknown {kind} {value!r}: neither a name declared in [{section}] nor a registered "
            f"{kind} type; {self.registry.availability(value)}",
            given=value,
            allowed="declared: " + (", ".join(names) or "(none)")
            + "; types: " + (", ".join(types) or "(none)"),
            suggestions=suggest(value, [*names, *types]),
        ))
        return None

    def references(
        self, kind: str, values: Any, path: KeyPath
    ) -> Optional[Tuple[ComponentRef, ...]]:
        if values is None:
            return None
        if not isinstance(values, list):
            return None  # pydantic reports the wrong type
        out = []
        for i, value in enumerate(values):
            ref = self.reference(kind, value, (*path, i))
            if ref is not None:
                out.append(ref)
        return tuple(out)

    # --- pipelines --------------------------------------------------------------------------
    def patterns(self, values: Any, path: KeyPath) -> None:
        if not isinstance(values, list):
            return
        for i, raw in enumerate(values):
            if not isinstance(raw, str):
                continue  # pydantic reports it
            try:
                compile_pattern(raw)
            except PatternError as exc:
                self.add((*path, i), Problem(
                    str(exc), given=raw,
                    allowed="module or module:qualname with globs (* ** ? [..]), or re:REGEX",
                ))

    def pipeline(self, index: int, raw: Any) -> Optional[Dict[str, Any]]:
        path: KeyPath = ("pipelines", index)
        if not isinstance(raw, dict):
            self.add(path, Problem(
                "each pipeline must be a table", given=raw,
                allowed="[[pipelines]] tables with match = [...] and observers, error_handlers...",
            ))
            return None
        fields = list(PipelineModel.model_fields)
        ok = True
        try:
            PipelineModel.model_validate(raw)
        except Exception as exc:
            if not hasattr(exc, "errors"):
                raise
            ok = False
            self.pydantic(exc, path, fields, "a pipeline")
        self.patterns(raw.get("match"), (*path, "match"))
        self.patterns(raw.get("exclude"), (*path, "exclude"))
        parts: Dict[str, Any] = {}
        obs = self.references("observer", raw.get("observers"), (*path, "observers"))
        if obs is not None:
            parts["observers"] = obs
        handlers = self.references(
            "error_handler", raw.get("error_handlers"), (*path, "error_handlers")
        )
        if handlers is not None:
            parts["error_handlers"] = handlers
        for key, kind in (("time_source", "time_source"),
                          ("variable_extractor", "variable_extractor")):
            if key in raw:
                ref = self.reference(kind, raw[key], (*path, key))
                if ref is not None:
                    parts[key] = ref
        variables = raw.get("variables")
        if isinstance(variables, list):
            for i, name in enumerate(variables):
                if isinstance(name, str) and not name.isidentifier():
                    self.add((*path, "variables", i), Problem(
                        f"{name!r} is not a Python identifier", given=name,
                        allowed="names of local variables, such as 'amount'",
                    ))
            parts["variables"] = tuple(v for v in variables if isinstance(v, str))
        classes = raw.get("exception_classes")
        if isinstance(classes, list):
            for i, name in enumerate(classes):
                if not isinstance(name, str):
                    continue
                if not _EXC_NAME.match(name):
                    self.add((*path, "exception_classes", i), Problem(
                        f"{name!r} is not an exception class name", given=name,
                        allowed="a built-in exception such as 'ValueError', or "
                        "'package.module.ClassName'",
                    ))
                elif "." not in name and ":" not in name and name not in _BUILTIN_EXCEPTIONS:
                    self.add((*path, "exception_classes", i), Problem(
                        f"{name!r} is not a built-in exception", given=name,
                        allowed="a built-in exception, or 'package.module.ClassName' for others",
                        suggestions=suggest(name, _BUILTIN_EXCEPTIONS),
                    ))
            parts["exception_classes"] = tuple(c for c in classes if isinstance(c, str))
        if "default_return" in raw:
            parts["default_return"] = raw["default_return"]
        for key in ("max_observer_failures", "enable_async_observers"):
            if key in raw:
                parts[key] = raw[key]
        return {"raw": raw, "parts": parts, "ok": ok}

    def resolve_extends(self, items: List[Optional[Dict[str, Any]]]) -> None:
        names: Dict[str, int] = {}
        for i, item in enumerate(items):
            if item is None:
                continue
            name = item["raw"].get("name")
            if isinstance(name, str):
                if name in names:
                    first = ("pipelines", names[name], "name")
                    line = self.locator.line(first) if self.locator else None
                    at = f" (line {line})" if line else ""
                    self.add(("pipelines", i, "name"), Problem(
                        f"duplicate pipeline name {name!r}: {format_path(first)}{at} has it too",
                        given=name, allowed="a name used by one pipeline only",
                    ))
                else:
                    names[name] = i

        done: Dict[int, Dict[str, Any]] = {}

        def effective(i: int, chain: Tuple[int, ...]) -> Dict[str, Any]:
            if i in done:
                return done[i]
            item = items[i]
            assert item is not None
            parts = dict(item["parts"])
            base = item["raw"].get("extends")
            if isinstance(base, str) and base:
                target = names.get(base)
                if target is None:
                    self.add(("pipelines", i, "extends"), Problem(
                        f"pipeline {base!r} does not exist", given=base,
                        allowed=", ".join(names) or "(no named pipelines)",
                        suggestions=suggest(base, names),
                    ))
                elif target in chain or target == i:
                    cycle = [*chain, i, target]
                    start = cycle.index(target)
                    shown = " -> ".join(_pipe_label(items, k) for k in cycle[start:])
                    self.add(("pipelines", i, "extends"), Problem(
                        f"circular extends: {shown}", given=base,
                        allowed="a chain of extends that ends in a pipeline without 'extends'",
                    ))
                else:
                    inherited = effective(target, (*chain, i))
                    for key in INHERITED:
                        if key not in parts and key in inherited:
                            parts[key] = inherited[key]
            done[i] = parts
            return parts

        for i, item in enumerate(items):
            if item is not None:
                item["effective"] = effective(i, ())

    def settings_refs(self, settings: SettingsModel) -> Dict[str, Optional[ComponentRef]]:
        out: Dict[str, Optional[ComponentRef]] = {}
        for key in ("time_source", "variable_extractor"):
            value = getattr(settings, key)
            out[key] = None if value is None else self.reference(key, value, ("settings", key))
        return out


_ALLOWED = {
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "list_type": "an array, e.g. [\"a\", \"b\"]",
    "dict_type": "a table",
    "model_type": "a table",
}


def _allowed(kind: str, ctx: Mapping[str, Any]) -> Optional[str]:
    for key, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if key in ctx:
            return f"a number {sign} {ctx[key]}"
    if kind == "too_short" and "min_length" in ctx:
        return f"at least {ctx['min_length']} item(s)"
    if kind in ("literal_error", "enum") and "expected" in ctx:
        return str(ctx["expected"])
    return _ALLOWED.get(kind)


def _pipe_label(items: List[Optional[Dict[str, Any]]], i: int) -> str:
    item = items[i]
    name = item["raw"].get("name") if item is not None else None
    return repr(name) if name else f"pipelines[{i}]"


def _settings(
    builder: _Builder,
    file_settings: Any,
    explicit: Optional[Mapping[str, Any]],
    env: Mapping[str, str],
) -> Tuple[Optional[SettingsModel], Dict[str, str]]:
    fields = list(SettingsModel.model_fields)
    if file_settings is not None and not isinstance(file_settings, dict):
        builder.add(("settings",), Problem(
            "[settings] must be a table", given=file_settings, allowed=", ".join(fields)
        ))
        file_settings = {}
    file_settings = file_settings or {}
    explicit = dict(explicit or {})
    for key in explicit:
        if key not in fields:
            builder.add(("settings", key), Problem(
                f"unknown setting {key!r}", allowed=", ".join(fields),
                suggestions=suggest(key, fields),
            ), file="<argument>")
    values: Dict[str, Any] = {k: v for k, v in file_settings.items() if k not in fields}
    origins: Dict[str, str] = {}
    for key in fields:
        chosen = choose(
            explicit.get(key, UNSET), env=env, variable=env_name(key),
            file=file_settings.get(key, UNSET),
        )
        if chosen.value is UNSET:
            continue
        value = chosen.value
        if chosen.origin.startswith("environment") and key == "redact":
            value = [v.strip() for v in str(value).split(",") if v.strip()]
        values[key] = value
        origins[key] = chosen.origin
    killed = kill_switch(env)
    if killed.on:
        values["enabled"] = False
        origins["enabled"] = f"environment {DISABLED_ENV} (kill switch)" + (
            f"; {killed.warning}" if killed.warning else ""
        )
    try:
        return SettingsModel.model_validate(values), origins
    except Exception as exc:
        if not hasattr(exc, "errors"):
            raise
        for err in exc.errors(include_url=False):
            loc = tuple(err.get("loc", ()))
            key = str(loc[0]) if loc else ""
            origin = origins.get(key, "file")
            single = [err]
            if origin.startswith("environment"):
                builder.pydantic(single, ("settings",), fields, "[settings]",
                                 file=f"<{origin.split(' (')[0]}>")
            elif origin == "argument":
                builder.pydantic(single, ("settings",), fields, "[settings]", file="<argument>")
            else:
                builder.pydantic(single, ("settings",), fields, "[settings]")
        return None, origins


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
    builder = _Builder({}, source, locator, registry)
    if not isinstance(document, Mapping):
        builder.add((), Problem("the configuration must be a table (a mapping)", given=document))
        raise ConfigError(builder.problems, source)
    deep = too_deep(document)
    if deep is not None:
        builder.add(*deep)
        raise ConfigError(builder.problems, source)
    document, env_problems, env_refs = substitute(dict(document), env)
    builder.doc = document
    builder.env_refs = env_refs
    for path, problem in env_problems:
        builder.add(path, problem)

    for key in document:
        if key not in TOP_LEVEL_KEYS:
            builder.add((key,), Problem(
                f"unknown top-level key {key!r}", allowed=", ".join(TOP_LEVEL_KEYS),
                suggestions=suggest(str(key), TOP_LEVEL_KEYS),
            ))
    version = document.get("version", 1)
    if isinstance(version, bool) or version not in VERSIONS:
        builder.add(("version",), Problem(
            "unsupported configuration version", given=version,
            allowed=", ".join(str(v) for v in VERSIONS),
        ))

    settings_model, origins = _settings(builder, document.get("settings"), settings, env)
    builder.declare()
    defaults = settings_model and builder.settings_refs(settings_model)

    raw_pipelines = document.get("pipelines", [])
    items: List[Optional[Dict[str, Any]]] = []
    if not isinstance(raw_pipelines, list):
        builder.add(("pipelines",), Problem(
            "pipelines must be an array of tables", given=raw_pipelines,
            allowed="[[pipelines]] sections",
        ))
    else:
        items = [builder.pipeline(i, raw) for i, raw in enumerate(raw_pipelines)]
        builder.resolve_extends(items)

    pipelines: List[PipelineConfig] = []
    for i, item in enumerate(items):
        if item is None or not item["ok"]:
            continue
        raw, parts = item["raw"], item["effective"]
        if parts.get("exception_classes") and "default_return" not in parts:
            builder.add(("pipelines", i, "exception_classes"), Problem(
                "exception_classes only says what default_return recovers, and no "
                "default_return is set", given=list(parts["exception_classes"]),
                allowed="add default_return = VALUE, or use an error handler instead",
            ))
        pipelines.append(PipelineConfig(
            index=i,
            name=raw.get("name"),
            match=tuple(raw["match"]),
            exclude=tuple(raw.get("exclude", ())),
            description=raw.get("description", ""),
            extends=raw.get("extends"),
            enabled=raw.get("enabled", True),
            observers=parts.get("observers", ()),
            error_handlers=parts.get("error_handlers", ()),
            time_source=parts.get("time_source") or (defaults or {}).get("time_source"),
            variable_extractor=parts.get("variable_extractor")
            or (defaults or {}).get("variable_extractor"),
            variables=parts.get("variables", ()),
            exception_classes=parts.get("exception_classes", ()),
            default_return=parts.get("default_return", MISSING),
            max_observer_failures=parts.get("max_observer_failures"),
            enable_async_observers=parts.get("enable_async_observers"),
        ))

    if builder.problems or settings_model is None:
        raise ConfigError(_dedupe(builder.problems), source)
    config = Config(
        source=source,
        settings=settings_model,
        pipelines=tuple(pipelines),
        components={k: dict(v) for k, v in builder.components.items()},
        registry=registry,
        document=dict(document),
        origins=origins,
        env_refs=env_refs,
        locator=locator,
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
    notify = getattr(plugins, "notify_config", None)
    if notify is None:
        return
    from ..errors import ConfigurationError

    try:
        notify(config)
    except ConfigError:
        raise
    except ConfigurationError as exc:  # a plugin's callpyback_configure rejected it
        raise ConfigError(
            [Problem(f"a plugin rejected the configuration: {exc}",
                     file=None if config.source == "<defaults>" else config.source,
                     allowed="what the plugin's message asks for (see `callpyback plugins`)")],
            config.source,
        ) from exc
