"""Any DB-API 2.0 driver: traced subclasses when the driver's classes are Python classes (the
object's class is switched in place, so it stays an instance of the driver's own class), and a
small proxy when they are C types that cannot be subclassed in place.

Each method is traced in the driver's own shape: a coroutine method (``psycopg``'s
``AsyncCursor.execute``) gets an ``async def`` that awaits an asynchronous observed call.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from typing import Any, Callable, Dict, Optional, Tuple

from ._core import COMMIT, ROLLBACK, Statement, Tracer

__all__ = ["ConnectionProxy", "CursorProxy", "system_of", "trace_connection", "trace_cursor"]

#: ``db.system.name`` of well-known drivers, by top-level package.
SYSTEMS: Dict[str, str] = {
    "sqlite3": "sqlite",
    "apsw": "sqlite",
    "psycopg": "postgresql",
    "psycopg2": "postgresql",
    "pg8000": "postgresql",
    "asyncpg": "postgresql",
    "pymysql": "mysql",
    "MySQLdb": "mysql",
    "mysql": "mysql",
    "mariadb": "mariadb",
    "oracledb": "oracle.db",
    "cx_Oracle": "oracle.db",
    "pyodbc": "other_sql",
    "pymssql": "microsoft.sql_server",
    "duckdb": "duckdb",
    "ibm_db": "ibm.db2",
    "snowflake": "snowflake",
    "clickhouse_driver": "clickhouse",
}

CURSOR_METHODS = ("execute", "executemany", "executescript", "callproc")

# The cursor whose traced call is running: drivers implement executemany() and callproc() with
# their own execute() (pg8000 does), which must not be observed a second time.
_INSIDE: contextvars.ContextVar[Any] = contextvars.ContextVar("callpyback_db_inside", default=None)
CONNECTION_METHODS = ("commit", "rollback")


def system_of(obj: Any) -> str:
    """The ``db.system.name`` of a driver object or module name (``other_sql`` if unknown)."""
    name = obj if isinstance(obj, str) else type(obj).__module__
    return SYSTEMS.get(name.split(".", 1)[0], "other_sql")


# --- statement text ---------------------------------------------------------------------------
def _plan(tracer: Tracer, method: str, cursor: Any, query: Any, is_async: bool) -> Any:
    if method == "callproc" and isinstance(query, str):
        query = f"CALL {query}"  # a procedure name, summarised as the statement it runs
    if type(query) is str:
        plan = tracer.plans(method, is_async).get(query)
        if plan is not None:
            return plan
        return tracer.plan(query, method, is_async)
    if isinstance(query, (bytes, bytearray)):
        return tracer.plan(bytes(query), method, is_async)
    as_string = getattr(query, "as_string", None)  # psycopg's sql.Composable
    if callable(as_string):
        try:
            text = as_string(cursor)
        except Exception:
            text = None
        if isinstance(text, str):
            return tracer.plan(text, method, is_async)
    return tracer.plan(query, method, is_async)


def _statement(
    tracer: Tracer,
    plan: Any,
    owner: Any,
    method: str,
    call: Callable[..., Any],
    args: Tuple[Any, ...],
    kwargs: Dict[str, Any],
) -> Statement:
    """The statement of ``call(*args, **kwargs)``; ``args[0]`` is the query text or object."""
    if kwargs:
        call = functools.partial(call, **kwargs)
    cursor = owner._cpb_subject()
    st = Statement(plan[0], owner._cpb_system, _namespace(owner), method, call, args, cursor)
    if method == "executemany" and len(args) > 1:
        if hasattr(args[1], "__len__"):  # not an iterator: counting that would consume it
            st.batch_size = len(args[1])
    elif method == "executescript":
        st.batch_size = plan[0].statements
    if tracer.raw_text:
        query = args[0]
        if isinstance(query, str):
            st.raw_text = query
        elif isinstance(query, (bytes, bytearray)):
            st.raw_text = bytes(query).decode("utf-8", "replace")
    if tracer.capture_parameters and method != "executescript":
        if len(args) > 1:
            st.parameters = args[1]
        elif kwargs:
            st.parameters = dict(kwargs)
    return st


def _namespace(owner: Any) -> Optional[str]:
    get = owner._cpb_namespace_of
    if get is None:
        return None
    try:
        return get(owner)  # type: ignore[no-any-return]
    except Exception:
        return None


# --- method bodies, shared by traced subclasses and proxies ------------------------------------
def _cursor_method(name: str, is_async: bool) -> Callable[..., Any]:
    if is_async:

        async def traced_async(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            call = self._cpb_next(name)
            tracer = self._cpb_tracer
            subject = self._cpb_subject()
            if tracer.active and _INSIDE.get() is not subject:
                plan = _plan(tracer, name, subject, query, True)
                observed = plan[1]
                if observed is not None:
                    token = _INSIDE.set(subject)
                    try:
                        return await observed(
                            _statement(tracer, plan, self, name, call, (query, *args), kwargs)
                        )
                    finally:
                        _INSIDE.reset(token)
            return await call(query, *args, **kwargs)

        traced_async.__name__ = traced_async.__qualname__ = name
        return traced_async

    def traced(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        call = self._cpb_next(name)
        tracer = self._cpb_tracer
        subject = self._cpb_subject()
        if tracer.active and _INSIDE.get() is not subject:
            plan = _plan(tracer, name, subject, query, False)
            observed = plan[1]
            if observed is not None:
                token = _INSIDE.set(subject)
                try:
                    return observed(
                        _statement(tracer, plan, self, name, call, (query, *args), kwargs)
                    )
                finally:
                    _INSIDE.reset(token)
        return call(query, *args, **kwargs)

    traced.__name__ = traced.__qualname__ = name
    return traced


def _connection_method(name: str, is_async: bool) -> Callable[..., Any]:
    parsed = COMMIT if name == "commit" else ROLLBACK
    if is_async:

        async def traced_async(self: Any) -> Any:
            call = self._cpb_next(name)
            tracer = self._cpb_tracer
            if tracer.active:
                observed = tracer.method_observed(parsed, name, True)
                if observed is not None:
                    st = Statement(parsed, self._cpb_system, _namespace(self), name, call, ())
                    return await observed(st)
            return await call()

        traced_async.__name__ = traced_async.__qualname__ = name
        return traced_async

    def traced(self: Any) -> Any:
        call = self._cpb_next(name)
        tracer = self._cpb_tracer
        if tracer.active:
            observed = tracer.method_observed(parsed, name, False)
            if observed is not None:
                return observed(
                    Statement(parsed, self._cpb_system, _namespace(self), name, call, ())
                )
        return call()

    traced.__name__ = traced.__qualname__ = name
    return traced


def _cursor_factory_method(self: Any, *args: Any, **kwargs: Any) -> Any:
    return trace_cursor(self._cpb_next("cursor")(*args, **kwargs), self)


_cursor_factory_method.__name__ = _cursor_factory_method.__qualname__ = "cursor"


# --- traced subclasses ------------------------------------------------------------------------
def _next_of_base(self: Any, name: str) -> Any:
    """The driver's own implementation of ``name``, bound to ``self``."""
    return getattr(type(self)._cpb_base, name).__get__(self)


