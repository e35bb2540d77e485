"""What the hook asks of a config, and the modules it never touches whatever the config says."""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, FrozenSet, Optional

from typing_extensions import Protocol, runtime_checkable

from ..errors import CallPyBackError

__all__ = ["GuardedSelector", "Selector", "SelectorError", "is_protected", "resolve_selector"]


@runtime_checkable
class Selector(Protocol):
    """The part of :class:`callpyback.config.Config` the import hook uses.

    ``may_match_module`` is the cheap precheck run for every import (False: leave the module
    alone); ``wrapper_for`` returns the ``CallPyBack`` decorator to apply to one function, or
    None.  ``settings.enabled`` False turns the hook off; ``source`` names where the selection
    came from (a file path, or any label).
    """

    source: Any
    settings: Any

    def may_match_module(self, module: str) -> bool:
        """False when no function of ``module`` can be selected (the module is skipped)."""

    def wrapper_for(self, module: str, qualname: str) -> Any:
        """The decorator to apply to ``module:qualname``, or None to leave it alone."""


class SelectorError(CallPyBackError):
    """A selector raised ``SystemExit`` (or another ``BaseException``) while the hook asked it
    about a function: the hook reports that function as failed, and the program goes on."""


def _log() -> Any:
    import logging

    return logging.getLogger("callpyback.autoinstrument")


class GuardedSelector:
    """A selector of the user's (not a :class:`~callpyback.config.Config`), kept from ending
    the program: the hook runs inside imports, where a ``SystemExit`` would end the program
    with no word of why.  Whatever its methods raise (``KeyboardInterrupt`` excepted) is
    reported, naming the selector; ``may_match_module`` then answers False (the module is left
    alone) and ``wrapper_for`` raises :class:`SelectorError` (the function is left alone and
    reported as failed).  Every other attribute is the selector's own."""

    def __init__(self, selector: Any) -> None:
        object.__setattr__(self, "selector", selector)
        object.__setattr__(self, "_reported", set())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.selector, name)

    def __repr__(self) -> str:
        return f"<GuardedSelector {self.selector!r}>"

    def may_match_module(self, module: str) -> bool:
        try:
            return bool(self.selector.may_match_module(module))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            self._report("may_match_module", module, exc)
            return False

    def wrapper_for(self, module: str, qualname: str) -> Any:
        try:
            return self.selector.wrapper_for(module, qualname)
        except KeyboardInterrupt:
            raise
        except Exception:
            raise  # the hook reports the function as failed, with this error
        except BaseException as exc:
            raise SelectorError(
                f"selector {self.selector!r} raised {type(exc).__name__}({exc}) in "
                f"wrapper_for({module!r}, {qualname!r})"
            ) from exc

    def _report(self, method: str, argument: str, exc: BaseException) -> None:
        key = (method, type(exc))
        if key in self._reported:
            return
        self._reported.add(key)
        _log().error(
            "callpyback: selector %r raised %s(%s) in %s(%r); the import hook leaves such "
            "modules alone (reported once)",
            self.selector,
            type(exc).__name__,
            exc,
            method,
            argument,
        )


def resolve_selector(config: Any) -> Any:
    """``None`` (discover ``callpyback.toml``), a path, or an object shaped like a Config.

    A loaded :class:`~callpyback.config.Config` is used as it is (it never lets a
    ``SystemExit`` through); any other selector is wrapped in a :class:`GuardedSelector`.
    """
    from ..config._config import Config

    if config is None or isinstance(config, (str, os.PathLike)):
        from ..config import load_config  # lazily: pydantic and tomllib load only here

        path = None if config is None else os.fspath(config)
        return load_config(path)
    if isinstance(config, Config):
        return config
    missing = [
        name
        for name in ("may_match_module", "wrapper_for")
        if not callable(getattr(config, name, None))
    ]
    if missing or not hasattr(config, "settings"):
        from ..errors import ConfigurationError

        raise ConfigurationError(
            f"install(config=...) needs None, a path to a callpyback.toml, or a config object "
            f"with may_match_module(), wrapper_for() and settings; got "
            f"{config!r}, which lacks {missing or ['settings']}"
        )
    return GuardedSelector(config)


def unguarded(selector: Any) -> Any:
    """The user's own selector inside a guard (for what needs its real type)."""
    return selector.selector if isinstance(selector, GuardedSelector) else selector


# --- modules that are never instrumented unless named explicitly ---------------------------------

# Our own top-level modules: never instrumented, whatever a pattern says (the pytest plugin
# is loaded by every pytest run, before a session config's `*` could select it).
_OWN = ("callpyback", "_callpyback_pytest")
#: Top-level names of plugin packages (entry-point group ``callpyback``), filled at install().
_plugin_tops: FrozenSet[str] = frozenset()
_stdlib: Optional[FrozenSet[str]] = None
#: top-level name -> protected?  A dict lookup per import keeps the no-match path cheap.
_cache: Dict[str, bool] = {}


