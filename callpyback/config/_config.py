"""The loaded configuration as frozen data: which pipeline a function gets, and what it holds.

A :class:`Config` is what validation produced and never changes.  Building decorators from it
is the job of its :class:`~callpyback.config._assembly.Assembly` (``config.assembly``);
rendering it for people (``callpyback explain``, ``config show``) is the CLI's
(:mod:`callpyback.cli._render`).  Importing this module imports neither pydantic nor pluggy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

from ._errors import KeyPath
from ._patterns import Matcher, compile_pattern

if TYPE_CHECKING:
    from .._decorator import CallPyBack
    from .._registry import Registry
    from ._assembly import Assembly
    from ._models import SettingsModel
    from ._toml import Locator

__all__ = ["MISSING", "RULE", "ComponentRef", "Config", "PipelineConfig", "PipelineMatch"]

RULE = (
    "the first pipeline in file order whose `match` patterns match and whose `exclude` "
    "patterns do not wins; an excluded function falls through to the later pipelines"
)


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
        """The instance's name, or its type for an inline one."""
        return self.name or self.type

    def describe(self) -> str:
        """``type(options) [named|inline]``, as ``callpyback explain`` prints it."""
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        how = f"named, [{self.kind}s.{self.name}]" if self.name else "inline"
        return f"{self.type}({opts}) [{how}]"


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

    @property
    def applies(self) -> bool:
        """Whether its functions get a decorator (enabled and not empty)."""
        return self.enabled and not self.is_empty


@dataclass(frozen=True)
class PipelineMatch:
    """The pipeline a target gets, and why."""

    pipeline: PipelineConfig
    index: int
    pattern: str
    target: str

    @property
    def reason(self) -> str:
        """Why this pipeline applies, in words."""
        return (
            f"{self.target} matches {self.pattern!r} in {self.pipeline.label}, the first "
            "matching pipeline in file order"
        )


@dataclass(frozen=True, eq=False, repr=False)
class Config:
    """A validated configuration.  Build with :func:`callpyback.load_config`.

    Frozen data; :meth:`pipeline_for` and :meth:`may_match_module` answer from it, and
    :meth:`wrapper_for` asks :attr:`assembly`, which builds (once) the decorator of a pipeline.
    """

    source: str
    settings: SettingsModel
    pipelines: Tuple[PipelineConfig, ...] = ()
    #: kind -> name -> the named instances of the component sections.
    components: Mapping[str, Mapping[str, ComponentRef]] = field(default_factory=dict)
    #: setting -> where its value came from ("argument", "environment CALLPYBACK_X", "file").
    origins: Mapping[str, str] = field(default_factory=dict)
    #: key path -> the environment variables its value was read from.
    env_refs: Mapping[KeyPath, List[str]] = field(default_factory=dict)
    version: int = 1
    registry: Optional[Registry] = field(default=None, compare=False)
    locator: Optional[Locator] = field(default=None, compare=False)
    #: plugin-owned top-level tables (``[web]``, ``[state]``...): name -> validated model
    tables: Mapping[str, Any] = field(default_factory=dict)
    #: Builds the decorators (derived, like the matcher: not part of the data).
    assembly: Assembly = field(init=False, compare=False)

    @property
    def instrument_frame_inspectors(self) -> bool:
        """Whether the import hook observes functions that inspect their caller's frame."""
        return bool(self.settings.instrument_frame_inspectors)

    def __post_init__(self) -> None:
        from ._assembly import Assembly

        patterns = [
            (
                tuple(compile_pattern(p) for p in pl.match),
                tuple(compile_pattern(p) for p in pl.exclude),
            )
            for pl in self.pipelines
        ]
        # Derived, never part of the data: the index over the patterns and a memo of answers.
        object.__setattr__(self, "_patterns", patterns)
        object.__setattr__(self, "_matcher", Matcher(patterns))
        object.__setattr__(self, "_cache", {})
        object.__setattr__(self, "assembly", Assembly(self))

    if TYPE_CHECKING:  # set in __post_init__; not dataclass fields

        @property
        def _patterns(self) -> List[Tuple[Tuple[Any, ...], Tuple[Any, ...]]]: ...

        @property
        def _matcher(self) -> Matcher: ...

        @property
        def _cache(self) -> Dict[str, Optional[PipelineMatch]]: ...

    def __repr__(self) -> str:
        state = "enabled" if self.settings.enabled else "disabled"
        return f"<Config {self.source!r} pipelines={len(self.pipelines)} {state}>"

    # --- matching (the import hook's contract) ------------------------------------------------
    def pipeline_for(self, target: str) -> Optional[PipelineMatch]:
        """The pipeline for ``"module:qualname"`` (first match in file order), or None."""
        cache = self._cache
        try:
            return cache[target]
        except KeyError:
            pass
        module, _, qualname = target.partition(":")
        found = self._matcher.match(module, qualname)
        result = (
            None
            if found is None
            else PipelineMatch(self.pipelines[found[0]], found[0], found[1].raw, target)
        )
        if len(cache) > 100_000:  # bound memory if targets are generated endlessly
            cache.clear()
        cache[target] = result
        return result

    def may_match_module(self, module: str) -> bool:
        """False means no function of ``module`` can match any pipeline (skip the module)."""
        return self._matcher.may_match_module(module)

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

    def wrapper_for(self, module: str, qualname: str) -> Optional[CallPyBack]:
        """The decorator to apply to ``module:qualname``; None means leave the function alone.

        One :class:`~callpyback.CallPyBack` is built per pipeline, on first use, and shared by
        every function of that pipeline (so, say, one metrics observer aggregates them all).
        A pipeline that cannot be built raises :class:`~callpyback.ConfigError` (or, with
        ``on_build_error = "warn"``, is built without what failed).
        """
        if not self.settings.enabled:
            return None
        found = self.pipeline_for(f"{module}:{qualname}")
        if found is None or not found.pipeline.applies:
            return None
        return self.assembly.decorator(found.index)

    def build_all(self) -> None:
        """Build every pipeline that applies now; one ConfigError lists every failure."""
        self.assembly.build_all()

    # --- where things are ---------------------------------------------------------------------
    @property
    def file(self) -> Optional[str]:
        """The file the configuration came from (None for defaults and mappings' labels)."""
        return None if self.source == "<defaults>" else self.source

    def locate(self, path: KeyPath) -> Tuple[Optional[str], Optional[int]]:
        """(file, line) of a key path, for messages."""
        line = self.locator.line(path) if self.locator is not None else None
        return self.file, line