def _self(self: Any) -> Any:
    return self


def is_traced(obj: Any) -> bool:
    return getattr(type(obj), "__callpyback_db__", False) is True


def _traced_class(
    tracer: Tracer,
    base: type,
    methods: Tuple[str, ...],
    extra: Dict[str, Any],
    system: str,
    namespace_of: Optional[Callable[[Any], Optional[str]]],
) -> Optional[type]:
    key = ("generic", base)
    cls = tracer.classes.get(key)
    if cls is not None:
        return cls  # type: ignore[no-any-return]
    ns: Dict[str, Any] = {
        "__slots__": (),
        "__module__": base.__module__,
        "__qualname__": base.__qualname__,
        "__callpyback_db__": True,
        "_cpb_tracer": tracer,
        "_cpb_base": base,
        "_cpb_system": system,
        "_cpb_namespace_of": staticmethod(namespace_of) if namespace_of else None,
        "_cpb_next": _next_of_base,
        "_cpb_subject": _self,
    }
    for name in methods:
        impl = getattr(base, name, None)
        if impl is None:
            continue
        make = _connection_method if name in CONNECTION_METHODS else _cursor_method
        ns[name] = make(name, inspect.iscoroutinefunction(impl))
    ns.update(extra)
    try:
        # A subclass that adds no slots and no mixin: the only layout the interpreter lets an
        # existing object switch to.
        cls = type(base.__name__, (base,), ns)
    except TypeError:  # a final C type, an odd metaclass: the proxy is used instead
        cls = None
    tracer.classes[key] = cls
    return cls


