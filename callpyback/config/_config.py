"""The loaded configuration: which pipeline a function gets, and the decorator built for it."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

from ._errors import ConfigError, KeyPath, Problem, format_path
from ._patterns import Matcher, compile_pattern

if TYPE_CHECKING:
    from .._decorator import CallPyBack
    from .._registry import Registry
    from ._models import SettingsModel
    from ._toml import Locator

__all__ = ["ComponentRef", "Config", "PipelineConfig", "PipelineMatch"]

RULE = (
    "the first pipeline in file order whose `match` patterns match and whose `exclude` "
    "patterns do not wins; an excluded function falls through to the later pipelines"
)

_SECRET = re.compile(
    r"(?i)(pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|credential|auth|dsn|salt)"
)
REDACTED = "***"


class _Missing:
    def __repr__(self) -> str:
        return "<not set>"


#: ``default_return`` was not given (TOML has no null, so any given value counts).
MISSING: Any = _Missing()


@dataclass(frozen=True)
class ComponentRef:
    """A component a pipeline uses: a named instance, or an anonymous one built per pipeline."""

    kind: str
    type: str
    options: Mapping[str, Any]
    name: Optional[str]
    path: KeyPath

    @property
    def label(self) -> str:
        return self.name or self.type

    def describe(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        how = f"named, [{_section(self.kind)}.{self.name}]" if self.name else "inline"
        return f"{self.type}({opts}) [{how}]"


def _section(kind: str) -> str:
    return f"{kind}s"


@dataclass(frozen=True)
class PipelineConfig:
    """One pipeline after validation, references resolved and ``extends`` applied."""

    index: int
    name: Optional[str]
    match: Tuple[str, ...]
    exclude: Tuple[str, ...] = ()
    description: str = ""
    extends: Optional[str] = None
    enabled: bool = True
    observers: Tuple[ComponentRef, ...] = ()
    error_handlers: Tuple[ComponentRef, ...] = ()
    time_source: Optional[ComponentRef] = None
    variable_extractor: Optional[ComponentRef] = None
    variables: Tuple[str, ...] = ()
    exception_classes: Tuple[str, ...] = ()
    default_return: Any = MISSING
    max_observer_failures: Optional[int] = None
    enable_async_observers: Optional[bool] = None

    @property
    def label(self) -> str:
        """``name`` if given, else ``pipelines[INDEX]``."""
        return self.name or f"pipelines[{self.index}]"

    @property
    def is_empty(self) -> bool:
        """True when applying it would change nothing: such a pipeline opts functions out."""
        return not (
            self.observers
            or self.error_handlers
            or self.variables
            or self.default_return is not MISSING
        )


@dataclass(frozen=True)
class PipelineMatch:
    """The pipeline a target gets, and why."""

    pipeline: PipelineConfig
    index: int
    pattern: str
    target: str

    @property
    def reason(self) -> str:
        return (
            f"{self.target} matches {self.pattern!r} in {self.pipeline.label}, the first "
            "matching pipeline in file order"
        )


@dataclass(eq=False, repr=False)
class Config:
    """A validated configuration.  Build with :func:`callpyback.load_config`."""

    source: str
    settings: SettingsModel
    pipelines: Tuple[PipelineConfig, ...] = ()
    components: Dict[str, Dict[str, ComponentRef]] = field(default_factory=dict)
    registry: Optional[Registry] = None
    document: Dict[str, Any] = field(default_factory=dict)
    origins: Dict[str, str] = field(default_factory=dict)
    env_refs: Dict[KeyPath, List[str]] = field(default_factory=dict)
    locator: Optional[Locator] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._patterns = [
            (tuple(compile_pattern(p) for p in pl.match),
             tuple(compile_pattern(p) for p in pl.exclude))
            for pl in self.pipelines
        ]
        self._matcher = Matcher(self._patterns)
        self._cache: Dict[str, Optional[PipelineMatch]] = {}
        self._wrappers: Dict[int, Any] = {}
        self._instances: Dict[Tuple[str, str], Any] = {}
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        state = "enabled" if self.settings.enabled else "disabled"
        return f"<Config {self.source!r} pipelines={len(self.pipelines)} {state}>"

    # --- matching (the import hook's contract) ------------------------------------------------
    def pipeline_for(self, target: str) -> Optional[PipelineMatch]:
        """The pipeline for ``"module:qualname"`` (first match in file order), or None."""
        try:
            return self._cache[target]
        except KeyError:
            pass
        module, _, qualname = target.partition(":")
        found = self._matcher.match(module, qualname)
        result = (
            None
            if found is None
            else PipelineMatch(self.pipelines[found[0]], found[0], found[1].raw, target)
        )
        if len(self._cache) > 100_000:  # bound memory if targets are generated endlessly
            self._cache.clear()
        self._cache[target] = result
        return result

    def may_match_module(self, module: str) -> bool:
        """False means no function of ``module`` can match any pipeline (skip the module)."""
        return self._matcher.may_match_module(module)

    def wrapper_for(self, module: str, qualname: str) -> Optional[CallPyBack]:
        """The decorator to apply to ``module:qualname``; None means leave the function alone.

        One :class:`~callpyback.CallPyBack` is built per pipeline, on first use, and shared by
        every function of that pipeline (so, say, one metrics observer aggregates them all).
        """
        if not self.settings.enabled:
            return None
        found = self.pipeline_for(f"{module}:{qualname}")
        if found is None or not found.pipeline.enabled or found.pipeline.is_empty:
            return None
        wrapper = self._wrappers.get(found.index)
        return wrapper if wrapper is not None else self.decorator(found.index)

    def decorator(self, index: int) -> CallPyBack:
        """The (cached) decorator of ``pipelines[index]``, built now if it was not yet."""
        with self._lock:
            wrapper = self._wrappers.get(index)
            if wrapper is None:
                wrapper = self._build(self.pipelines[index])
                self._wrappers[index] = wrapper
        return wrapper

    def build_all(self) -> None:
        """Build every enabled, non-empty pipeline; one ConfigError lists every failure.

        Validation cannot run component factories (they may open files or sockets), so this is
        the deeper check ``callpyback check --build`` offers.
        """
        problems: List[Problem] = []
        for pipeline in self.pipelines:
            if pipeline.enabled and not pipeline.is_empty:
                try:
                    self.decorator(pipeline.index)
                except ConfigError as exc:
                    problems.extend(exc.problems)
        if problems:
            raise ConfigError(problems, self.source)

    # --- assembly ---------------------------------------------------------------------------
    def _where(self, path: KeyPath) -> Tuple[Optional[str], Optional[int]]:
        line = self.locator.line(path) if self.locator is not None else None
        return (None if self.source == "<defaults>" else self.source), line

    def _fail(self, path: KeyPath, message: str, **extra: Any) -> ConfigError:
        file, line = self._where(path)
        problem = Problem(message, path=path, file=file, line=line, **extra)
        return ConfigError([problem], self.source)

    def instance(self, ref: ComponentRef) -> Any:
        """Build (or reuse, for a named instance) the component ``ref`` describes."""
        if ref.name is not None:
            key = (ref.kind, ref.name)
            with self._lock:
                if key not in self._instances:
                    self._instances[key] = self._create(ref)
                return self._instances[key]
        return self._create(ref)

    def _create(self, ref: ComponentRef) -> Any:
        if self.registry is None:
            raise self._fail(ref.path, f"no plugin registry to build {ref.kind} {ref.type!r}")
        try:
            return self.registry.create(ref.kind, ref.type, ref.options)
        except Exception as exc:
            raise self._fail(
                ref.path,
                f"could not create {ref.kind} {ref.label!r} of type {ref.type!r}: {exc}",
                given=dict(ref.options),
            ) from exc

    def _build(self, pipeline: PipelineConfig) -> CallPyBack:
        from .._decorator import CallPyBack

        settings = self.settings
        kwargs: Dict[str, Any] = {
            "observers": [self.instance(r) for r in pipeline.observers],
            "error_handlers": [self.instance(r) for r in pipeline.error_handlers],
            "variable_names": list(pipeline.variables) or None,
            "max_observer_failures": pipeline.max_observer_failures
            or settings.max_observer_failures,
            "enable_async_observers": settings.enable_async_observers
            if pipeline.enable_async_observers is None
            else pipeline.enable_async_observers,
            "name": pipeline.label,
        }
        if pipeline.time_source is not None:
            kwargs["time_source"] = self.instance(pipeline.time_source)
        if pipeline.variable_extractor is not None:
            kwargs["variable_extractor"] = self.instance(pipeline.variable_extractor)
        if pipeline.default_return is not MISSING:
            kwargs["default_return"] = pipeline.default_return
            if pipeline.exception_classes:
                kwargs["exception_classes"] = tuple(
                    self._exception_class(name, pipeline) for name in pipeline.exception_classes
                )
        try:
            return CallPyBack(**kwargs)
        except ConfigError:
            raise
        except Exception as exc:
            raise self._fail(
                ("pipelines", pipeline.index),
                f"could not build the decorator of {pipeline.label}: {exc}",
            ) from exc

    def _exception_class(self, name: str, pipeline: PipelineConfig) -> type:
        from ._loader import resolve_exception

        try:
            return resolve_exception(name)
        except (ImportError, AttributeError, TypeError) as exc:
            raise self._fail(
                ("pipelines", pipeline.index, "exception_classes"),
                f"cannot use exception class {name!r}: {exc}",
                allowed="a built-in exception name, or 'package.module.ClassName'",
            ) from exc

    # --- inspection -------------------------------------------------------------------------
    def matches(self, target: str) -> List[Tuple[PipelineConfig, str, Optional[str]]]:
        """Every pipeline whose match patterns match: (pipeline, pattern, excluded-by or None)."""
        module, _, qualname = target.partition(":")
        out = []
        for pipeline, (match, exclude) in zip(self.pipelines, self._patterns):
            hit = next((p for p in match if p.matches(module, qualname)), None)
            if hit is not None:
                ex = next((p for p in exclude if p.matches(module, qualname)), None)
                out.append((pipeline, hit.raw, ex.raw if ex is not None else None))
        return out

    def explain(self, target: str) -> str:
        """Human-readable: which pipeline ``target`` gets, which pattern matched, what it runs."""
        lines = [f"target:   {target}", f"config:   {self.source}"]
        if ":" not in target:
            lines.append("note:     no ':qualname' given; patterns naming a qualname cannot match")
        if not self.settings.enabled:
            origin = self.origins.get("enabled", "file")
            lines.append(f"disabled: settings.enabled is false ({origin}); nothing is instrumented")
        found = self.pipeline_for(target)
        for pipeline, pattern, excluded in self.matches(target):
            if excluded is not None:
                lines.append(
                    f"skipped:  {pipeline.label} (matched {pattern!r}, excluded by {excluded!r})"
                )
            elif found is not None and pipeline.index != found.index:
                lines.append(
                    f"shadowed: {pipeline.label} also matches {pattern!r}, but an earlier "
                    "pipeline wins"
                )
        if found is None:
            lines.append("pipeline: none; the function is left alone")
            lines.append(f"rule:     {RULE}")
            return "\n".join(lines)
        p = found.pipeline
        line = self._where(("pipelines", p.index))[1]
        where = f", line {line}" if line is not None else ""
        lines.append(f"pipeline: {p.label} ({format_path(('pipelines', p.index))}{where})")
        lines.append(f"matched:  {found.pattern!r}")
        lines.append(f"rule:     {RULE}")
        if p.description:
            lines.append(f"about:    {p.description}")
        if not p.enabled:
            lines.append("effect:   the pipeline is disabled (enabled = false); not wrapped")
        elif p.is_empty:
            lines.append(
                "effect:   the pipeline is empty: the function is deliberately not wrapped"
            )
        lines.append("observers (configuration order; a higher priority runs first):")
        lines.extend(_numbered(p.observers))
        lines.append("error handlers (chain order):")
        chain = [f"  {i}. {r.label:<16} {r.describe()}" for i, r in enumerate(p.error_handlers, 1)]
        if p.default_return is not MISSING:
            classes = ", ".join(p.exception_classes) or "Exception"
            chain.append(
                f"  {len(chain) + 1}. default_return   {p.default_return!r} for {classes}"
            )
        lines.extend(chain or ["  (none)"])
        ts, ex = p.time_source, p.variable_extractor
        lines.append(f"time source:        {ts.describe() if ts else 'system (built-in default)'}")
        extractor = ex.describe() if ex else (
            "tracing (built-in default for variables)" if p.variables else "none"
        )
        lines.append(f"variable extractor: {extractor}")
        lines.append(f"variables:          {', '.join(p.variables) or '(none)'}")
        failures = p.max_observer_failures or self.settings.max_observer_failures
        lines.append(f"max_observer_failures: {failures}")
        return "\n".join(lines)

    def effective(self, redact: bool = True) -> Dict[str, Any]:
        """The configuration after precedence and substitution, secrets replaced by ``***``."""
        doc: Dict[str, Any] = {"version": self.document.get("version", 1)}
        doc["settings"] = self.settings.model_dump(exclude_none=True)
        for section in ("observers", "error_handlers", "time_sources", "variable_extractors"):
            if section in self.document:
                doc[section] = self.document[section]
        pipelines = []
        for p in self.pipelines:
            entry: Dict[str, Any] = {}
            if p.name:
                entry["name"] = p.name
            if p.extends:
                entry["extends"] = p.extends
            if p.description:
                entry["description"] = p.description
            if not p.enabled:
                entry["enabled"] = False
            entry["match"] = list(p.match)
            if p.exclude:
                entry["exclude"] = list(p.exclude)
            entry["observers"] = [_show_ref(r) for r in p.observers]
            entry["error_handlers"] = [_show_ref(r) for r in p.error_handlers]
            if p.time_source:
                entry["time_source"] = _show_ref(p.time_source)
            if p.variable_extractor:
                entry["variable_extractor"] = _show_ref(p.variable_extractor)
            if p.variables:
                entry["variables"] = list(p.variables)
            if p.exception_classes:
                entry["exception_classes"] = list(p.exception_classes)
            if p.default_return is not MISSING:
                entry["default_return"] = p.default_return
            if p.max_observer_failures is not None:
                entry["max_observer_failures"] = p.max_observer_failures
            if p.enable_async_observers is not None:
                entry["enable_async_observers"] = p.enable_async_observers
            pipelines.append(entry)
        if pipelines:
            doc["pipelines"] = pipelines
        if redact:
            extra = {k.lower() for k in self.settings.redact}
            doc = _redact(doc, extra, self.env_refs, ())
        return doc


def _show_ref(ref: ComponentRef) -> Any:
    return ref.name if ref.name else {"type": ref.type, **ref.options}


def _numbered(refs: Tuple[ComponentRef, ...]) -> List[str]:
    if not refs:
        return ["  (none)"]
    return [f"  {i}. {r.label:<16} {r.describe()}" for i, r in enumerate(refs, 1)]


def is_secret(key: str, extra: Any = ()) -> bool:
    return bool(_SECRET.search(key)) or key.lower() in extra


def _redact(value: Any, extra: Any, env_refs: Mapping[KeyPath, List[str]], path: KeyPath) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            sub = (*path, k)
            if is_secret(str(k), extra) and not isinstance(v, (dict, list, bool)):
                out[k] = REDACTED
            else:
                out[k] = _redact(v, extra, env_refs, sub)
        return out
    if isinstance(value, list):
        return [_redact(v, extra, env_refs, (*path, i)) for i, v in enumerate(value)]
    # A value read from a secret-looking environment variable is a secret wherever it lands.
    names = env_refs.get(path)
    if names and any(is_secret(n, extra) for n in names):
        return REDACTED
    return value
