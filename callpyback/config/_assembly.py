"""Assembly: from a validated :class:`~callpyback.config.Config` to the decorators it describes.

Component factories are user and plugin code that may open files or connections, so this is
the one place where building can fail after validation passed.  Every failure becomes a
:class:`~callpyback.config.Problem` naming the component, the file, the line and the key;
``settings.on_build_error`` says what happens then:

* ``"error"`` (the default): the pipeline is not built; :meth:`Assembly.decorator` and
  :meth:`Assembly.build_all` raise one :class:`~callpyback.ConfigError` listing every failure
  (``install()`` and ``callpyback run`` build everything up front, so start-up stops with it);
* ``"warn"``: one :class:`ComponentBuildWarning` per failure, and the pipeline is built without
  what failed (a component left out; exception classes that cannot be imported left out of
  ``exception_classes``, and ``default_return`` with them if none is left).

A failure is remembered: asking again raises (or leaves out) the same thing without running
the factory again.
"""

from __future__ import annotations

import threading
import warnings
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from ..errors import CallPyBackWarning
from ._config import MISSING, ComponentRef, PipelineConfig
from ._errors import ConfigError, KeyPath, Problem

if TYPE_CHECKING:
    from .._decorator import CallPyBack
    from ._config import Config

__all__ = ["Assembly", "ComponentBuildWarning"]


class ComponentBuildWarning(CallPyBackWarning):
    """A component could not be built and ``on_build_error = "warn"`` runs without it."""


def _contained(exc: BaseException) -> bool:
    # A factory's SystemExit must not end start-up silently; Ctrl-C still stops it.
    return not isinstance(exc, KeyboardInterrupt)


