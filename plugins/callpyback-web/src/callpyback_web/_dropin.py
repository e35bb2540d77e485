"""The drop-in: attach to each application object as the framework creates it.

When a framework is imported (``callpyback.autoinstrument.when_imported``), one method of its
application class is wrapped in the class's own ``__dict__``: ``Flask.__init__``,
``Starlette.__init__`` and ``FastAPI.__init__`` (each new app is then instrumented with
:func:`callpyback_web.instrument`), and Django's ``BaseHandler.load_middleware`` (each handler,
the test client's included, gets our middleware outside its whole stack).  :func:`uninstall`
puts back each original that is still ours (one someone wrapped since is left, and our layer
does nothing any more), and uninstruments every application we instrumented.
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from typing import Any, Callable, Iterable, List, Optional, Tuple

from ._core import Web

__all__ = ["FRAMEWORKS", "install", "installed_web", "uninstall"]

_log = logging.getLogger("callpyback_web")

#: framework name -> the module to wait for
FRAMEWORKS = {
    "flask": "flask",
    "starlette": "starlette.applications",
    "fastapi": "fastapi",
    "django": "django.core.handlers.base",
}


class _State:
    web: Optional[Web] = None
    patches: List[Tuple[type, str, Any, Any]] = []  # (class, name, original, wrapper)
    apps: weakref.WeakSet[Any] = weakref.WeakSet()
    lock = threading.Lock()
    failures: set[str] = set()


def installed_web() -> Optional[Web]:
    """The :class:`Web` the drop-in attaches with (None when not installed)."""
    return _State.web


def _failed(what: str, exc: BaseException) -> None:
    if what not in _State.failures:
        _State.failures.add(what)
        _log.error(
            "callpyback_web could not %s: %r; the application runs unobserved",
            what,
            exc,
            exc_info=exc,
        )


def _patch(cls: type, name: str, make: Callable[[Any], Any]) -> None:
    with _State.lock:
        for patched, attr, _, _ in _State.patches:
            if patched is cls and attr == name:
                return
        original = cls.__dict__[name]
        wrapper = make(original)
        wrapper._callpyback_web_original = original
        setattr(cls, name, wrapper)
        _State.patches.append((cls, name, original, wrapper))


def _init_wrapper(original: Any) -> Any:
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        web = _State.web
        if web is None:
            return
        try:
            from ._instrument import instrument

            instrument(self, web=web)
            _State.apps.add(self)
        except Exception as exc:  # never break the application's start-up
            _failed(f"instrument {type(self).__qualname__}", exc)

    return __init__


def _load_middleware_wrapper(original: Any) -> Any:
    @functools.wraps(original)
    def load_middleware(self: Any, is_async: bool = False) -> None:
        original(self, is_async)
        web = _State.web
        if web is None:
            return
        try:
            from ._instrument import attach_django_handler

            attach_django_handler(self, web)
            _State.apps.add(self)
        except Exception as exc:
            _failed("attach to the Django handler", exc)

    return load_middleware


def _attach(framework: str, module: Any) -> None:
    try:
        if framework == "flask":
            _patch(module.Flask, "__init__", _init_wrapper)
        elif framework == "starlette":
            _patch(module.Starlette, "__init__", _init_wrapper)
        elif framework == "fastapi":
            _patch(module.FastAPI, "__init__", _init_wrapper)
        elif framework == "django":
            from . import django as dj

            dj.connect_signal()
            dj.set_default(_State.web)
            _patch(module.BaseHandler, "load_middleware", _load_middleware_wrapper)
    except Exception as exc:
        _failed(f"attach to {framework}", exc)


def install(web: Web, frameworks: Iterable[str]) -> None:
    """Attach ``web`` to every application the named frameworks create from now on."""
    from callpyback.autoinstrument import when_imported

    web.check()
    _State.web = web
    names = list(frameworks)
    if "auto" in names:
        names = list(FRAMEWORKS)
    for name in dict.fromkeys(names):
        when_imported(FRAMEWORKS[name], functools.partial(_attach, name))


def uninstall() -> None:
    """Undo :func:`install` exactly: originals back where still ours, apps uninstrumented."""
    from ._instrument import uninstrument

    web, _State.web = _State.web, None
    if web is not None:
        web.active = False
    with _State.lock:
        patches, _State.patches = _State.patches, []
    for cls, name, original, wrapper in reversed(patches):
        if cls.__dict__.get(name) is wrapper:
            setattr(cls, name, original)
    for app in list(_State.apps):
        try:
            uninstrument(app)
        except Exception as exc:  # pragma: no cover - best effort on the way out
            _failed(f"uninstrument {app!r}", exc)
    _State.apps = weakref.WeakSet()
    import sys

    dj = sys.modules.get("callpyback_web.django")
    if dj is not None:
        dj.set_default(None)
