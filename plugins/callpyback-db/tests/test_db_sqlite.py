"""sqlite3, for real: every way a statement reaches the database is observed exactly once, and
the connection stays a real ``sqlite3.Connection``."""

from __future__ import annotations

import contextvars
import logging
import sqlite3
import sys
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

import callpyback_db
import pytest

import callpyback as cpb
from callpyback import BaseObserver, ExecutionState


@pytest.fixture(params=["memory", "file"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return ":memory:" if request.param == "memory" else str(tmp_path / "shop.db")


@pytest.fixture
def conn(pipeline: cpb.CallPyBack, database: str, calls: Any) -> Iterator[sqlite3.Connection]:
    callpyback_db.instrument(sqlite3, pipeline)
    connection = sqlite3.connect(database)
    connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, card TEXT, total REAL)")
    calls.clear()
    yield connection
    connection.close()


def test_every_path_is_observed_once(conn: sqlite3.Connection, calls: Any) -> None:
    """conn.execute/executemany/executescript, cursor.execute/executemany/executescript and
    the context manager's commit and rollback: one observed call each."""
    conn.execute("INSERT INTO orders VALUES (1, 'a', 1.0)")
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?)", [(2, "b", 2.0), (3, "c", 3.0)])
    conn.executescript("UPDATE orders SET total = 0; DELETE FROM orders WHERE id = 3;")
    cursor = conn.cursor()
    cursor.execute("SELECT * FROM orders WHERE id = ?", (1,))
    cursor.executemany("UPDATE orders SET total = ? WHERE id = ?", [(5.0, 1)])
    cursor.executescript("SELECT 1;")
    with conn:
        conn.execute("INSERT INTO orders VALUES (4, 'd', 4.0)")
    with pytest.raises(ZeroDivisionError), conn:
        conn.execute("INSERT INTO orders VALUES (5, 'e', 5.0)")
        1 / 0  # noqa: B018
    assert [(e["target"], e["method"]) for e in calls.entries] == [
        ("db:INSERT orders", "execute"),
        ("db:INSERT orders", "executemany"),
        ("db:UPDATE orders; DELETE orders", "executescript"),
        ("db:SELECT orders", "execute"),
        ("db:UPDATE orders", "executemany"),
        ("db:SELECT", "executescript"),
        ("db:INSERT orders", "execute"),
        ("db:COMMIT", "commit"),
        ("db:INSERT orders", "execute"),
        ("db:ROLLBACK", "rollback"),
    ]
    # ...and the database did what it was told, rollback included
    assert conn.execute("SELECT id FROM orders ORDER BY id").fetchall() == [(1,), (2,), (4,)]


def test_it_stays_a_real_connection(conn: sqlite3.Connection, database: str) -> None:
    """isinstance holds, backup() accepts it either way round, cursors are real cursors."""
    assert isinstance(conn, sqlite3.Connection)
    assert type(conn).__name__ == "Connection" and "sqlite3.Connection" in repr(conn)
    conn.execute("INSERT INTO orders VALUES (1, 'a', 1.0)")
    conn.commit()
    plain = sqlite3.Connection(":memory:")  # not through connect(): a plain, untraced one
    conn.backup(plain)
    assert plain.execute("SELECT count(*) FROM orders").fetchone() == (1,)
    traced_target = sqlite3.connect(":memory:")
    plain.backup(traced_target)
    assert traced_target.execute("SELECT count(*) FROM orders").fetchone() == (1,)
    cursor = conn.execute("SELECT id FROM orders")
    assert isinstance(cursor, sqlite3.Cursor) and cursor.fetchall() == [(1,)]
    assert cursor.connection is conn
    conn.row_factory = sqlite3.Row
    row = conn.execute("SELECT id, card FROM orders").fetchone()
    assert row["card"] == "a"  # row_factory reaches the cursors the shortcuts make


