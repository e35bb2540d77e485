"""Statement summaries (the targets) and sanitized text (what observers may see)."""

from __future__ import annotations

import pytest
from callpyback_db import parse, sanitize
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.parametrize(
    ("sql", "operation", "collection", "summary"),
    [
        ("SELECT * FROM orders WHERE id = ?", "SELECT", "orders", "SELECT orders"),
        (
            "select o.id from orders o join customers c on c.id = o.cid",
            "SELECT",
            None,
            "SELECT orders customers",
        ),
        ("SELECT a FROM t1, t2 AS x, t3 WHERE x.a = 1", "SELECT", None, "SELECT t1 t2 t3"),
        ('SELECT * FROM "Order Items"', "SELECT", "Order Items", "SELECT Order Items"),
        ("SELECT count(*) FROM (SELECT * FROM t) AS sub", "SELECT", "t", "SELECT t"),
        ("INSERT INTO orders (id, card) VALUES (1, 'x')", "INSERT", "orders", "INSERT orders"),
        (
            "INSERT OR REPLACE INTO main.orders VALUES (?, ?)",
            "INSERT",
            "main.orders",
            "INSERT main.orders",
        ),
        ("UPDATE orders SET total = total + 1 WHERE id = :id", "UPDATE", "orders", "UPDATE orders"),
        (
            "DELETE FROM public.orders WHERE id = $1",
            "DELETE",
            "public.orders",
            "DELETE public.orders",
        ),
        (
            "WITH r AS (SELECT * FROM orders) DELETE FROM archive",
            "DELETE",
            "archive",
            "DELETE archive",
        ),
        (
            "CREATE TABLE IF NOT EXISTS orders (id INTEGER)",
            "CREATE TABLE",
            "orders",
            "CREATE TABLE orders",
        ),
        (
            "CREATE UNIQUE INDEX ix_card ON orders (card)",
            "CREATE INDEX",
            "orders",
            "CREATE INDEX orders",
        ),
        ("DROP TABLE IF EXISTS orders", "DROP TABLE", "orders", "DROP TABLE orders"),
        ("  -- why\n/* who */ SELECT 1", "SELECT", None, "SELECT"),
        ("BEGIN IMMEDIATE", "BEGIN", None, "BEGIN"),
        ("PRAGMA foreign_keys = ON", "PRAGMA", "foreign_keys", "PRAGMA foreign_keys"),
        ("CALL add_order(1, 'x')", "CALL", "add_order", "CALL add_order"),
        (
            "create table a (x); insert into a values (1); insert into a values (2)",
            "BATCH",
            "a",
            "CREATE TABLE a; INSERT a",
        ),
        ("", "QUERY", None, "QUERY"),
        ("42", "QUERY", None, "QUERY"),
    ],
)
def test_operation_collection_and_summary(
    sql: str, operation: str, collection: str, summary: str
) -> None:
    parsed = parse(sql)
    assert (parsed.operation, parsed.collection, parsed.summary) == (operation, collection, summary)


@pytest.mark.parametrize(
    ("sql", "text"),
    [
        ("SELECT * FROM cards WHERE pan = '4111111111111111'", "SELECT * FROM cards WHERE pan = ?"),
        (
            "SELECT * FROM t WHERE a = 'it''s' AND b = 12.5e3 AND c = 0x1F",
            "SELECT * FROM t WHERE a = ? AND b = ? AND c = ?",
        ),
        (
            "SELECT E'a\\'b', $$dollar$$, $tag$x$tag$, x::int FROM t",
            "SELECT ?, ?, ?, x::int FROM t",
        ),
        (
            "SELECT * FROM t WHERE a = ? AND b = :name AND c = %s AND d = %(e)s AND f = $1",
            "SELECT * FROM t WHERE a = ? AND b = :name AND c = %s AND d = %(e)s AND f = $1",
        ),
        (
            "SELECT a -- secret 1234\nFROM t /* token=abc */ WHERE b IN (1,2)",
            "SELECT a FROM t WHERE b IN (?,?)",
        ),
        ("SELECT t1.c2 FROM t1", "SELECT t1.c2 FROM t1"),  # digits in names are not literals
        ("SELECT 'unterminated secret", "SELECT ?"),
    ],
)
def test_literals_are_replaced_and_placeholders_kept(sql: str, text: str) -> None:
    assert sanitize(sql) == text


@given(st.text(min_size=1).filter(lambda s: s.strip("' ") != ""))
def test_no_string_literal_survives_sanitizing(secret: str) -> None:
    """Whatever a quoted literal holds, none of it is left in the sanitized text."""
    quoted = "'" + secret.replace("'", "''") + "'"
    text = sanitize(f"SELECT name FROM users WHERE note = {quoted} AND id = 7")
    assert text == "SELECT name FROM users WHERE note = ? AND id = ?"


@given(st.integers() | st.floats(allow_nan=False, allow_infinity=False))
def test_no_number_survives_sanitizing(number: float) -> None:
    text = sanitize(f"UPDATE accounts SET balance = {number!r} WHERE id = 1")
    assert text in (
        "UPDATE accounts SET balance = ? WHERE id = ?",
        "UPDATE accounts SET balance = -? WHERE id = ?",
    )


def test_summaries_are_bounded() -> None:
    """A summary is at most 255 characters, whatever the script."""
    script = "; ".join(f"INSERT INTO table_{i} VALUES (1)" for i in range(200))
    assert len(parse(script).summary) <= 255
