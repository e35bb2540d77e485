"""sqlite3: connections and cursors that are real ``sqlite3.Connection`` / ``sqlite3.Cursor``
subclasses, passed to ``sqlite3.connect(factory=...)``.

Why subclasses and not proxies: C APIs check the real type (``Connection.backup(target)``
refuses anything else), and ``isinstance(conn, sqlite3.Connection)`` must stay true.  Why every
shortcut is overridden: ``Connection.execute``, ``executemany`` and ``executescript`` are C
shortcuts that create a plain cursor and run it without going through ``cursor()`` or
``Cursor.execute``, and ``Connection.__exit__`` commits or rolls back in C without calling
``commit()``.  A caller's cursor ``factory`` (Django passes its own cursor class) is honoured:
its traced subclass is used, so the caller's code runs on top of ours.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any, Dict, Optional

from ._core import COMMIT, ROLLBACK, Statement, Tracer

__all__ = ["SYSTEM", "TracedConnection", "TracedCursor", "connection_class", "cursor_class"]

SYSTEM = "sqlite"

_Connection = sqlite3.Connection
_Cursor = sqlite3.Cursor
_cursor_execute = _Cursor.execute
_cursor_executemany = _Cursor.executemany
_cursor_executescript = _Cursor.executescript
_connection_cursor = _Connection.cursor
_connection_execute = _Connection.execute
_connection_executemany = _Connection.executemany
_connection_executescript = _Connection.executescript
_connection_commit = _Connection.commit
_connection_rollback = _Connection.rollback
_connection_exit = _Connection.__exit__


def _namespace(database: Any) -> Optional[str]:
    """The database a connection was opened on (a URI's query string, which may hold options
    such as a key, is left out)."""
    if database is None:
        return None
    try:
        text = os.fsdecode(database)
    except TypeError:
        return None
    return text.split("?", 1)[0]


class TracedCursor(_Cursor):
    """Base of the traced cursor classes (one per tracer and cursor class)."""

    _cpb_tracer: Tracer
    _cpb_base: type = _Cursor
    _cpb_execute: Dict[Any, Any]  # the tracer's plans, read without a method call
    _cpb_executemany: Dict[Any, Any]

    def execute(self, sql: Any, parameters: Any = (), /) -> Any:
        tracer = self._cpb_tracer
        if tracer.active:
            plan = self._cpb_execute.get(sql) if type(sql) is str else None
            if plan is None:
                plan = tracer.plan(sql, "execute")
            observed = plan[1]
            if observed is not None:
                st = Statement(
                    plan[0],
                    SYSTEM,
                    getattr(self.connection, "_cpb_namespace", None),
                    "execute",
                    _cursor_execute,
                    (self, sql, parameters),
                    self,
                )
                if tracer.raw_text or tracer.capture_parameters:
                    _capture(tracer, st, sql, parameters)
                return observed(st)
        return _cursor_execute(self, sql, parameters)

    def executemany(self, sql: Any, seq_of_parameters: Any, /) -> Any:
        tracer = self._cpb_tracer
        if tracer.active:
            plan = self._cpb_executemany.get(sql) if type(sql) is str else None
            if plan is None:
                plan = tracer.plan(sql, "executemany")
            observed = plan[1]
            if observed is not None:
                st = _many(tracer, plan, self, self.connection, sql, seq_of_parameters)
                return observed(st)
        return _cursor_executemany(self, sql, seq_of_parameters)

    def executescript(self, sql_script: Any, /) -> Any:
        tracer = self._cpb_tracer
        if tracer.active:
            plan = tracer.plan(sql_script, "executescript")
            observed = plan[1]
            if observed is not None:
                st = _script(tracer, plan, self, self.connection, sql_script)
                return observed(st)
        return _cursor_executescript(self, sql_script)


def _capture(tracer: Tracer, st: Statement, sql: Any, parameters: Any) -> None:
    if tracer.raw_text and isinstance(sql, str):
        st.raw_text = sql
    if tracer.capture_parameters:
        st.parameters = parameters


def _many(
    tracer: Tracer, plan: Any, cursor: Any, connection: Any, sql: Any, parameters: Any
) -> Statement:
    st = Statement(
        plan[0],
        SYSTEM,
        getattr(connection, "_cpb_namespace", None),
        "executemany",
        _cursor_executemany,
        (cursor, sql, parameters),
        cursor,
    )
    if hasattr(parameters, "__len__"):  # not an iterator: counting that would consume it
        st.batch_size = len(parameters)
    if tracer.raw_text or tracer.capture_parameters:
        _capture(tracer, st, sql, parameters)
    return st


def _script(tracer: Tracer, plan: Any, cursor: Any, connection: Any, script: Any) -> Statement:
    st = Statement(
        plan[0],
        SYSTEM,
        getattr(connection, "_cpb_namespace", None),
        "executescript",
        _cursor_executescript,
        (cursor, script),
        cursor,
    )
    st.batch_size = plan[0].statements
    if tracer.raw_text and isinstance(script, str):
        st.raw_text = script
    return st


class TracedConnection(_Connection):
    """Base of the traced connection classes (one per tracer and connection class)."""

    _cpb_tracer: Tracer
    _cpb_base: type = _Connection
    _cpb_cursor: type
    _cpb_namespace: Optional[str] = None
    _cpb_execute: Dict[Any, Any]
    _cpb_executemany: Dict[Any, Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cpb_namespace = _namespace(args[0] if args else kwargs.get("database"))

    def cursor(self, factory: Any = _Cursor) -> Any:
        traced = self._cpb_tracer.classes.get(factory)
        if traced is None:
            traced = cursor_class(self._cpb_tracer, factory)
        return _connection_cursor(self, traced)

    def execute(self, sql: Any, parameters: Any = (), /) -> Any:
        tracer = self._cpb_tracer
        if tracer.active:
            plan = self._cpb_execute.get(sql) if type(sql) is str else None
            if plan is None:
                plan = tracer.plan(sql, "execute")
            observed = plan[1]
            if observed is not None:
                # What the C shortcut does (a default cursor, then execute), observed once.
                cursor = _connection_cursor(self, self._cpb_cursor)
                st = Statement(
                    plan[0],
                    SYSTEM,
                    self._cpb_namespace,
                    "execute",
                    _cursor_execute,
                    (cursor, sql, parameters),
                    cursor,
                )
                if tracer.raw_text or tracer.capture_parameters:
                    _capture(tracer, st, sql, parameters)
                return observed(st)
        return _connection_execute(self, sql, parameters)

    def executemany(self, sql: Any, seq_of_parameters: Any, /) -> Any:
        tracer = self._cpb_tracer
        if tracer.active:
            plan = self._cpb_executemany.get(sql) if type(sql) is str else None
            if plan is None:
                plan = tracer.plan(sql, "executemany")
            observed = plan[1]
            if observed is not None:
                cursor = _connection_cursor(self, self._cpb_cursor)
                return observed(_many(tracer, plan, cursor, self, sql, seq_of_parameters))
        return _connection_executemany(self, sql, seq_of_parameters)

    def executescript(self, sql_script: Any, /) -> Any:
        tracer = self._cpb_tracer
        if tracer.active:
            plan = tracer.plan(sql_script, "executescript")
            observed = plan[1]
            if observed is not None:
                cursor = _connection_cursor(self, self._cpb_cursor)
                return observed(_script(tracer, plan, cursor, self, sql_script))
        return _connection_executescript(self, sql_script)

    def commit(self) -> None:
        tracer = self._cpb_tracer
        if tracer.active:
            observed = tracer.method_observed(COMMIT, "commit")
            if observed is not None:
                return observed(  # type: ignore[no-any-return]
                    Statement(
                        COMMIT, SYSTEM, self._cpb_namespace, "commit", _connection_commit, (self,)
                    )
                )
        return _connection_commit(self)

    def rollback(self) -> None:
        tracer = self._cpb_tracer
        if tracer.active:
            observed = tracer.method_observed(ROLLBACK, "rollback")
            if observed is not None:
                return observed(  # type: ignore[no-any-return]
                    Statement(
                        ROLLBACK,
                        SYSTEM,
                        self._cpb_namespace,
                        "rollback",
                        _connection_rollback,
                        (self,),
                    )
                )
        return _connection_rollback(self)

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> Any:
        # The C __exit__ commits (or rolls back) without calling commit(): observe it as the
        # call it is, and keep its exact semantics (including rolling back a failed commit).
        tracer = self._cpb_tracer
        if tracer.active:
            parsed, method = (COMMIT, "commit") if exc_type is None else (ROLLBACK, "rollback")
            observed = tracer.method_observed(parsed, method)
            if observed is not None:
                return observed(
                    Statement(
                        parsed,
                        SYSTEM,
                        self._cpb_namespace,
                        method,
                        _connection_exit,
                        (self, exc_type, exc_value, traceback),
                    )
                )
        return _connection_exit(self, exc_type, exc_value, traceback)


def _named_like(base: type, bases: tuple, namespace: dict) -> type:  # type: ignore[type-arg]
    # Same name, qualname and module as the class it traces: reprs and error messages read as
    # they do without CallPyBack.
    namespace.update(
        __module__=base.__module__, __qualname__=base.__qualname__, __callpyback_db__=True
    )
    return type(base.__name__, bases, namespace)


def cursor_class(tracer: Tracer, factory: Any) -> Any:
    """The traced subclass of cursor class ``factory`` for ``tracer`` (cached); ``factory``
    itself when it is not a ``sqlite3.Cursor`` subclass (a plain callable: its cursors are not
    observed)."""
    cls = tracer.classes.get(factory)
    if cls is not None:
        return cls
    if not (isinstance(factory, type) and issubclass(factory, _Cursor)):
        tracer._warn_once(
            f"cursor-factory:{factory!r}",
            "callpyback-db: sqlite3 cursor factory %r is not a sqlite3.Cursor subclass; the "
            "statements run through its cursors are not observed",
            factory,
        )
        return factory
    base = getattr(factory, "_cpb_base", factory) if issubclass(factory, TracedCursor) else factory
    bases = (TracedCursor,) if base is _Cursor else (base, TracedCursor)
    cls = _named_like(
        base,
        bases,
        {
            "_cpb_tracer": tracer,
            "_cpb_base": base,
            "_cpb_execute": tracer.plans("execute"),
            "_cpb_executemany": tracer.plans("executemany"),
        },
    )
    tracer.classes[factory] = cls
    tracer.classes[cls] = cls
    return cls


def connection_class(tracer: Tracer, factory: Any) -> Optional[type]:
    """The traced subclass of connection class ``factory`` (cached), or None when it is not
    a ``sqlite3.Connection`` subclass."""
    cls = tracer.classes.get(factory)
    if cls is not None:
        return cls  # type: ignore[no-any-return]
    if not (isinstance(factory, type) and issubclass(factory, _Connection)):
        return None
    base = (
        getattr(factory, "_cpb_base", factory) if issubclass(factory, TracedConnection) else factory
    )
    bases = (TracedConnection,) if base is _Connection else (base, TracedConnection)
    cls = _named_like(
        base,
        bases,
        {
            "_cpb_tracer": tracer,
            "_cpb_base": base,
            "_cpb_cursor": cursor_class(tracer, _Cursor),
            "_cpb_execute": tracer.plans("execute"),
            "_cpb_executemany": tracer.plans("executemany"),
        },
    )
    tracer.classes[factory] = cls
    tracer.classes[cls] = cls
    return cls


_FACTORY_POSITION = 5  # sqlite3.connect(database, timeout, detect_types, isolation_level,
#                        check_same_thread, factory, ...)


def traced_connect(original: Any, tracer: Tracer) -> Any:
    """A replacement for ``sqlite3.connect`` that makes traced connections."""

    def connect(*args: Any, **kwargs: Any) -> Any:
        if not tracer.active:
            return original(*args, **kwargs)
        if len(args) > _FACTORY_POSITION:
            factory = args[_FACTORY_POSITION]
        else:
            factory = kwargs.get("factory", _Connection)
        traced = connection_class(tracer, factory)
        if traced is None:  # a factory that is not a Connection class: leave it alone
            return original(*args, **kwargs)
        if len(args) > _FACTORY_POSITION:
            args = (*args[:_FACTORY_POSITION], traced, *args[_FACTORY_POSITION + 1 :])
        else:
            kwargs["factory"] = traced
        return original(*args, **kwargs)

    connect.__name__ = getattr(original, "__name__", "connect")
    connect.__qualname__ = getattr(original, "__qualname__", "connect")
    connect.__doc__ = getattr(original, "__doc__", None)
    connect.__wrapped__ = original  # type: ignore[attr-defined]
    connect.__callpyback_db__ = tracer  # type: ignore[attr-defined]
    return connect


def retype(connection: Any, tracer: Tracer) -> Any:
    """Make an existing connection object traced, in place; a plain ``sqlite3.Connection``
    (not a subclass) cannot be, and gets a TypeError that says what to do instead."""
    kind = type(connection)
    base = getattr(kind, "_cpb_base", kind) if issubclass(kind, TracedConnection) else kind
    if base is _Connection:
        raise TypeError(
            "callpyback_db.instrument(): a plain sqlite3.Connection cannot be instrumented after "
            "it was opened (its methods are C code, and a proxy would break APIs such as "
            "backup() that need the real type). Instrument the module before connecting "
            "(callpyback_db.instrument(sqlite3)), or connect with "
            "factory=callpyback_db.sqlite_factory(...)"
        )
    traced = connection_class(tracer, base)
    assert traced is not None
    connection.__class__ = traced
    return connection