def test_attributes_of_a_statement(conn: sqlite3.Connection, calls: Any, database: str) -> None:
    conn.execute("INSERT INTO orders VALUES (1, '4111111111111111', 9.5)")
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?)", [(2, "x", 1), (3, "y", 2)])
    conn.execute("SELECT card FROM orders WHERE card = '4111111111111111'").fetchall()
    insert, many, select = calls.entries
    assert insert["system"] == "sqlite" and insert["namespace"] == database
    assert (insert["operation"], insert["collection"], insert["summary"]) == (
        "INSERT",
        "orders",
        "INSERT orders",
    )
    assert insert["text"] == "INSERT INTO orders VALUES (?, ?, ?)" and insert["rows"] == 1
    assert many["batch_size"] == 2 and many["rows"] == 2
    assert select["text"] == "SELECT card FROM orders WHERE card = ?"
    for entry in calls.entries:  # nothing the application typed as a value is exposed
        assert "parameters" not in entry and "raw_text" not in entry
        assert "4111" not in repr(entry["statement"])
    assert select["statement"].attributes() == {
        "db.system.name": "sqlite",
        "db.namespace": database,
        "db.operation.name": "SELECT",
        "db.collection.name": "orders",
        "db.query.summary": "SELECT orders",
        "db.query.text": "SELECT card FROM orders WHERE card = ?",
    }


def test_raw_text_and_parameters_only_when_asked(pipeline: cpb.CallPyBack, calls: Any) -> None:
    callpyback_db.instrument(sqlite3, pipeline, raw_text=True, capture_parameters=True)
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a, b)")
    conn.execute("INSERT INTO t VALUES (?, 'literal')", ("secret",))
    entry = calls.entries[-1]
    assert entry["raw_text"] == "INSERT INTO t VALUES (?, 'literal')"
    assert entry["parameters"] == ("secret",)
    assert entry["text"] == "INSERT INTO t VALUES (?, ?)"


def test_a_failing_statement_is_a_failure_then_the_rollback(
    conn: sqlite3.Connection, calls: Any
) -> None:
    conn.execute("INSERT INTO orders VALUES (1, 'a', 1.0)")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO orders VALUES (1, 'again', 2.0)")
    conn.rollback()
    failed, rollback = calls.entries[-2:]
    assert failed["outcome"] == "failure" and isinstance(
        failed["exception"], sqlite3.IntegrityError
    )
    assert failed["error_type"] == "sqlite3.IntegrityError"
    if sys.version_info >= (3, 11):  # sqlite3 names its error codes (sqlite_errorname) from 3.11
        assert failed["status_code"].startswith("SQLITE_CONSTRAINT")
    else:
        assert "status_code" not in failed  # not invented where sqlite3 does not say it
    assert failed["statement"].attributes()["error.type"] == "sqlite3.IntegrityError"
    assert (rollback["target"], rollback["outcome"]) == ("db:ROLLBACK", "success")


class Parent(BaseObserver):
    """Tracks which observed call is running, through the public enter/exit protocol (the
    same seam an OpenTelemetry span observer uses to make its span current)."""

    current: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("current", default=None)

    def __init__(self) -> None:
        super().__init__(states=[ExecutionState.PRE_EXECUTION])
        self.parents: List[Tuple[str, Optional[str]]] = []

    def update(self, context: Any) -> None:
        self.parents.append((context.function_info.target, self.current.get()))

    def enter(self, context: Any) -> Any:
        return self.current.set(context.function_info.target)

    def exit(self, context: Any, token: Any) -> None:
        self.current.reset(token)


def test_statements_are_children_of_the_call_that_made_them() -> None:
    parent = Parent()
    observe = cpb.CallPyBack(observers=[parent])
    callpyback_db.instrument(sqlite3, observe)

    @observe
    def place_order() -> None:
        conn = sqlite3.connect(":memory:")
        with conn:
            conn.execute("CREATE TABLE orders (id)")

    place_order()
    assert parent.parents == [
        (place_order.__callpyback__ and f"{__name__}:{place_order.__qualname__}", None),
        ("db:CREATE TABLE orders", f"{__name__}:{place_order.__qualname__}"),
        ("db:COMMIT", f"{__name__}:{place_order.__qualname__}"),
    ]


