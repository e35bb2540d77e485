"""callpyback-db: every database statement as an observed CallPyBack call.

Statements run through a DB-API 2.0 connection (sqlite3, psycopg 3 sync and async, any other
driver through the generic wrapper) become calls with targets such as ``db:SELECT orders``,
so metrics, timing, alerting, audit and spans apply to them unchanged.  Drop-in with a ``[db]``
table in ``callpyback.toml`` (under ``callpyback run``), or in code::

    import sqlite3, callpyback, callpyback_db
    callpyback_db.instrument(sqlite3, callpyback.CallPyBack(observers=[...]))

See ``docs/databases.md``.  Names are imported on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "1.0.0"

_LAZY = {
    "Instrumentation": "_api",
    "instrument": "_api",
    "selector": "_api",
    "sqlite_factory": "_api",
    "uninstrument": "_api",
    "wrap_connection": "_api",
    "METHODS": "_core",
    "Statement": "_core",
    "Tracer": "_core",
    "ParsedQuery": "_sql",
    "parse": "_sql",
    "sanitize": "_sql",
}

__all__ = sorted(["__version__", *_LAZY])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
