"""The registry of named component factories, one namespace per kind of component.

This is the contract between plugins (which register factories), configuration (which
instantiates them by name with validated options) and the CLI (which lists them).  Discovery
through entry points and pluggy lives in :mod:`callpyback.plugins`; this module knows nothing
of it, so it stays importable without pluggy.
"""

from __future__ import annotations

import difflib
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from .errors import CallPyBackError, ConfigurationError

__all__ = [
    "KINDS",
    "ComponentSpec",
    "DuplicateComponentError",
    "Registry",
    "UnknownComponentError",
]

#: The four kinds of component, as used in config sections and hook calls.
KINDS: Tuple[str, ...] = (
    "observer",
    "error_handler",
    "time_source",
    "variable_extractor",
    # A top-level table of callpyback.toml owned by a plugin ([web], [db], [state]...): its
    # options model validates the table; the plugin reads it from ``Config.tables``.
    "table",
)


class UnknownComponentError(ConfigurationError):
    """A component name that no loaded plugin registered."""

    def __init__(
        self, kind: str, name: str, known: List[str], plugins: List[str], availability: str = ""
    ) -> None:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        note = availability or f"installed plugins: {', '.join(plugins) or '(none)'}"
        super().__init__(
            f"unknown {kind} type {name!r}.{hint} Registered {kind} types: "
            f"{', '.join(sorted(known)) or '(none)'}. {note[0].upper()}{note[1:]}."
        )
        self.kind = kind
        self.name = name
        self.suggestions = close
        self.known = known  # kept so that the error can be pickled (rebuilt from its arguments)
        self.plugins = plugins

    def __reduce__(self) -> Any:
        return (type(self), (self.kind, self.name, self.known, self.plugins), self.__dict__)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).strip().lower()


class DuplicateComponentError(CallPyBackError):
    """Two plugins registered the same component name for the same kind."""


@dataclass(frozen=True)
class ComponentSpec:
    """A named factory: ``factory(**options)`` builds the component.

    ``options`` is a pydantic model class validating the options (``extra="forbid"`` is
    expected); None means the factory takes no options.
    """

    kind: str
    name: str
    factory: Callable[..., Any]
    options: Optional[type] = None
    description: str = ""
    plugin: str = "callpyback"
    distribution: Optional[str] = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        """``plugin (distribution)``, for error messages naming where a component came from."""
        if self.distribution and self.distribution != self.plugin:
            return f"{self.plugin} (distribution {self.distribution})"
        return self.plugin

    def validate(self, options: Mapping[str, Any], context: Optional[Any] = None) -> Any:
        """Validated options as the model instance (or the plain dict when there is no model).

        Raises pydantic's ``ValidationError`` untouched, so configuration can map each error to
        a key path and a line of the file.  ``context`` is pydantic's validation context; the
        configuration passes ``{callpyback._builtin_options.NO_IMPORT: True}`` so that
        validating imports no user code.
        """
        if self.options is None:
            if options:
                raise ConfigurationError(
                    f"{self.kind} type {self.name!r} takes no options, got {sorted(options)}"
                )
            return {}
        validate = getattr(self.options, "model_validate", None)
        if validate is None:
            return self.options(**options)
        return validate(dict(options), context=context)

    def create(self, options: Optional[Mapping[str, Any]] = None) -> Any:
        """Validate ``options`` and build the component.

        Options that do not validate raise :class:`~callpyback.ConfigError` (a
        ``ConfigurationError`` and a ``ValueError``) listing every problem, each naming the
        option, the value given, what is allowed and this component type.
        """
        try:
            validated = self.validate(options or {})
        except ConfigurationError:
            raise
        except Exception as exc:
            errors = getattr(exc, "errors", None)
            if not callable(errors):
                raise
            from .config._errors import option_problems
            from .config._models import options_error

            problems = option_problems(errors(include_url=False), self, file="<options>")
            source = f"the options of {self.kind} type {self.name!r}"
            raise options_error(problems, source, exc) from None
        if isinstance(validated, dict):
            return self.factory(**validated)
        dump = getattr(validated, "model_dump", None)
        kwargs = dump(exclude_unset=False) if dump is not None else dict(vars(validated))
        return self.factory(**kwargs)


class Registry:
    """Name -> :class:`ComponentSpec`, per kind.  Thread-safe to add to; cheap to read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._specs: Dict[str, Dict[str, ComponentSpec]] = {kind: {} for kind in KINDS}
        #: plugin name -> names registered, for ``callpyback plugins``.
        self.plugins: Dict[str, List[Tuple[str, str]]] = {}
        #: plugin name -> why an installed plugin is not loaded (denied, failed, refused), so
        #: that an unknown type can be traced to the plugin that would have provided it.
        self.unavailable: Dict[str, str] = {}

    def add(self, spec: ComponentSpec) -> None:
        if spec.kind not in KINDS:
            raise ConfigurationError(
                f"plugin {spec.origin} registered {spec.name!r} as kind {spec.kind!r}; "
                f"kinds are {list(KINDS)}"
            )
        with self._lock:
            existing = self._specs[spec.kind].get(spec.name)
            if existing is not None and existing is not spec:
                raise DuplicateComponentError(
                    f"{spec.kind} type {spec.name!r} is registered twice: by {existing.origin} "
                    f"and by {spec.origin}; uninstall one, or deny one of the plugins"
                )
            self._specs[spec.kind][spec.name] = spec
            self.plugins.setdefault(spec.plugin, []).append((spec.kind, spec.name))

    def get(self, kind: str, name: str) -> ComponentSpec:
        try:
            return self._specs[kind][name]
        except KeyError:
            if kind not in self._specs:
                raise ConfigurationError(
                    f"unknown component kind {kind!r}; kinds are {list(KINDS)}"
                ) from None
            raise UnknownComponentError(
                kind, name, list(self._specs[kind]), sorted(self.plugins), self.availability(name)
            ) from None

    def availability(self, name: str) -> str:
        """For a message about an unknown type: which plugins are loaded, and which are
        installed but not loaded (and why), naming first a plugin whose name is the type's
        prefix (``acme`` for ``acme.audit``)."""
        loaded = f"installed plugins: {', '.join(sorted(self.plugins)) or '(none)'}"
        if not self.unavailable:
            return loaded
        prefix = _norm(name.split(".", 1)[0])
        likely = [why for plugin, why in self.unavailable.items() if _norm(plugin) == prefix]
        if likely:
            return f"plugin {likely[0]}; loaded plugins: {', '.join(sorted(self.plugins))}"
        others = "; ".join(self.unavailable[p] for p in sorted(self.unavailable))
        return f"{loaded}; installed but not loaded: {others}"

    def names(self, kind: str) -> List[str]:
        return sorted(self._specs[kind])

    def create(self, kind: str, name: str, options: Optional[Mapping[str, Any]] = None) -> Any:
        return self.get(kind, name).create(options)

    def __iter__(self) -> Iterator[ComponentSpec]:
        for kind in KINDS:
            yield from self._specs[kind].values()

    def __contains__(self, key: Tuple[str, str]) -> bool:
        kind, name = key
        return name in self._specs.get(kind, {})

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={len(v)}" for k, v in self._specs.items())
        return f"<Registry {counts}>"