def test_a_metrics_observer_counts_statements_by_target() -> None:
    metrics = cpb.MetricsObserver()
    callpyback_db.instrument(sqlite3, cpb.CallPyBack(observers=[metrics]))
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    for i in range(5):
        conn.execute("INSERT INTO orders VALUES (?)", (i,))
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO orders VALUES (?)", (0,))
    stats = metrics.get_metrics()
    assert stats["db:INSERT orders"]["calls"] == 6
    assert stats["db:INSERT orders"]["failures"] == 1
    assert stats["db:CREATE TABLE orders"]["calls"] == 1


def test_django_style_cursor_factory_is_honoured(conn: sqlite3.Connection, calls: Any) -> None:
    """A caller's cursor class (Django passes one) runs on top of ours: its own execute
    converts the query, ours sees what reaches sqlite3."""

    class FormatCursor(sqlite3.Cursor):
        def execute(self, query: str, params: Any = None) -> Any:
            query = query.replace("%s", "?")
            return super().execute(query) if params is None else super().execute(query, params)

    cursor = conn.cursor(factory=FormatCursor)
    assert isinstance(cursor, FormatCursor)
    cursor.execute("INSERT INTO orders VALUES (%s, %s, %s)", (1, "a", 1.0))
    assert calls.entries[-1]["text"] == "INSERT INTO orders VALUES (?, ?, ?)"


def test_a_connection_factory_of_the_application_is_kept(
    pipeline: cpb.CallPyBack, calls: Any
) -> None:
    class AppConnection(sqlite3.Connection):
        opened = 0

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            AppConnection.opened += 1

    callpyback_db.instrument(sqlite3, pipeline)
    conn = sqlite3.connect(":memory:", factory=AppConnection)
    assert isinstance(conn, AppConnection) and AppConnection.opened == 1
    conn.execute("SELECT 1")
    assert calls.targets == ["db:SELECT"]


def test_a_cursor_factory_that_is_not_a_class_runs_unobserved(
    conn: sqlite3.Connection, calls: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="callpyback.db"):
        cursor = conn.cursor(factory=lambda c: sqlite3.Cursor(c))
    cursor.execute("SELECT 1")
    assert calls.entries == [] and "not a sqlite3.Cursor subclass" in caplog.text


def test_a_statement_no_pipeline_selects_runs_bare(calls: Any, pipeline: cpb.CallPyBack) -> None:
    def select(target: str) -> Any:
        return pipeline if target.startswith("db:INSERT") else None

    callpyback_db.instrument(sqlite3, select)
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a)")
    conn.execute("INSERT INTO t VALUES (1)")
    assert calls.targets == ["db:INSERT t"]


def test_methods_limit_what_is_observed(pipeline: cpb.CallPyBack, calls: Any) -> None:
    callpyback_db.instrument(sqlite3, pipeline, methods=["commit", "rollback"])
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a)")
    conn.commit()
    assert calls.targets == ["db:COMMIT"]


def test_a_failing_observer_never_breaks_a_statement() -> None:
    def broken(statement: Any) -> None:
        raise RuntimeError("observer bug")

    callpyback_db.instrument(
        sqlite3, cpb.CallPyBack(observers=[cpb.on_call(lambda arguments: broken(arguments))])
    )
    conn = sqlite3.connect(":memory:")
    assert conn.execute("SELECT 41 + 1").fetchone() == (42,)


def test_an_iterator_of_parameters_is_not_consumed(conn: sqlite3.Connection, calls: Any) -> None:
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?)", ((i, "x", 1.0) for i in range(3)))
    (entry,) = calls.entries
    assert "batch_size" not in entry and entry["rows"] == 3
    assert conn.execute("SELECT count(*) FROM orders").fetchone() == (3,)


