"""PostgreSQL 15, for real (a throwaway cluster): psycopg 3 sync and async connections, and
the generic DB-API wrapper through pg8000 (a pure-Python driver, with callproc)."""

from __future__ import annotations

import asyncio
from typing import Any

import callpyback_db
import pg8000.dbapi
import psycopg
import pytest
from psycopg import sql

import callpyback as cpb


def test_psycopg_sync_connection(postgres: Any, pipeline: cpb.CallPyBack, calls: Any) -> None:
    callpyback_db.instrument(psycopg, pipeline)
    with psycopg.connect(postgres.conninfo) as conn:
        assert isinstance(conn, psycopg.Connection)
        conn.execute("CREATE TEMP TABLE orders (id int PRIMARY KEY, card text)")
        conn.execute("INSERT INTO orders VALUES (%s, %s)", (1, "4111111111111111"))
        with conn.cursor() as cur:
            assert isinstance(cur, psycopg.Cursor)
            cur.executemany("INSERT INTO orders VALUES (%s, %s)", [(2, "b"), (3, "c")])
            cur.execute("SELECT id FROM orders WHERE card <> 'x' ORDER BY id")
            assert cur.fetchall() == [(1,), (2,), (3,)]
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO orders VALUES (1, 'again')")
        conn.rollback()
    # leaving the with-block commits through commit(): observed too
    assert [(e["target"], e["method"], e["outcome"]) for e in calls.entries] == [
        ("db:CREATE TABLE orders", "execute", "success"),
        ("db:INSERT orders", "execute", "success"),
        ("db:INSERT orders", "executemany", "success"),
        ("db:SELECT orders", "execute", "success"),
        ("db:INSERT orders", "execute", "failure"),
        ("db:ROLLBACK", "rollback", "success"),
        ("db:COMMIT", "commit", "success"),
    ]
    select = calls.entries[3]
    assert select["system"] == "postgresql" and select["namespace"] == "postgres"
    assert select["text"] == "SELECT id FROM orders WHERE card <> ? ORDER BY id"
    assert select["rows"] == 3  # psycopg knows how many rows a SELECT returned
    assert calls.entries[2]["batch_size"] == 2
    failed = calls.entries[4]
    assert failed["error_type"] == "psycopg.errors.UniqueViolation"
    assert failed["status_code"] == "23505"


def test_psycopg_composed_queries_are_rendered_then_sanitized(
    postgres: Any, pipeline: cpb.CallPyBack, calls: Any
) -> None:
    callpyback_db.instrument(psycopg, pipeline)
    with psycopg.connect(postgres.conninfo) as conn:
        query = sql.SQL("SELECT {} FROM {} WHERE datname = {}").format(
            sql.Identifier("datname"), sql.Identifier("pg_database"), sql.Literal("postgres")
        )
        assert conn.execute(query).fetchone() == ("postgres",)
    entry = calls.entries[0]
    assert entry["target"] == "db:SELECT pg_database"
    assert entry["text"] == 'SELECT "datname" FROM "pg_database" WHERE datname = ?'


def test_psycopg_async_connection(postgres: Any, pipeline: cpb.CallPyBack, calls: Any) -> None:
    callpyback_db.instrument(psycopg, pipeline)

    async def main() -> Any:
        conn = await psycopg.AsyncConnection.connect(postgres.conninfo)
        async with conn:
            assert isinstance(conn, psycopg.AsyncConnection)
            await conn.execute("CREATE TEMP TABLE t (a int)")
            async with conn.cursor() as cur:
                await cur.executemany("INSERT INTO t VALUES (%s)", [(1,), (2,)])
                await cur.execute("SELECT sum(a) FROM t")
                total = await cur.fetchone()
            await conn.rollback()
            return total

    assert asyncio.run(main()) == (3,)
    assert [(e["target"], e["method"]) for e in calls.entries] == [
        ("db:CREATE TABLE t", "execute"),
        ("db:INSERT t", "executemany"),
        ("db:SELECT t", "execute"),
        ("db:ROLLBACK", "rollback"),
        ("db:COMMIT", "commit"),
    ]
    assert all(e["outcome"] == "success" for e in calls.entries)


def test_psycopg_async_statements_are_children_of_the_task(postgres: Any, calls: Any) -> None:
    """Concurrent tasks each see their own statements under their own observed call."""
    seen: list = []
    observe = cpb.CallPyBack(
        observers=[cpb.on_call(lambda function_info: seen.append(function_info.target))]
    )
    callpyback_db.instrument(psycopg, observe)

    async def main() -> Any:
        async def one(i: int) -> Any:
            async with await psycopg.AsyncConnection.connect(postgres.conninfo) as conn:
                cur = await conn.execute("SELECT %s::int", (i,))
                return (await cur.fetchone())[0]

        return await asyncio.gather(*(one(i) for i in range(3)))

    assert asyncio.run(main()) == [0, 1, 2]
    assert seen.count("db:SELECT") == 3 and seen.count("db:COMMIT") == 3


def test_psycopg_undo(postgres: Any, pipeline: cpb.CallPyBack, calls: Any) -> None:
    connect, class_connect = psycopg.connect, psycopg.Connection.__dict__["connect"]
    instrumentation = callpyback_db.instrument(psycopg, pipeline)
    assert psycopg.Connection.__dict__["connect"] is not class_connect
    instrumentation.undo()
    assert psycopg.Connection.__dict__["connect"] is class_connect
    assert psycopg.connect == connect
    with psycopg.connect(postgres.conninfo) as conn:
        conn.execute("SELECT 1")
    assert calls.entries == []


def test_an_open_psycopg_connection_is_instrumented_in_place(
    postgres: Any, pipeline: cpb.CallPyBack, calls: Any
) -> None:
    with psycopg.connect(postgres.conninfo) as conn:
        callpyback_db.instrument(conn, pipeline)
        assert isinstance(conn, psycopg.Connection)
        conn.execute("SELECT 1")
    assert calls.targets == ["db:SELECT", "db:COMMIT"]


def test_generic_driver_pg8000_with_callproc(
    postgres: Any, pipeline: cpb.CallPyBack, calls: Any
) -> None:
    """Any DB-API 2.0 module: connect() is wrapped, the driver's own classes are kept."""
    callpyback_db.instrument(pg8000.dbapi, pipeline)
    conn = pg8000.dbapi.connect(**postgres.params())
    try:
        assert isinstance(conn, pg8000.dbapi.Connection)
        cur = conn.cursor()
        assert isinstance(cur, pg8000.dbapi.Cursor)
        cur.execute("CREATE TEMP TABLE t (a int)")
        cur.executemany("INSERT INTO t VALUES (%s)", [(1,), (2,)])
        cur.execute(
            "CREATE OR REPLACE PROCEDURE add_one(INOUT x int) LANGUAGE plpgsql "
            "AS $$ BEGIN x := x + 1; END $$"
        )
        cur.callproc("add_one", [41])
        assert cur.fetchone() == [42]
        conn.commit()
    finally:
        conn.close()
    assert [(e["target"], e["method"]) for e in calls.entries] == [
        ("db:CREATE TABLE t", "execute"),
        ("db:INSERT t", "executemany"),
        ("db:CREATE PROCEDURE add_one", "execute"),
        ("db:CALL add_one", "callproc"),
        ("db:COMMIT", "commit"),
    ]
    assert {e["system"] for e in calls.entries} == {"postgresql"}
    assert calls.entries[2]["text"].endswith("AS ?")  # the body is a literal
