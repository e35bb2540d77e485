"""The ``sys.meta_path`` finder: it asks the other finders, then wraps the loader they chose.

The wrapping loader forwards every attribute to the real one, and puts the real loader back on
``module.__loader__`` / ``__spec__.loader`` before the module's code runs, so that
``importlib.resources``, ``pkgutil.get_data`` and anything that inspects loaders see the truth.
No lock of ours is held while the import system runs user code.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec
    from types import ModuleType

    from ._state import Installation

__all__ = ["InstrumentingFinder", "InstrumentingLoader"]

_local = threading.local()


def _busy() -> set[str]:
    busy: Optional[set[str]] = getattr(_local, "names", None)
    if busy is None:
        busy = _local.names = set()
    return busy


#: module name -> callbacks to run once it has executed (see ``when_imported``).
_WATCHERS: Dict[str, List[Callable[[Any], Any]]] = {}
_WATCH_LOCK = threading.Lock()


def when_imported(name: str, callback: Callable[[ModuleType], Any]) -> None:
    """Call ``callback(module)`` once module ``name`` has been imported: now if it already
    is, else right after its code runs (while the import hook is installed).

    For integrations that attach to a framework as it is imported (a web framework's
    application class, a database driver).  A callback that raises is logged once and the
    import goes on.
    """
    module = sys.modules.get(name)
    if module is not None and not is_lazy(module):
        _run_watcher(name, callback, module)
        return
    with _WATCH_LOCK:
        _WATCHERS.setdefault(name, []).append(callback)


def forget_watchers() -> None:
    """Drop every pending ``when_imported`` callback (uninstall)."""
    with _WATCH_LOCK:
        _WATCHERS.clear()


def _run_watchers(module: ModuleType) -> None:
    name = module.__dict__.get("__name__")
    if not isinstance(name, str) or name not in _WATCHERS:
        return
    with _WATCH_LOCK:
        callbacks = _WATCHERS.pop(name, [])
    for callback in callbacks:
        _run_watcher(name, callback, module)


def _run_watcher(name: str, callback: Callable[[Any], Any], module: Any) -> None:
    try:
        callback(module)
    except Exception as exc:  # an integration must never break the import it waited for
        import logging

        logging.getLogger("callpyback.autoinstrument").warning(
            "callpyback: the integration waiting for %r failed (%r); the import goes on without it",
            name,
            exc,
            exc_info=exc,
        )


class InstrumentingFinder:
    """Finds nothing itself: delegates to the finders after it and instruments what they load."""

    def __init__(self, installation: Installation) -> None:
        self.installation = installation

    def find_spec(
        self,
        fullname: str,
        path: Optional[Sequence[str]] = None,
        target: Optional[ModuleType] = None,
    ) -> Optional[ModuleSpec]:
        inst = self.installation
        if not inst.active or getattr(_local, "instrumenting", False):
            return None
        watched = fullname in _WATCHERS
        try:
            if not watched and (
                not inst.selector.may_match_module(fullname) or inst.protected(fullname)
            ):
                return None  # the common case: one call and out
        except Exception:
            return None  # a broken selector must not break imports
        busy = _busy()
        if fullname in busy:
            return None  # our own delegation reached us again
        busy.add(fullname)
        try:
            spec = self._delegate(fullname, path, target)
        finally:
            busy.discard(fullname)
        if spec is None:
            return None
        loader = spec.loader
        # Namespace packages have no loader (nothing to instrument); legacy loaders without
        # exec_module are left alone rather than half-supported.
        if (
            loader is None
            or not hasattr(loader, "exec_module")
            or isinstance(loader, InstrumentingLoader)
        ):
            return spec
        spec.loader = InstrumentingLoader(loader, inst)  # type: ignore[assignment]
        return spec

    def _delegate(
        self, fullname: str, path: Optional[Sequence[str]], target: Optional[ModuleType]
    ) -> Optional[ModuleSpec]:
        for finder in list(sys.meta_path):
            if isinstance(finder, InstrumentingFinder):
                continue
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                return spec  # type: ignore[no-any-return]
        return None

    def invalidate_caches(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<callpyback InstrumentingFinder source={self.installation.source!r}>"


class InstrumentingLoader:
    """Wraps a loader: ``exec_module`` runs the real one, then instruments the module's namespace.

    Every other attribute is the real loader's (``get_resource_reader``, ``get_data``,
    ``is_package``, ``get_source``, ``path``, ...).  ``get_code`` serves ``runpy`` (``python -m``),
    which runs the code itself instead of calling ``exec_module``: the returned code instruments
    each function as it is defined.
    """

    def __init__(self, loader: Any, installation: Installation) -> None:
        object.__setattr__(self, "_cpb_loader", loader)
        object.__setattr__(self, "_cpb_installation", installation)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cpb_loader, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._cpb_loader, name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self._cpb_loader)) | {"exec_module", "create_module"})

    def __repr__(self) -> str:
        return f"<callpyback InstrumentingLoader for {self._cpb_loader!r}>"

    def create_module(self, spec: ModuleSpec) -> Optional[ModuleType]:
        create = getattr(self._cpb_loader, "create_module", None)
        return None if create is None else create(spec)

    def exec_module(self, module: ModuleType) -> None:
        __tracebackhide__ = True
        real = self._cpb_loader
        spec = module.__dict__.get("__spec__")
        if spec is not None and spec.loader is self:
            spec.loader = real
        if module.__dict__.get("__loader__") is self:
            module.__loader__ = real
        # Any exception of the module's own code propagates unchanged; only then do we act.
        real.exec_module(module)
        if is_lazy(module):
            # importlib.util.LazyLoader only prepared the module: its code runs on first
            # attribute access, through __spec__.loader.  Instrument then, not now (reading
            # the namespace now would load it).
            defer(module, self._cpb_installation)
            return
        installation = self._cpb_installation
        if installation.selects(module.__dict__.get("__name__", "")):
            installation.instrument(module)
        if _WATCHERS:
            _run_watchers(module)

    def get_code(self, fullname: str) -> Any:
        from ._main import code_for_runpy

        return code_for_runpy(self._cpb_loader, fullname)


# CPython's warnings skip frames whose file name contains "importlib" and "_bootstrap" when
# they apply ``stacklevel``: named so, this frame is skipped like the import system's own, and a
# module-level ``warnings.warn(..., stacklevel=2)`` lands at the importer as it would without us.
InstrumentingLoader.exec_module.__code__ = InstrumentingLoader.exec_module.__code__.replace(
    co_filename="<callpyback import hook, skipped like importlib._bootstrap>"
)


def is_lazy(module: Any) -> bool:
    """A module prepared by ``importlib.util.LazyLoader`` whose code has not started running."""
    cls = type(module)
    if cls.__name__ != "_LazyModule" or cls.__module__ != "importlib.util":
        return False
    # Python 3.12+ keeps the lazy class while the code runs and flags it in the loader state.
    spec = object.__getattribute__(module, "__dict__").get("__spec__")
    state = getattr(spec, "loader_state", None)
    return not (isinstance(state, dict) and state.get("is_loading"))


def defer(module: Any, installation: Installation) -> None:
    """Route a lazy module's deferred execution through an instrumenting loader."""
    spec = object.__getattribute__(module, "__dict__").get("__spec__")
    loader = getattr(spec, "loader", None)
    if loader is not None and not isinstance(loader, InstrumentingLoader):
        spec.loader = InstrumentingLoader(loader, installation)


def instrumenting() -> Any:
    """Context manager: imports made by the instrumentation machinery itself pass through."""
    import contextlib

    @contextlib.contextmanager
    def scope() -> Any:
        previous = getattr(_local, "instrumenting", False)
        _local.instrumenting = True
        try:
            yield
        finally:
            _local.instrumenting = previous

    return scope()