def test_undo_restores_connect_and_silences_open_connections(
    pipeline: cpb.CallPyBack, calls: Any
) -> None:
    original = sqlite3.connect
    instrumentation = callpyback_db.instrument(sqlite3, pipeline)
    assert sqlite3.connect is not original and sqlite3.dbapi2.connect is sqlite3.connect
    conn = sqlite3.connect(":memory:")
    instrumentation.undo()
    assert sqlite3.connect is original and sqlite3.dbapi2.connect is original
    conn.execute("SELECT 1")
    assert calls.entries == [] and not instrumentation.active


def test_undo_leaves_a_patch_stacked_on_top(pipeline: cpb.CallPyBack) -> None:
    original = sqlite3.connect
    instrumentation = callpyback_db.instrument(sqlite3, pipeline)
    ours = sqlite3.connect

    def theirs(*args: Any, **kwargs: Any) -> Any:
        return ours(*args, **kwargs)

    sqlite3.connect = theirs
    try:
        instrumentation.undo()
        assert sqlite3.connect is theirs  # not broken by us
        assert sqlite3.dbapi2.connect is original
    finally:
        sqlite3.connect = original


def test_instrumenting_again_replaces(calls: Any, pipeline: cpb.CallPyBack) -> None:
    other: List[str] = []
    first = callpyback_db.instrument(sqlite3, pipeline)
    callpyback_db.instrument(
        sqlite3, cpb.CallPyBack(observers=[cpb.on_completion(lambda target: other.append(target))])
    )
    assert not first.active
    sqlite3.connect(":memory:").execute("SELECT 1")
    assert calls.entries == [] and other == ["db:SELECT"]
    assert callpyback_db.uninstrument(sqlite3) and not callpyback_db.uninstrument(sqlite3)


def test_an_open_plain_connection_cannot_be_instrumented(pipeline: cpb.CallPyBack) -> None:
    conn = sqlite3.Connection(":memory:")
    with pytest.raises(TypeError, match=r"instrument\(sqlite3\)"):
        callpyback_db.instrument(conn, pipeline)


def test_an_open_subclass_connection_is_instrumented_in_place(
    pipeline: cpb.CallPyBack, calls: Any
) -> None:
    class AppConnection(sqlite3.Connection):
        pass

    conn = sqlite3.connect(":memory:", factory=AppConnection)
    callpyback_db.instrument(conn, pipeline)
    assert type(conn) is not AppConnection and isinstance(conn, AppConnection)
    conn.execute("SELECT 1")
    with conn:
        pass
    assert calls.targets == ["db:SELECT", "db:COMMIT"]


def test_sqlite_factory_for_code_that_connects_itself(pipeline: cpb.CallPyBack, calls: Any) -> None:
    conn = sqlite3.connect(":memory:", factory=callpyback_db.sqlite_factory(pipeline))
    conn.execute("SELECT 1")
    assert calls.targets == ["db:SELECT"]
    assert not hasattr(sqlite3.connect, "__callpyback_db__")  # the module was left alone


def test_the_generic_wrapper_proxies_a_c_typed_connection(
    calls: Any, pipeline: cpb.CallPyBack
) -> None:
    """wrap_connection() on a connection whose class is a C type returns a proxy: cursor()
    statements and commit/rollback are observed, everything else reaches the real object."""
    plain = sqlite3.Connection(":memory:")
    conn = callpyback_db.wrap_connection(plain, pipeline)
    assert conn is not plain and not isinstance(conn, sqlite3.Connection)
    cur = conn.cursor()
    cur.execute("CREATE TABLE t (a)")
    cur.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
    conn.commit()
    cur.execute("SELECT a FROM t ORDER BY a")
    assert list(cur) == [(1,), (2,)]
    conn.isolation_level = None  # attributes go to the real connection
    assert plain.isolation_level is None and conn.in_transaction is False
    assert calls.targets == ["db:CREATE TABLE t", "db:INSERT t", "db:COMMIT", "db:SELECT t"]
    assert calls.entries[1]["batch_size"] == 2 and calls.entries[0]["system"] == "sqlite"
    plain.close()  # the recorded calls keep the proxy, and so the connection, alive
