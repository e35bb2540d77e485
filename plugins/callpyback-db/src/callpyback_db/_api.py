"""``instrument(connection_or_module, pipeline)``: the in-code entry point."""

from __future__ import annotations

import threading
import types
from typing import Any, Callable, Dict, Iterable, List, Optional

from ._core import TARGET_SCHEME, Tracer

__all__ = [
    "Instrumentation",
    "attach",
    "instrument",
    "selector",
    "sqlite_factory",
    "uninstrument",
    "wrap_connection",
]

Pipeline = Any  # a CallPyBack, a loaded callpyback Config, or target -> CallPyBack | None


def selector(pipeline: Pipeline) -> Callable[[str], Any]:
    """``target -> CallPyBack | None`` from what :func:`instrument` accepts.

    * a ``CallPyBack`` instance: every statement goes through it;
    * a loaded ``Config`` (``callpyback.load_config(...)``): each target is matched against
      its ``[[pipelines]]`` like any function (``match = ["db:SELECT*"]``);
    * a callable taking the target (``"db:SELECT orders"``) and returning one or None;
    * None: the current configuration (``callpyback.configure(...)``).
    """
    if pipeline is None:
        from callpyback.config import current_config

        pipeline = current_config()
        if pipeline is None:
            raise TypeError(
                "callpyback_db.instrument() needs a pipeline: a CallPyBack instance, a loaded "
                "Config, or a callable target -> CallPyBack | None (no configuration is current)"
            )
    if callable(getattr(pipeline, "observe", None)):
        decorator = pipeline
        return lambda target: decorator
    wrapper_for = getattr(pipeline, "wrapper_for", None)
    if callable(wrapper_for):
        prefix = f"{TARGET_SCHEME}:"

        def from_config(target: str) -> Any:
            module, _, rest = target.partition(":")
            return wrapper_for(module, rest) if module + ":" == prefix else None

        return from_config
    if callable(pipeline):
        return pipeline  # type: ignore[no-any-return]
    raise TypeError(
        f"callpyback_db.instrument(): pipeline must be a CallPyBack, a Config or a callable "
        f"target -> CallPyBack | None, got {pipeline!r}"
    )


class Instrumentation:
    """What :func:`instrument` did; :meth:`undo` takes it back (exactly, and only ours)."""

    def __init__(self, target: Any, tracer: Tracer, undo: Callable[[], None]) -> None:
        self.target = target
        self.tracer = tracer
        self._undo: Optional[Callable[[], None]] = undo

    @property
    def active(self) -> bool:
        return self._undo is not None and self.tracer.active

    def undo(self) -> None:
        """Restore the module's ``connect`` (if it is still ours) and stop observing: objects
        already traced keep their class but run their driver's calls bare from now on."""
        undo, self._undo = self._undo, None
        self.tracer.active = False
        if undo is not None:
            undo()
        with _lock:
            key = _key(self.target)
            if _modules.get(key) is self:
                del _modules[key]

    def __repr__(self) -> str:
        state = "active" if self.active else "undone"
        return f"<callpyback_db.Instrumentation of {_describe(self.target)} ({state})>"


_lock = threading.Lock()
_modules: Dict[Any, Instrumentation] = {}


def _key(target: Any) -> Any:
    if not isinstance(target, types.ModuleType):
        return id(target)
    # sqlite3 and sqlite3.dbapi2 share one connect(): one instrumentation for both.
    return "sqlite3" if target.__name__ == "sqlite3.dbapi2" else target.__name__


def _describe(target: Any) -> str:
    if isinstance(target, types.ModuleType):
        return f"module {target.__name__!r}"
    return f"{type(target).__module__}.{type(target).__qualname__} object"


def make_tracer(
    pipeline: Pipeline,
    *,
    raw_text: bool = False,
    capture_parameters: bool = False,
    methods: Optional[Iterable[str]] = None,
    system: Optional[str] = None,
    max_targets: int = 1000,
) -> Tracer:
    return Tracer(
        selector(pipeline),
        system=system,
        raw_text=raw_text,
        capture_parameters=capture_parameters,
        methods=None if methods is None else frozenset(methods),
        max_targets=max_targets,
    )


def instrument(
    target: Any,
    pipeline: Pipeline = None,
    *,
    raw_text: bool = False,
    capture_parameters: bool = False,
    methods: Optional[Iterable[str]] = None,
    system: Optional[str] = None,
    max_targets: int = 1000,
) -> Instrumentation:
    """Observe every statement run through ``target``.

    ``target`` is a driver module (``sqlite3``, ``psycopg``, or any DB-API 2.0 module with a
    ``connect`` function: connections made from then on are traced) or a connection object
    (traced in place; a plain ``sqlite3.Connection`` cannot be, see the TypeError).  Each
    statement is an observed call of ``pipeline`` (see :func:`selector`) with target
    ``db:<summary>``.  ``raw_text`` and ``capture_parameters`` opt in to exposing the raw SQL
    and the parameter values to observers; ``methods`` limits what is observed (default:
    execute, executemany, executescript, callproc, commit, rollback).

    Instrumenting a module again replaces the previous instrumentation of it.
    """
    tracer = make_tracer(
        pipeline,
        raw_text=raw_text,
        capture_parameters=capture_parameters,
        methods=methods,
        system=system,
        max_targets=max_targets,
    )
    return attach(target, tracer)


