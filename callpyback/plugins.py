"""Plugin discovery: the built-in plugin, entry points in group ``callpyback``, and plugins
registered in code, all filling one :class:`~callpyback._registry.Registry`.

Nothing here runs at ``import callpyback``: the first :func:`get_registry` (from the config, the
CLI or your code) creates the pluggy manager and scans the entry points, once per
:class:`PluginHost` (the module functions use the process's default host).

* Each plugin is loaded in isolation: one that fails to import, declares an unsupported
  callpyback version, has a malformed hook, or raises while registering (``SystemExit``
  included) is reported once (logger ``callpyback.plugins``) and recorded in
  :func:`list_plugins`; the others keep working.
* Allow and deny lists (:func:`configure`, or ``CALLPYBACK_PLUGINS_ALLOW`` /
  ``CALLPYBACK_PLUGINS_DENY``) match the entry-point name or the distribution name.
* The core registers its own components through the same hook, directly rather than through
  an entry point, so it can be neither missing nor denied.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from ._registry import KINDS, ComponentSpec, DuplicateComponentError, Registry
from .errors import ConfigurationError

if TYPE_CHECKING:
    import logging

    import pluggy

__all__ = [
    "ALLOW_ENV",
    "DENY_ENV",
    "GROUP",
    "ComponentRegistrar",
    "PluginHost",
    "PluginInfo",
    "configure",
    "default_host",
    "get_registry",
    "list_plugins",
    "notify_config",
    "register_plugin",
    "reset",
    "version_matches",
]

#: The entry-point group plugins are discovered in.
GROUP = "callpyback"
#: Environment variables read when :func:`configure` was not given a list.
ALLOW_ENV = "CALLPYBACK_PLUGINS_ALLOW"
#: The deny list variable; the deny list wins over the allow list.
DENY_ENV = "CALLPYBACK_PLUGINS_DENY"
#: The name the core's own plugin is registered under.
BUILTIN = "callpyback"

LOADED, FAILED, DENIED, REFUSED = "loaded", "failed", "denied", "refused"


def _log() -> logging.Logger:
    import logging

    return logging.getLogger("callpyback.plugins")


@dataclass(frozen=True)
class PluginInfo:
    """One plugin as discovery saw it: what it is, where it came from, what it registered."""

    name: str
    distribution: Optional[str]
    version: Optional[str]
    components: Tuple[Tuple[str, str], ...]
    status: str  # "loaded", "failed", "denied" or "refused"
    error: Optional[str] = None
    #: "builtin", "entry point" or "programmatic".
    source: str = "entry point"
    #: ``name = module:attr`` for entry points.
    entry_point: Optional[str] = None


class ComponentRegistrar:
    """What ``callpyback_register_components(registry)`` receives.

    Every component added is stamped with the plugin's name and distribution (so a duplicate
    name can be traced to both distributions).  Components are staged and added to the real
    registry only once the hook has returned, all or nothing.
    """

    def __init__(self, plugin: str, distribution: Optional[str]) -> None:
        self.plugin = plugin
        self.distribution = distribution
        self.specs: List[ComponentSpec] = []

    def add(
        self,
        kind: Union[str, ComponentSpec],
        name: Optional[str] = None,
        factory: Optional[Callable[..., Any]] = None,
        *,
        options: Optional[type] = None,
        description: str = "",
    ) -> ComponentSpec:
        """Register ``factory`` as component ``name`` of ``kind`` (or add a ready ComponentSpec)."""
        if isinstance(kind, ComponentSpec):
            spec = replace(kind, plugin=self.plugin, distribution=self.distribution)
        else:
            if not isinstance(name, str) or not name.strip():
                raise ConfigurationError(
                    f"plugin {self.plugin!r}: component name must be a non-empty string, "
                    f"got {name!r}"
                )
            if not callable(factory):
                raise ConfigurationError(
                    f"plugin {self.plugin!r}: the factory of {kind} {name!r} must be callable, "
                    f"got {factory!r}"
                )
            spec = ComponentSpec(
                kind=kind,
                name=name,
                factory=factory,
                options=options,
                description=description,
                plugin=self.plugin,
                distribution=self.distribution,
            )
        self._check(spec)
        self.specs.append(spec)
        return spec

    def observer(self, name: str, factory: Callable[..., Any], **kw: Any) -> ComponentSpec:
        """Register an observer type ``name`` built by ``factory``."""
        return self.add("observer", name, factory, **kw)

    def error_handler(self, name: str, factory: Callable[..., Any], **kw: Any) -> ComponentSpec:
        """Register an error-handler type ``name`` built by ``factory``."""
        return self.add("error_handler", name, factory, **kw)

    def time_source(self, name: str, factory: Callable[..., Any], **kw: Any) -> ComponentSpec:
        """Register a time-source type ``name`` built by ``factory``."""
        return self.add("time_source", name, factory, **kw)

    def variable_extractor(
        self, name: str, factory: Callable[..., Any], **kw: Any
    ) -> ComponentSpec:
        """Register a variable-extractor type ``name`` built by ``factory``."""
        return self.add("variable_extractor", name, factory, **kw)

    def table(self, name: str, model: type, *, description: str = "") -> ComponentSpec:
        """Own the top-level table ``[name]`` of ``callpyback.toml``, validated by ``model``
        (a pydantic model with ``extra="forbid"``).  Its validated value is
        ``config.tables[name]`` (absent when the file has no such table); act on it in
        ``callpyback_install(config)``."""
        if not isinstance(model, type):
            raise ConfigurationError(
                f"plugin {self.plugin!r}: table {name!r} needs a pydantic model class, "
                f"got {model!r}"
            )
        return self.add("table", name, model, options=model, description=description)

    def _check(self, spec: ComponentSpec) -> None:
        where = f"plugin {self.plugin!r}, {spec.kind} {spec.name!r}"
        if spec.kind not in KINDS:
            raise ConfigurationError(
                f"{where}: unknown kind {spec.kind!r}; kinds are {list(KINDS)}"
            )
        model = spec.options
        if model is not None:
            if not (isinstance(model, type) and callable(getattr(model, "model_validate", None))):
                raise ConfigurationError(
                    f"{where}: options must be a pydantic model class, got {model!r}"
                )
            config = getattr(model, "model_config", {}) or {}
            if config.get("extra") != "forbid":
                raise ConfigurationError(
                    f"{where}: options model {model.__name__} must set "
                    "model_config = ConfigDict(extra='forbid') so that a misspelt option in the "
                    "config is an error rather than silently ignored"
                )
        for other in self.specs:
            if other.kind == spec.kind and other.name == spec.name:
                raise DuplicateComponentError(f"{where} is registered twice by the same plugin")

    def commit(self, registry: Registry) -> Tuple[Tuple[str, str], ...]:
        """Add every staged component, or none if one of the names is already taken."""
        for spec in self.specs:
            if (spec.kind, spec.name) in registry:
                existing = registry.get(spec.kind, spec.name)
                raise DuplicateComponentError(
                    f"{spec.kind} type {spec.name!r} is registered twice: by {existing.origin} "
                    f"and by {spec.origin}; uninstall one, or deny one of the plugins "
                    f"({DENY_ENV}={self.distribution or self.plugin})"
                )
        for spec in self.specs:
            registry.add(spec)
        return tuple((s.kind, s.name) for s in self.specs)


# --- version gating ------------------------------------------------------------------------


def _our_version() -> str:
    import callpyback

    return str(callpyback.__version__)


def version_matches(spec: str, version: str) -> bool:
    """Whether ``version`` satisfies the PEP 440 ``spec`` (``">=3,<4"``), using ``packaging``.

    Raises ``ValueError`` for a specifier ``packaging`` cannot parse, and ``ImportError`` when
    ``packaging`` is not installed.
    """
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        return SpecifierSet(spec).contains(Version(version), prereleases=True)
    except (InvalidSpecifier, InvalidVersion) as exc:
        raise ValueError(str(exc)) from None


def _version_problem(plugin: Any, name: str) -> Optional[str]:
    spec = getattr(plugin, "CALLPYBACK_REQUIRES", None)
    if spec is None:
        return None
    ours = _our_version()
    if not isinstance(spec, str):
        return (
            f"plugin {name!r} declares CALLPYBACK_REQUIRES = {spec!r}; it must be a version "
            "specifier string such as '>=3,<4'"
        )
    try:
        ok = version_matches(spec, ours)
    except ImportError:
        # The gate only restates the distribution's own requirement, which pip enforces; it
        # needs ``packaging`` (nearly always installed) and is skipped, said once, without it.
        _log().info(
            "callpyback plugin %r declares CALLPYBACK_REQUIRES = %r, which is not checked "
            "because 'packaging' is not installed",
            name,
            spec,
        )
        return None
    except ValueError as exc:
        return f"plugin {name!r} declares an invalid CALLPYBACK_REQUIRES = {spec!r}: {exc}"
    if ok:
        return None
    return (
        f"plugin {name!r} supports callpyback {spec} but this is callpyback {ours}; "
        "install a version of the plugin made for this callpyback, or deny the plugin"
    )


# --- allow and deny lists ------------------------------------------------------------------


def _norm(name: str) -> str:
    # PEP 503 normalisation, so "callpyback_finance" matches "callpyback-finance".
    return re.sub(r"[-_.]+", "-", name).strip().lower()


def _parse_list(value: Any, what: str) -> Optional[Tuple[str, ...]]:
    if value is None:
        return None
    if isinstance(value, str):
        items: List[Any] = value.split(",")
    else:
        try:
            items = list(value)
        except TypeError:
            raise ConfigurationError(
                f"{what} must be a list of plugin or distribution names, got {value!r}"
            ) from None
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(
                f"{what} must contain plugin or distribution names (strings), got {item!r} "
                f"in {value!r}"
            )
    return tuple(i.strip() for i in items if i.strip())


def _from_env(var: str) -> Optional[Tuple[str, ...]]:
    # Like every CALLPYBACK_* variable, one that names nothing (empty, or only commas and
    # spaces) counts as unset.  To load no third-party plugin, allow only the core:
    # CALLPYBACK_PLUGINS_ALLOW=callpyback.
    names = _parse_list(os.environ.get(var, ""), var)
    return names or None


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _contained(exc: BaseException) -> bool:
    """Whether a plugin's exception is contained (reported, the rest go on) or propagates.

    ``SystemExit`` and other ``BaseException``s from a plugin are contained too: a plugin must
    never end the program silently.  Only ``KeyboardInterrupt`` (the user's Ctrl-C) goes on.
    """
    return not isinstance(exc, KeyboardInterrupt)


# --- the host --------------------------------------------------------------------------------


class PluginHost:
    """Plugin discovery and the registry it fills: the pluggy manager, the entry points (scanned
    once), the allow and deny lists, the plugins registered in code, and what each one did.

    The module functions (:func:`get_registry`, :func:`configure`, :func:`register_plugin`,
    :func:`list_plugins`, :func:`notify_config`) use the process's default host;
    :func:`reset` replaces it.  A host of your own is independent of it (tests, tools).
    """

    def __init__(self) -> None:
        # Re-entrant: a plugin's hook may itself call get_registry() while discovery runs.
        self._lock = threading.RLock()
        self._pm: Optional[pluggy.PluginManager] = None
        self.registry: Optional[Registry] = None  # None until discovery has run
        self._partial: Optional[Registry] = None  # the registry while discovery fills it
        self._infos: Dict[str, PluginInfo] = {}
        self._programmatic: List[Tuple[Any, str]] = []
        self._allow: Optional[Tuple[str, ...]] = None
        self._deny: Optional[Tuple[str, ...]] = None
        self._entry_points: Optional[List[Any]] = None

    def __repr__(self) -> str:
        state = "discovered" if self.registry is not None else "not discovered yet"
        return f"<PluginHost {state}, {len(self._infos)} plugins>"

    # --- public operations -------------------------------------------------------------------
    def configure(
        self,
        allow: Union[Sequence[str], str, None] = None,
        deny: Union[Sequence[str], str, None] = None,
    ) -> None:
        """See :func:`callpyback.plugins.configure`."""
        allow_t = _parse_list(allow, "allow")
        deny_t = _parse_list(deny, "deny")
        with self._lock:
            self._allow, self._deny = allow_t, deny_t
            if self.registry is not None or self._pm is not None:
                self.registry = None
                self._infos = {}
                self._pm = None  # rebuilt with the programmatic plugins on next use

    def get_registry(self) -> Registry:
        """The registry of every loaded plugin's components; discovery runs on first call."""
        registry = self.registry
        if registry is not None:
            return registry
        with self._lock:
            if self.registry is not None:
                return self.registry
            if self._partial is not None:
                return self._partial  # re-entered from a plugin's hook while discovery runs
            registry = self._partial = Registry()
            try:
                self._discover(self._ensure_pm(), registry)
            finally:
                self._partial = None
            self.registry = registry
            return registry

    def list_plugins(self) -> List[PluginInfo]:
        """Every plugin discovery considered (builtin first), loaded or not."""
        self.get_registry()
        with self._lock:
            return list(self._infos.values())

    def register(self, obj: Any, name: Optional[str] = None) -> str:
        """See :func:`callpyback.plugins.register_plugin`."""
        with self._lock:
            pm = self._ensure_pm()
            if name is None:
                name = getattr(obj, "__name__", None) or pm.get_canonical_name(obj)
            if not isinstance(name, str) or not name:
                raise ConfigurationError(
                    f"register_plugin(name=...) must be a non-empty string, got {name!r}"
                )
            if pm.is_registered(obj):
                raise ConfigurationError(
                    f"plugin {obj!r} is already registered as {pm.get_name(obj)!r}"
                )
            if pm.has_plugin(name) or name in self._infos:
                raise ConfigurationError(
                    f"a plugin named {name!r} is already registered; pass register_plugin(obj, "
                    "name=...) with another name"
                )
            problem = _version_problem(obj, name) or _pm_register(pm, obj, name)
            if problem is not None:
                raise ConfigurationError(problem)
            if self.registry is not None:
                try:
                    components = _register_components(pm, self.registry, obj, name, None)
                except BaseException:
                    pm.unregister(obj)
                    raise
                self._infos[name] = PluginInfo(
                    name, None, None, components, LOADED, source="programmatic"
                )
                self._note_unavailable(self.registry)
            self._programmatic.append((obj, name))
            return name

    def notify_config(self, config: Any) -> Dict[str, str]:
        """See :func:`callpyback.plugins.notify_config`."""
        self.get_registry()
        with self._lock:
            pm = self._ensure_pm()
            loaded = [info.name for info in self._infos.values() if info.status == LOADED]
        failures: Dict[str, str] = {}
        for name in loaded:
            obj = pm.get_plugin(name)
            if obj is None:
                continue
            try:
                _call_hook(pm, "callpyback_configure", obj, config=config)
            except ConfigurationError:
                raise
            except BaseException as exc:
                if not _contained(exc):
                    raise
                failures[name] = _short(exc)
                _log().error(
                    "callpyback plugin %r failed in callpyback_configure: %s; the configuration "
                    "is used without it",
                    name,
                    _short(exc),
                    exc_info=exc,
                )
        return failures

    def call_all(self, hook: str, **kwargs: Any) -> Dict[str, str]:
        """Call ``hook`` on every loaded plugin, each in isolation (``install`` / ``uninstall``):
        a failure is logged with the plugin's name, and the others still run."""
        self.get_registry()
        with self._lock:
            pm = self._ensure_pm()
            loaded = [info.name for info in self._infos.values() if info.status == LOADED]
        failures: Dict[str, str] = {}
        for name in loaded:
            obj = pm.get_plugin(name)
            if obj is None:
                continue
            try:
                _call_hook(pm, hook, obj, **kwargs)
            except BaseException as exc:
                if not _contained(exc):
                    raise
                failures[name] = _short(exc)
                _log().error(
                    "callpyback plugin %r failed in %s: %s; the program runs without it",
                    name,
                    hook,
                    _short(exc),
                    exc_info=exc,
                )
        return failures

    # --- discovery ---------------------------------------------------------------------------
    def _new_pm(self) -> pluggy.PluginManager:
        import pluggy

        from . import _builtin_plugin, hookspecs

        pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        pm.add_hookspecs(hookspecs)
        pm.register(_builtin_plugin, name=BUILTIN)
        for obj, name in self._programmatic:
            pm.register(obj, name=name)
        return pm

    def _ensure_pm(self) -> pluggy.PluginManager:
        if self._pm is None:
            self._pm = self._new_pm()
        return self._pm

    def _discover(self, pm: pluggy.PluginManager, registry: Registry) -> None:
        from . import _builtin_plugin

        # The core's own components: a failure here is our bug and must surface.
        builtin = _register_components(pm, registry, _builtin_plugin, BUILTIN, "callpyback")
        self._infos = {
            BUILTIN: PluginInfo(
                BUILTIN, "callpyback", _our_version(), builtin, LOADED, source="builtin"
            )
        }
        allow, deny = self._lists()
        self._warn_unmatched(allow, deny)
        for ep in self._scan():
            info = self._load_entry_point(pm, registry, ep, allow, deny)
            self._infos.setdefault(info.name, info)
        for obj, name in self._programmatic:
            self._infos[name] = _load_programmatic(pm, registry, obj, name)
        self._note_unavailable(registry)

    def _note_unavailable(self, registry: Registry) -> None:
        # The registry names the installed plugins that are not loaded, so that an unknown
        # component type can say "plugin 'acme' is installed but denied" instead of "unknown".
        registry.unavailable = {
            info.name: _why_not_loaded(info)
            for info in self._infos.values()
            if info.status != LOADED
        }

    def _lists(self) -> Tuple[Optional[Tuple[str, ...]], Tuple[str, ...]]:
        allow = self._allow if self._allow is not None else _from_env(ALLOW_ENV)
        deny = self._deny if self._deny is not None else _from_env(DENY_ENV)
        return allow, deny or ()

    def _scan(self) -> List[Any]:
        """The ``callpyback`` entry points, deduplicated, in a stable order; scanned once."""
        if self._entry_points is None:
            if sys.version_info >= (3, 10):
                from importlib.metadata import entry_points
            else:  # pragma: no cover - exercised on 3.9 only
                from importlib_metadata import entry_points
            seen = set()
            found = []
            # sys.path order decides which copy of a distribution installed twice is used.
            for ep in entry_points(group=GROUP):
                key = (_norm(_dist_name(ep) or ""), ep.name)
                if key in seen:
                    continue
                seen.add(key)
                found.append(ep)
            found.sort(key=lambda ep: (_norm(_dist_name(ep) or ""), ep.name))
            self._entry_points = found
        return self._entry_points

    def _load_entry_point(
        self,
        pm: pluggy.PluginManager,
        registry: Registry,
        ep: Any,
        allow: Optional[Tuple[str, ...]],
        deny: Tuple[str, ...],
    ) -> PluginInfo:
        name, dist, version = ep.name, _dist_name(ep), _dist_version(ep)
        where = f"entry point {ep.name} = {ep.value} (distribution {dist or '?'} {version or '?'})"
        info = PluginInfo(
            name,
            dist,
            version,
            (),
            LOADED,
            source="entry point",
            entry_point=f"{ep.name} = {ep.value}",
        )
        excluded = _exclusion(name, dist, allow, deny)
        if excluded:
            _log().info("callpyback plugin %s not loaded: %s", where, excluded)
            return replace(info, status=DENIED, error=excluded)
        if name in self._infos or pm.has_plugin(name):
            other = self._infos.get(name)
            by = f" by distribution {other.distribution}" if other and other.distribution else ""
            return _report(info, FAILED, f"the plugin name {name!r} is already taken{by}", where)
        try:
            obj = ep.load()
        except BaseException as exc:
            if not _contained(exc):
                raise
            return _report(info, FAILED, f"failed to import: {_short(exc)}", where, exc)
        problem = _version_problem(obj, name)
        if problem is None:
            problem = _pm_register(pm, obj, name)
        if problem is not None:
            return _report(info, REFUSED, problem, where)
        try:
            components = _register_components(pm, registry, obj, name, dist)
        except BaseException as exc:
            if not _contained(exc):
                raise
            pm.unregister(obj)
            return _report(
                info, FAILED, f"failed to register its components: {_short(exc)}", where, exc
            )
        return replace(info, components=components)

    def _warn_unmatched(self, allow: Optional[Tuple[str, ...]], deny: Tuple[str, ...]) -> None:
        # A misspelt deny entry would leave the plugin it meant active: say so.  The core's
        # own name counts as installed (ALLOW=callpyback means "the core only").
        eps = self._scan()
        known = {_norm(BUILTIN)} | {_norm(ep.name) for ep in eps}
        known |= {_norm(d) for d in map(_dist_name, eps) if d}
        for what, entries in (("allow", allow or ()), ("deny", deny)):
            for entry in entries:
                if _norm(entry) not in known:
                    close = difflib.get_close_matches(_norm(entry), sorted(known), n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    _log().warning(
                        "plugin %s list entry %r matches no installed plugin or distribution%s",
                        what,
                        entry,
                        hint,
                    )


def _why_not_loaded(info: PluginInfo) -> str:
    dist = f"distribution {info.distribution} {info.version or ''}".rstrip()
    status = {DENIED: "not loaded", FAILED: "failed", REFUSED: "refused"}.get(info.status, "")
    return f"{info.name} ({dist}) {status}: {info.error}"


def _pm_register(pm: pluggy.PluginManager, obj: Any, name: str) -> Optional[str]:
    """Register with pluggy; returns why it was refused (pluggy's message), or None."""
    import pluggy

    try:
        pm.register(obj, name=name)
    except pluggy.PluginValidationError as exc:
        return f"plugin {name!r} was refused by pluggy: {exc}"
    problem = _unknown_hooks(pm, obj, name)
    if problem:
        pm.unregister(obj)
    return problem


def _unknown_hooks(pm: pluggy.PluginManager, obj: Any, name: str) -> Optional[str]:
    # pluggy accepts hooks it has no spec for (check_pending would judge every plugin at once);
    # a misspelt hook name would otherwise be silently ignored.
    from . import hookspecs

    known = [n for n in hookspecs.__all__ if n.startswith("callpyback_")]
    for caller in pm.get_hookcallers(obj) or ():
        if caller.has_spec():
            continue
        optional = all(impl.optionalhook for impl in caller.get_hookimpls() if impl.plugin is obj)
        if optional:
            continue
        close = difflib.get_close_matches(caller.name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (
            f"plugin {name!r} implements unknown hook {caller.name!r}{hint}; "
            f"CallPyBack's hooks are {known}"
        )
    return None


def _call_hook(pm: pluggy.PluginManager, hook_name: str, obj: Any, **kwargs: Any) -> None:
    """Call one plugin's implementation of a hook, alone (pluggy stops at the first failure)."""
    caller = getattr(pm.hook, hook_name)
    for impl in caller.get_hookimpls():
        if impl.plugin is obj:
            impl.function(*[kwargs[arg] for arg in impl.argnames])


def _register_components(
    pm: pluggy.PluginManager, registry: Registry, obj: Any, name: str, dist: Optional[str]
) -> Tuple[Tuple[str, str], ...]:
    registrar = ComponentRegistrar(name, dist)
    _call_hook(pm, "callpyback_register_components", obj, registry=registrar)
    return registrar.commit(registry)


def _dist_name(ep: Any) -> Optional[str]:
    dist = getattr(ep, "dist", None)
    return None if dist is None else str(dist.metadata["Name"])


def _dist_version(ep: Any) -> Optional[str]:
    dist = getattr(ep, "dist", None)
    return None if dist is None else str(dist.version)


def _exclusion(
    name: str, dist: Optional[str], allow: Optional[Tuple[str, ...]], deny: Tuple[str, ...]
) -> Optional[str]:
    keys = {_norm(name)} | ({_norm(dist)} if dist else set())
    for entry in deny:
        if _norm(entry) in keys:
            return f"denied by the deny list entry {entry!r}"
    if allow is not None and not any(_norm(entry) in keys for entry in allow):
        return f"not in the allow list {list(allow)!r}"
    return None


def _report(
    info: PluginInfo, status: str, error: str, where: str, exc: Optional[BaseException] = None
) -> PluginInfo:
    # Reported once: discovery runs once per host (until configure() or reset()).
    _log().error(
        "callpyback plugin %s %s: %s; the other plugins are unaffected",
        where,
        "was refused" if status == REFUSED else "failed",
        error,
        exc_info=exc,
    )
    return replace(info, status=status, error=error)


def _load_programmatic(
    pm: pluggy.PluginManager, registry: Registry, obj: Any, name: str
) -> PluginInfo:
    info = PluginInfo(name, None, None, (), LOADED, source="programmatic")
    try:
        components = _register_components(pm, registry, obj, name, None)
    except BaseException as exc:
        if not _contained(exc):
            raise
        pm.unregister(obj)
        return _report(
            info, FAILED, f"failed to register its components: {_short(exc)}", f"{name!r}", exc
        )
    return replace(info, components=components)


# --- the process's default host ----------------------------------------------------------------

_host = PluginHost()


def default_host() -> PluginHost:
    """The host the module functions use (replaced by :func:`reset`)."""
    return _host


def reset() -> None:
    """Forget discovery, the registry, programmatic plugins and allow/deny settings (tests)."""
    global _host
    _host = PluginHost()


def configure(
    allow: Union[Sequence[str], str, None] = None, deny: Union[Sequence[str], str, None] = None
) -> None:
    """Set the allow and deny lists (plugin or distribution names; the deny list wins).

    ``None`` falls back to ``CALLPYBACK_PLUGINS_ALLOW`` / ``CALLPYBACK_PLUGINS_DENY``
    (comma-separated; a variable naming nothing counts as unset).  An empty allow list
    (``allow=[]``) loads no third-party plugin.  If discovery has already run, it runs again
    (from the cached entry points) on the next :func:`get_registry`.
    """
    _host.configure(allow, deny)


def get_registry() -> Registry:
    """The registry of every component from every loaded plugin; discovery runs on first call."""
    registry = _host.registry  # the common case: one global read and one attribute read
    return registry if registry is not None else _host.get_registry()


def list_plugins() -> List[PluginInfo]:
    """Every plugin discovery considered (builtin first), loaded or not, with its components."""
    return _host.list_plugins()


def register_plugin(obj: Any, name: Optional[str] = None) -> str:
    """Register a plugin object (a module, class or instance with hook implementations).

    Returns the plugin name.  Its components join the registry now if discovery already ran,
    otherwise when it runs.  An invalid hook, an unsupported callpyback version or a taken
    name raises :class:`ConfigurationError`; a duplicate component name raises
    :class:`DuplicateComponentError`.
    """
    return _host.register(obj, name)


def notify_install(config: Any) -> Dict[str, str]:
    """Call ``callpyback_install(config)`` on every loaded plugin (see the hookspec)."""
    return _host.call_all("callpyback_install", config=config)


def notify_uninstall() -> Dict[str, str]:
    """Call ``callpyback_uninstall()`` on every loaded plugin."""
    return _host.call_all("callpyback_uninstall")


def notify_config(config: Any) -> Dict[str, str]:
    """Call ``callpyback_configure(config)`` on every loaded plugin, each in isolation.

    A plugin raising :class:`ConfigurationError` rejects the configuration: that error
    propagates.  Any other exception (``SystemExit`` included) is logged and the plugin is
    skipped; the returned mapping is plugin name -> error.
    """
    return _host.notify_config(config)