class Assembly:
    """Builds and caches the decorators of one configuration (one per pipeline) and its named
    component instances (one per name, shared by the pipelines that use it)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        # Guards building only; a built decorator is read without it.  Re-entrant: a factory
        # may itself ask for a component.
        self._lock = threading.RLock()
        self._decorators: Dict[int, CallPyBack] = {}
        self._failed: Dict[int, ConfigError] = {}
        self._instances: Dict[Tuple[str, str], Any] = {}
        self._instance_problems: Dict[Tuple[str, str], Problem] = {}
        self._warned: set[Tuple[KeyPath, str]] = set()

    @property
    def strict(self) -> bool:
        return self.config.settings.on_build_error != "warn"

    # --- decorators -------------------------------------------------------------------------
    def decorator(self, index: int) -> CallPyBack:
        """The decorator of ``pipelines[index]``, built on first use."""
        found = self._decorators.get(index)
        if found is not None:
            return found
        with self._lock:
            found = self._decorators.get(index)
            if found is not None:
                return found
            failed = self._failed.get(index)
            if failed is not None:
                raise failed
            try:
                decorator = self._build(self.config.pipelines[index])
            except ConfigError as exc:
                self._failed[index] = exc
                raise
            self._decorators[index] = decorator
            return decorator

    def build_all(self) -> None:
        """Build every pipeline that applies; one ConfigError lists every failure of every one.

        With ``on_build_error = "warn"`` failures are warnings and this raises nothing.
        """
        problems: List[Problem] = []
        for pipeline in self.config.pipelines:
            if pipeline.applies:
                try:
                    self.decorator(pipeline.index)
                except ConfigError as exc:
                    problems.extend(p for p in exc.problems if p not in problems)
        if problems:
            raise ConfigError(problems, self.config.source)

    def problems(self) -> List[Problem]:
        """Try to build everything and return every failure, whatever ``on_build_error`` says
        (``callpyback check``); nothing is warned and nothing is kept."""
        probe = Assembly(self.config)
        out: List[Problem] = []
        for pipeline in self.config.pipelines:
            if pipeline.applies:
                for problem in probe._collect(pipeline)[1]:
                    if problem not in out:
                        out.append(problem)
        return out

    # --- components -------------------------------------------------------------------------
    def instance(self, ref: ComponentRef) -> Any:
        """Build (or reuse, for a named instance) the component ``ref`` describes.

        Raises ConfigError when it cannot be built.
        """
        built, problem = self._instance(ref)
        if problem is not None:
            raise ConfigError([problem], self.config.source)
        return built

    def _instance(self, ref: ComponentRef) -> Tuple[Any, Optional[Problem]]:
        if ref.name is None:
            return self._create(ref)
        key = (ref.kind, ref.name)
        with self._lock:
            if key in self._instances:
                return self._instances[key], None
            if key in self._instance_problems:
                return None, self._instance_problems[key]
            built, problem = self._create(ref)
            if problem is None:
                self._instances[key] = built
            else:
                self._instance_problems[key] = problem
            return built, problem

    def _problem(self, path: KeyPath, message: str, **extra: Any) -> Problem:
        file, line = self.config.locate(path)
        return Problem(message, path=path, file=file, line=line, **extra)

    def _create(self, ref: ComponentRef) -> Tuple[Any, Optional[Problem]]:
        registry = self.config.registry
        what = f"{ref.kind} {ref.label!r} of type {ref.type!r}"
        if registry is None:
            return None, self._problem(ref.path, f"no plugin registry to build {what}")
        try:
            return registry.create(ref.kind, ref.type, ref.options), None
        except ConfigError as exc:  # options that validate only when built (imports)
            detail = "; ".join(f"{p.key}: {p.message}" for p in exc.problems)
            return None, self._problem(
                ref.path, f"could not create {what}: {detail}", given=dict(ref.options)
            )
        except BaseException as exc:
            if not _contained(exc):
                raise
            return None, self._problem(
                ref.path,
                f"could not create {what}: {type(exc).__name__}: {exc}",
                given=dict(ref.options),
            )

    # --- one pipeline -----------------------------------------------------------------------
    def _collect(self, pipeline: PipelineConfig) -> Tuple[Dict[str, Any], List[Problem]]:
        """The keyword arguments of the pipeline's decorator, and what could not be built."""
        from ._exceptions import resolve_exception

        settings = self.config.settings
        problems: List[Problem] = []

        def build(refs: Tuple[ComponentRef, ...]) -> List[Any]:
            out = []
            for ref in refs:
                built, problem = self._instance(ref)
                if problem is None:
                    out.append(built)
                else:
                    problems.append(problem)
            return out

        kwargs: Dict[str, Any] = {
            "observers": build(pipeline.observers),
            "error_handlers": build(pipeline.error_handlers),
            "variable_names": list(pipeline.variables) or None,
            "max_observer_failures": pipeline.max_observer_failures
            or settings.max_observer_failures,
            "enable_async_observers": settings.enable_async_observers
            if pipeline.enable_async_observers is None
            else pipeline.enable_async_observers,
            "name": pipeline.label,
        }
        for key in ("time_source", "variable_extractor"):
            ref = getattr(pipeline, key)
            if ref is not None:
                built = build((ref,))
                if built:
                    kwargs[key] = built[0]
        if pipeline.default_return is not MISSING:
            classes = []
            for i, name in enumerate(pipeline.exception_classes):
                try:
                    classes.append(resolve_exception(name))
                except ValueError as exc:
                    problems.append(
                        self._problem(
                            ("pipelines", pipeline.index, "exception_classes", i),
                            f"cannot use exception class {name!r}: {exc}",
                            given=name,
                            allowed="a built-in exception name, or 'package.module.ClassName'",
                        )
                    )
            if classes or not pipeline.exception_classes:
                kwargs["default_return"] = pipeline.default_return
                if classes:
                    kwargs["exception_classes"] = tuple(classes)
        return kwargs, problems

    def _build(self, pipeline: PipelineConfig) -> CallPyBack:
        from .._decorator import CallPyBack

        kwargs, problems = self._collect(pipeline)
        if problems:
            if self.strict:
                raise ConfigError(problems, self.config.source)
            for problem in problems:
                self._warn(problem, pipeline)
        try:
            return CallPyBack(**kwargs)
        except BaseException as exc:
            if not _contained(exc):
                raise
            raise ConfigError(
                [
                    self._problem(
                        ("pipelines", pipeline.index),
                        f"could not build the decorator of {pipeline.label}: "
                        f"{type(exc).__name__}: {exc}",
                    )
                ],
                self.config.source,
            ) from exc

    def _warn(self, problem: Problem, pipeline: PipelineConfig) -> None:
        key = (problem.path, problem.message)
        if key in self._warned:
            return  # a named component shared by pipelines is reported once
        self._warned.add(key)
        # Located in the configuration file (as a SyntaxWarning is in source): that is where
        # the user will look, not at the line of callpyback that noticed.
        text = str(problem)
        where = f"{problem.location()}: "
        warnings.warn_explicit(
            f"{text[len(where) :] if text.startswith(where) else text}; "
            f'on_build_error = "warn": {pipeline.label} runs without it',
            ComponentBuildWarning,
            filename=problem.file or self.config.source,
            lineno=problem.line or 0,
            module="callpyback.config",
        )