def _stdlib_names() -> FrozenSet[str]:
    global _stdlib
    if _stdlib is None:
        names = getattr(sys, "stdlib_module_names", None)
        if names is None:  # Python 3.9: list the stdlib directory once
            import sysconfig

            found = set(sys.builtin_module_names)
            for path in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}:
                try:
                    entries = os.listdir(path)
                except OSError:
                    continue
                for entry in entries:
                    if entry in ("site-packages", "dist-packages"):
                        continue
                    stem = entry.split(".", 1)[0]
                    if stem.isidentifier():
                        found.add(stem)
            lib_dynload = os.path.join(sysconfig.get_paths()["platstdlib"], "lib-dynload")
            if os.path.isdir(lib_dynload):
                found.update(e.split(".", 1)[0] for e in os.listdir(lib_dynload))
            names = found
        _stdlib = frozenset(names) | {"__future__"}
    return _stdlib


#: callpyback's own dependencies and the test runner: instrumenting them from a wildcard would
#: observe the config machinery itself, so, like the stdlib, only an explicit pattern does.
_DEPENDENCIES = frozenset(
    {
        "pluggy",
        "pydantic",
        "pydantic_core",
        "typing_extensions",
        "annotated_types",
        "typing_inspection",
        "tomli",
        "importlib_metadata",
        "zipp",
        "_pytest",
        "pytest",
        "opentelemetry",  # the OTel plugin's API/SDK: its exporters run inside our observers
    }
)
#: Modules defining the import machinery in use (meta-path finders, path hooks) and the
#: selector itself: instrumenting them would make every import, or every lookup, recurse.
_machinery: FrozenSet[str] = frozenset()


def set_plugin_packages(tops: FrozenSet[str]) -> None:
    global _plugin_tops
    _plugin_tops = tops
    _cache.clear()


def set_machinery(selector: Any) -> None:
    """Record the modules never to touch because imports or selection run through them."""
    global _machinery
    selector = unguarded(selector)
    mods = {type(selector).__module__, type(getattr(selector, "decorator", None)).__module__}
    for obj in (*sys.meta_path, *sys.path_hooks):
        cls = obj if isinstance(obj, type) else type(obj)
        mods.add(getattr(cls, "__module__", "") or "")
        mods.add(getattr(obj, "__module__", "") or "")
    _machinery = frozenset(m for m in mods if m and m != "builtins")
    _cache.clear()


def discover_plugin_packages() -> FrozenSet[str]:
    """Top-level package of every ``callpyback`` entry point (scanned once, at install)."""
    try:
        from importlib.metadata import entry_points
    except ImportError:  # pragma: no cover - 3.9 without the stdlib selectable API
        return frozenset()
    try:
        eps: Any = entry_points()
        group = (
            eps.select(group="callpyback") if hasattr(eps, "select") else eps.get("callpyback", ())
        )
        return frozenset(ep.value.split(":", 1)[0].split(".", 1)[0].strip() for ep in group)
    except Exception:  # a broken distribution must not stop install()
        return frozenset()


def protection(module: str) -> Optional[str]:
    """Why ``module`` is never instrumented by a wildcard (None: it may be)."""
    top = module.partition(".")[0]
    if top in _OWN or top.startswith("callpyback_"):
        return "callpyback itself"
    if top in _plugin_tops:
        return "a callpyback plugin"
    if module in _machinery or top in _machinery or top.startswith("__editable__"):
        return "the import machinery or the selector in use"
    if top in _stdlib_names():
        return STDLIB
    if top in _DEPENDENCIES:
        return DEPENDENCY
    return None


STDLIB = "the standard library"
DEPENDENCY = "a dependency of callpyback or the test runner"


def is_protected(module: str, selector: Selector) -> bool:
    """True if the hook must leave ``module`` alone even though a pattern may match it.

    callpyback and its plugins are never instrumented.  The standard library is only when a
    pattern names it explicitly: a selector that offers ``names_module_explicitly(module)`` is
    asked; otherwise a config whose patterns match an invented module name (a catch-all such
    as ``*``) is taken as not naming anything explicitly.
    """
    cached = _cache.get(module)
    if cached is None:
        cached = _cache[module] = protection(module) is not None
    if not cached:
        return False
    if protection(module) not in (STDLIB, DEPENDENCY):
        return True
    explicit = getattr(selector, "names_module_explicitly", None)
    if callable(explicit):
        return not explicit(module)
    return bool(selector.may_match_module("callpyback_probe_no_such_module_zz"))