def attach(target: Any, tracer: Tracer) -> Instrumentation:
    """Instrument ``target`` with an existing tracer (the plugin shares one across drivers)."""
    if isinstance(target, types.ModuleType):
        with _lock:
            previous = _modules.get(_key(target))
        if previous is not None:
            previous.undo()
        undo = _patch_module(target, tracer)
        result = Instrumentation(target, tracer, undo)
        with _lock:
            _modules[_key(target)] = result
        return result
    traced = _trace_object(target, tracer)
    if traced is not target:
        raise TypeError(  # pragma: no cover - _trace_object proxies only via wrap_connection
            f"callpyback_db.instrument(): {_describe(target)} cannot be traced in place"
        )
    return Instrumentation(target, tracer, lambda: None)


def _patch_module(module: Any, tracer: Tracer) -> Callable[[], None]:
    name = module.__name__
    if name in ("sqlite3", "sqlite3.dbapi2"):
        import sqlite3
        import sqlite3.dbapi2

        from ._sqlite import traced_connect

        return _replace_connect([sqlite3, sqlite3.dbapi2], lambda f: traced_connect(f, tracer))
    if name == "psycopg":
        from . import _psycopg

        return _psycopg.patch(module, tracer)
    connect = module.__dict__.get("connect")
    if not callable(connect):
        raise TypeError(
            f"callpyback_db.instrument(): module {name!r} has no connect() function; "
            "instrument its connections instead"
        )
    from ._generic import system_of, trace_connection

    system = tracer.system or system_of(name)

    def traced_factory(original: Any) -> Any:
        def connect(*args: Any, **kwargs: Any) -> Any:
            connection = original(*args, **kwargs)
            if not tracer.active:
                return connection
            return trace_connection(connection, tracer, system=system)

        connect.__name__ = getattr(original, "__name__", "connect")
        connect.__qualname__ = getattr(original, "__qualname__", "connect")
        connect.__doc__ = getattr(original, "__doc__", None)
        connect.__wrapped__ = original  # type: ignore[attr-defined]
        connect.__callpyback_db__ = tracer  # type: ignore[attr-defined]
        return connect

    return _replace_connect([module], traced_factory)


def _replace_connect(modules: List[Any], make: Callable[[Any], Any]) -> Callable[[], None]:
    original = modules[0].__dict__["connect"]
    ours = make(original)
    patched = []
    for module in modules:
        if module.__dict__.get("connect") is original:
            module.connect = ours
            patched.append(module)

    def undo() -> None:
        for module in patched:
            # Only our own layer: a wrapper someone put on top of ours stays (ours, under it,
            # is inert now that the tracer is inactive).
            if module.__dict__.get("connect") is ours:
                module.connect = original

    return undo


def _trace_object(connection: Any, tracer: Tracer) -> Any:
    import sys

    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None and isinstance(connection, sqlite3.Connection):
        from ._sqlite import retype

        return retype(connection, tracer)
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(
        connection, (psycopg.Connection, psycopg.AsyncConnection)
    ):
        from ._psycopg import retype as retype_psycopg

        return retype_psycopg(connection, tracer)
    from ._generic import trace_connection

    traced = trace_connection(connection, tracer)
    if traced is not connection:
        raise TypeError(
            f"callpyback_db.instrument(): {_describe(connection)} is a C type that cannot be "
            "traced in place; use callpyback_db.wrap_connection(connection, pipeline), which "
            "returns a traced proxy, or instrument the driver module before connecting"
        )
    return connection


def wrap_connection(connection: Any, pipeline: Pipeline = None, **options: Any) -> Any:
    """The generic wrapper: ``connection`` traced in place when its class allows it, else a
    proxy that observes ``cursor()``'s statements and ``commit``/``rollback`` (use the result
    in place of the connection)."""
    from ._generic import trace_connection

    return trace_connection(connection, make_tracer(pipeline, **options))


def sqlite_factory(pipeline: Pipeline = None, base: Any = None, **options: Any) -> Any:
    """A ``sqlite3.Connection`` subclass to pass as ``sqlite3.connect(..., factory=...)``."""
    import sqlite3

    from ._sqlite import connection_class

    cls = connection_class(make_tracer(pipeline, **options), base or sqlite3.Connection)
    if cls is None:
        raise TypeError(f"base must be a sqlite3.Connection subclass, got {base!r}")
    return cls


def uninstrument(target: Any) -> bool:
    """Undo :func:`instrument` of a module; True if it was instrumented."""
    with _lock:
        found = _modules.get(_key(target))
    if found is None:
        return False
    found.undo()
    return True
