"""callpyback-db: a statement through a traced sqlite3 connection against the bare driver
(group "db").

    python benchmarks/overhead.py -k db

The baseline of every case is the same operation on a plain ``sqlite3`` connection, so the
ratio is the whole per-statement overhead: our Python methods in front of the C ones, the
statement's parse-cache lookup, the Statement object and the observed call.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Callable, Optional

from _harness import Case

from callpyback import CallPyBack, MetricsObserver

SELECT = "SELECT name FROM items WHERE id = ?"
KEY = (500,)
ROWS = [(i, f"item {i}") for i in range(10_000)]
UPSERT = "INSERT OR REPLACE INTO bulk (id, name) VALUES (?, ?)"


def _connect(pipeline: Any = None, select: Optional[Callable[[str], Any]] = None) -> Any:
    if pipeline is None and select is None:
        conn = sqlite3.connect(":memory:")
    else:
        import callpyback_db

        conn = sqlite3.connect(":memory:", factory=callpyback_db.sqlite_factory(select or pipeline))
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany("INSERT INTO items VALUES (?, ?)", ROWS)
    conn.execute("CREATE TABLE bulk (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    return conn


def _select_op(conn: Any) -> Callable[[], Any]:
    execute = conn.execute

    def op() -> Any:
        return execute(SELECT, KEY).fetchone()

    return op


def _cursor_op(conn: Any) -> Callable[[], Any]:
    cursor = conn.cursor()

    def op() -> Any:
        cursor.execute(SELECT, KEY)
        return cursor.fetchone()

    return op


def _many_op(conn: Any) -> Callable[[], Any]:
    def op() -> Any:
        conn.executemany(UPSERT, ROWS)

    return op


def _file_op(pipeline: Any) -> Callable[[], Any]:
    """INSERT OR REPLACE + COMMIT on a WAL file: a write as applications do them."""
    import itertools
    import os
    import tempfile

    path = os.path.join(tempfile.mkdtemp(prefix="cpb-bench-"), "bench.db")
    if pipeline is None:
        conn = sqlite3.connect(path)
    else:
        import callpyback_db

        conn = sqlite3.connect(path, factory=callpyback_db.sqlite_factory(pipeline))
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)")
    counter = itertools.count()

    def op() -> Any:
        conn.execute("INSERT OR REPLACE INTO kv VALUES (?, 'x')", (next(counter) % 1000,))
        conn.commit()

    return op


def bare_file() -> Callable[[], Any]:
    return _file_op(None)


def metrics_file() -> Callable[[], Any]:
    return _file_op(CallPyBack(observers=[MetricsObserver()]))


def bare_select() -> Callable[[], Any]:
    return _select_op(_connect())


def bare_cursor() -> Callable[[], Any]:
    return _cursor_op(_connect())


def bare_many() -> Callable[[], Any]:
    return _many_op(_connect())


def unselected() -> Callable[[], Any]:
    """Traced, but no pipeline selects the statement: it runs bare after one cache lookup."""
    return _select_op(_connect(select=lambda target: None))


def empty() -> Callable[[], Any]:
    return _select_op(_connect(CallPyBack()))


def metrics() -> Callable[[], Any]:
    return _select_op(_connect(CallPyBack(observers=[MetricsObserver()])))


def metrics_cursor() -> Callable[[], Any]:
    return _cursor_op(_connect(CallPyBack(observers=[MetricsObserver()])))


def metrics_many() -> Callable[[], Any]:
    return _many_op(_connect(CallPyBack(observers=[MetricsObserver()])))


_NOTE = (
    "an indexed SELECT on sqlite3 :memory: takes about 1.5 us; a Python method in front of a C "
    "one costs about 0.15 us (10 %) before anything is observed"
)

CASES = [
    Case(
        "db select, no pipeline selects it",
        unselected,
        base_build=bare_select,
        target=1.15,
        group="db",
        note=_NOTE,
    ),
    Case("db select, empty pipeline", empty, base_build=bare_select, group="db", note=_NOTE),
    Case("db select, metrics", metrics, base_build=bare_select, group="db", note=_NOTE),
    Case(
        "db cursor.execute, metrics",
        metrics_cursor,
        base_build=bare_cursor,
        group="db",
        note=_NOTE,
    ),
    Case(
        "db insert+commit on a WAL file, metrics",
        metrics_file,
        base_build=bare_file,
        group="db",
        note="two observed calls per op (the INSERT and the COMMIT)",
    ),
    Case(
        "db executemany 10k rows, metrics",
        metrics_many,
        base_build=bare_many,
        target=1.05,
        group="db",
        note="one observed call for the whole batch",
    ),
]
