"""A tiny order book on sqlite3: open orders, pay some, cancel one, report.

    callpyback run examples/db/app.py      # instrumented by the callpyback.toml next to it
    python examples/db/app.py              # the same program, uninstrumented

Nothing here mentions callpyback: the [db] table of callpyback.toml observes the statements,
and every write to the orders table lands in a tamper-evident audit trail.
"""

from __future__ import annotations

import os
import sqlite3
import sys

CARDS = ["4111111111111111", "5500000000000004", "4000056655665556"]


def open_book(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE IF NOT EXISTS orders (
            id INTEGER PRIMARY KEY, card TEXT NOT NULL, total REAL NOT NULL,
            status TEXT NOT NULL DEFAULT 'open'
        );
        CREATE TABLE IF NOT EXISTS events (order_id INTEGER, what TEXT);
        """
    )
    return conn


def place(conn: sqlite3.Connection, order_id: int, card: str, total: float) -> None:
    with conn:  # one transaction: committed, or rolled back on error
        conn.execute(
            "INSERT INTO orders (id, card, total) VALUES (?, ?, ?)", (order_id, card, total)
        )
        conn.execute("INSERT INTO events VALUES (?, 'placed')", (order_id,))


def pay(conn: sqlite3.Connection, order_id: int) -> None:
    with conn:
        conn.execute("UPDATE orders SET status = 'paid' WHERE id = ?", (order_id,))


def cancel(conn: sqlite3.Connection, order_id: int) -> None:
    with conn:
        conn.execute(f"DELETE FROM orders WHERE id = {int(order_id)}")  # literal: sanitized


def main(path: str) -> int:
    conn = open_book(path)
    for i, card in enumerate(CARDS * 2, start=1):
        place(conn, i, card, 10.0 * i)
    try:
        place(conn, 1, CARDS[0], 99.0)  # a duplicate id: IntegrityError, rolled back
    except sqlite3.IntegrityError as exc:
        print(f"refused duplicate order: {exc}")
    for order_id in (1, 2, 5):
        pay(conn, order_id)
    cancel(conn, 6)
    with conn:
        conn.executemany("UPDATE orders SET total = total * ? WHERE id = ?", [(0.9, 3), (0.9, 4)])
    for status, count, total in conn.execute(
        "SELECT status, count(*), sum(total) FROM orders GROUP BY status ORDER BY status"
    ):
        print(f"{count} {status} orders, {total:.2f} in all")
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.getcwd(), "orders.db")))