def _retype(obj: Any, cls: Optional[type]) -> bool:
    if cls is None:
        return False
    try:
        obj.__class__ = cls
    except TypeError:  # an immutable (C) type: a proxy is needed
        return False
    return True


def _base_of(obj: Any) -> type:
    kind = type(obj)
    return getattr(kind, "_cpb_base", kind) if is_traced(obj) else kind


def trace_connection(
    connection: Any,
    tracer: Tracer,
    *,
    system: Optional[str] = None,
    namespace_of: Optional[Callable[[Any], Optional[str]]] = None,
) -> Any:
    """``connection`` traced in place (its class switched to a traced subclass), or a
    :class:`ConnectionProxy` when its type cannot be subclassed in place."""
    if isinstance(connection, ConnectionProxy):
        connection = connection._cpb_target
    system = system or tracer.system or system_of(connection)
    base = _base_of(connection)
    cls = _traced_class(
        tracer,
        base,
        CONNECTION_METHODS,
        {"cursor": _cursor_factory_method},
        system,
        namespace_of,
    )
    if _retype(connection, cls):
        return connection
    return ConnectionProxy(connection, tracer, system, namespace_of)


def trace_cursor(cursor: Any, connection: Any) -> Any:
    """A cursor made by a traced connection (or its proxy), traced the same way."""
    tracer = connection._cpb_tracer
    system = connection._cpb_system
    namespace_of = connection._cpb_namespace_of
    base = _base_of(cursor)
    cls = _traced_class(tracer, base, CURSOR_METHODS, {}, system, _cursor_namespace(namespace_of))
    if _retype(cursor, cls):
        return cursor
    return CursorProxy(cursor, tracer, system, _cursor_namespace(namespace_of))


@functools.cache
def _cursor_namespace(
    namespace_of: Optional[Callable[[Any], Optional[str]]],
) -> Optional[Callable[[Any], Optional[str]]]:
    if namespace_of is None:
        return None

    def of_cursor(cursor: Any) -> Optional[str]:
        connection = getattr(cursor, "connection", None)
        if connection is None:
            return None
        if isinstance(connection, ConnectionProxy):
            connection = connection._cpb_target
        return namespace_of(connection)

    return of_cursor


# --- proxies, for drivers whose classes are C types -------------------------------------------
class _Proxy:
    __slots__ = ("__weakref__", "_cpb_namespace_of", "_cpb_system", "_cpb_target", "_cpb_tracer")

    def __init__(
        self,
        target: Any,
        tracer: Tracer,
        system: str,
        namespace_of: Optional[Callable[[Any], Optional[str]]],
    ) -> None:
        object.__setattr__(self, "_cpb_target", target)
        object.__setattr__(self, "_cpb_tracer", tracer)
        object.__setattr__(self, "_cpb_system", system)
        object.__setattr__(self, "_cpb_namespace_of", namespace_of)

    def _cpb_next(self, name: str) -> Any:
        return getattr(self._cpb_target, name)

    def _cpb_subject(self) -> Any:
        return self._cpb_target

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cpb_target, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._cpb_target, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._cpb_target, name)

    def __enter__(self) -> Any:
        entered = self._cpb_target.__enter__()
        return self if entered is self._cpb_target else entered

    def __exit__(self, *exc: Any) -> Any:
        return self._cpb_target.__exit__(*exc)

    def __repr__(self) -> str:
        return repr(self._cpb_target)


class ConnectionProxy(_Proxy):
    """A DB-API connection whose statements are observed (for drivers with C classes).

    Everything but ``cursor``, ``commit`` and ``rollback`` goes to the real connection.  It is
    not an instance of the driver's class: C APIs that need the real type (sqlite3's
    ``backup``) refuse it, which is why sqlite3 and psycopg are traced by subclassing instead.
    """

    __slots__ = ()

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        return trace_cursor(self._cpb_target.cursor(*args, **kwargs), self)

    commit = _connection_method("commit", False)
    rollback = _connection_method("rollback", False)


class CursorProxy(_Proxy):
    """A DB-API cursor whose ``execute``/``executemany``/``callproc`` are observed."""

    __slots__ = ()

    execute = _cursor_method("execute", False)
    executemany = _cursor_method("executemany", False)
    callproc = _cursor_method("callproc", False)
    executescript = _cursor_method("executescript", False)

    def __iter__(self) -> Any:
        return iter(self._cpb_target)

    def __next__(self) -> Any:
        return next(self._cpb_target)
