"""SQL text -> a low-cardinality summary and a sanitized statement (literals replaced by ``?``).

One scan with one regular expression splits the text into tokens; literals (strings, numbers,
PostgreSQL dollar-quoted strings, hex and bit strings) become ``?``, comments are dropped and
whitespace is collapsed, so what observers and audit records see never holds a value typed into
the SQL.  Placeholders (``?``, ``?1``, ``:name``, ``%s``, ``%(name)s``, ``$1``) are kept.

The summary follows OpenTelemetry's ``db.query.summary`` idea: the operation and the tables it
names (``SELECT orders``, ``INSERT orders``, ``SELECT orders customers``), never the text.  It
is what the statement's target is made of (``db:SELECT orders``), so it must stay
low-cardinality: it holds keywords and identifiers only, and is cut at 255 characters.

Parsing is done once per distinct statement text (the callers cache :func:`parse`'s result).
"""

from __future__ import annotations

import re
from typing import List, NamedTuple, Optional, Tuple

__all__ = ["ParsedQuery", "parse", "sanitize"]

MAX_SUMMARY = 255

_TOKEN = re.compile(
    r"""
      (?P<ws>\s+)
    | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
    | (?P<string>[Ee]'(?:[^'\\]|\\.|'')*(?:'|\Z)|(?:[BbXxNnUu]&?)?'(?:[^']|'')*(?:'|\Z))
    | (?P<dollar>\$(?P<tag>(?:[A-Za-z_]\w*)?)\$.*?(?:\$(?P=tag)\$|\Z))
    | (?P<quoted>"(?:[^"]|"")*(?:"|\Z)|`[^`]*(?:`|\Z))
    | (?P<placeholder>\?\d*|%\([^)]*\)s|%[sd%]|(?<!:):[A-Za-z_]\w*|\$\d+)
    | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<word>[^\W\d]\w*)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)

# Statements whose second word says what kind of object they act on.
_DDL = frozenset({"CREATE", "DROP", "ALTER", "TRUNCATE"})
_DDL_SKIP = frozenset(
    {"OR", "REPLACE", "TEMP", "TEMPORARY", "UNIQUE", "UNLOGGED", "VIRTUAL", "GLOBAL", "LOCAL"}
)
_DDL_OBJECTS = frozenset(
    {
        "TABLE",
        "INDEX",
        "VIEW",
        "TRIGGER",
        "SEQUENCE",
        "SCHEMA",
        "DATABASE",
        "FUNCTION",
        "PROCEDURE",
        "TYPE",
        "EXTENSION",
        "MATERIALIZED",
    }
)
_CONFLICT = frozenset({"OR", "REPLACE", "ROLLBACK", "ABORT", "FAIL", "IGNORE"})
# Words after FROM/JOIN that are not a table name.
_NOT_TABLES = frozenset({"SELECT", "LATERAL", "ONLY", "UNNEST", "VALUES"})
_MAX_TABLES = 4


class ParsedQuery(NamedTuple):
    """What one statement text says, computed once per distinct text."""

    operation: str  # "SELECT", "INSERT", "CREATE TABLE", "BATCH" (several statements), ...
    collection: Optional[str]  # the one table it acts on, when there is exactly one
    summary: str  # "SELECT orders": the statement part of the target
    text: str  # sanitized: literals replaced by ?, comments removed, whitespace collapsed
    statements: int  # how many statements the text holds (executescript, multi-statement)


def sanitize(sql: str) -> str:
    """``sql`` with every literal replaced by ``?`` (comments dropped, whitespace collapsed)."""
    return parse(sql).text


def _tokens(sql: str) -> Tuple[List[str], List[List[Tuple[str, str]]]]:
    """(sanitized pieces, significant tokens per statement)."""
    out: List[str] = []
    statements: List[List[Tuple[str, str]]] = [[]]
    space = False
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup
        if kind in ("ws", "comment"):
            space = bool(out)
            continue
        value = match.group()
        if kind in ("string", "dollar", "number"):
            piece, token = "?", ("literal", "?")
        elif kind == "quoted":
            piece, token = value, ("name", value[1:-1] if len(value) > 1 else value)
        elif kind == "word":
            piece, token = value, ("word", value)
        elif kind == "placeholder":
            piece, token = value, ("literal", value)
        else:
            piece, token = value, ("punct", value)
        if space:
            out.append(" ")
            space = False
        out.append(piece)
        if token == ("punct", ";"):
            statements.append([])
        else:
            statements[-1].append(token)
    return out, [s for s in statements if s]


def _name(tokens: List[Tuple[str, str]], i: int) -> Tuple[Optional[str], int]:
    """A possibly qualified identifier (``schema.table``) starting at ``i``."""
    parts: List[str] = []
    while i < len(tokens):
        kind, value = tokens[i]
        if kind not in ("word", "name"):
            break
        parts.append(value)
        if (
            i + 2 < len(tokens)
            and tokens[i + 1] == ("punct", ".")
            and tokens[i + 2][0]
            in (
                "word",
                "name",
            )
        ):
            i += 2
            continue
        i += 1
        break
    return (".".join(parts) if parts else None), i


def _upper(token: Tuple[str, str]) -> str:
    return token[1].upper() if token[0] == "word" else ""


def _tables_after_from(tokens: List[Tuple[str, str]], start: int) -> List[str]:
    """Table names after FROM / JOIN (and comma-joined FROM lists), at any nesting depth."""
    tables: List[str] = []
    i = start
    n = len(tokens)
    while i < n and len(tables) < _MAX_TABLES:
        word = _upper(tokens[i])
        if word in ("FROM", "JOIN", "INTO", "UPDATE"):
            name, j = _name(tokens, i + 1)
            if name is not None and name.upper() not in _NOT_TABLES:
                if name not in tables:
                    tables.append(name)
                i = j
                # FROM a, b, c: skip an alias, then follow the commas
                while word == "FROM" and i < n and len(tables) < _MAX_TABLES:
                    if tokens[i][0] in ("word", "name") and _upper(tokens[i]) not in (
                        "WHERE",
                        "JOIN",
                        "INNER",
                        "LEFT",
                        "RIGHT",
                        "FULL",
                        "CROSS",
                        "GROUP",
                        "ORDER",
                        "LIMIT",
                        "ON",
                        "NATURAL",
                        "UNION",
                        "HAVING",
                        "WINDOW",
                    ):
                        if _upper(tokens[i]) == "AS":
                            i += 1
                        i += 1
                    if i < n and tokens[i] == ("punct", ","):
                        name, i = _name(tokens, i + 1)
                        if name is not None and name not in tables:
                            tables.append(name)
                        continue
                    break
                continue
        i += 1
    return tables


def _statement(tokens: List[Tuple[str, str]]) -> Tuple[str, List[str]]:
    """(operation, tables) of one statement's significant tokens."""
    i = 0
    n = len(tokens)
    while i < n and tokens[i] == ("punct", "("):
        i += 1  # (SELECT ...) UNION ...
    if i >= n or tokens[i][0] != "word":
        return "QUERY", []
    first = _upper(tokens[i])
    if first == "WITH":
        # WITH a AS (...), b AS (...) <main statement>: the main statement decides.
        depth = 0
        j = i + 1
        while j < n:
            kind, value = tokens[j]
            if value == "(" and kind == "punct":
                depth += 1
            elif value == ")" and kind == "punct":
                depth -= 1
            elif depth == 0 and _upper(tokens[j]) in ("SELECT", "INSERT", "UPDATE", "DELETE"):
                operation, tables = _statement(tokens[j:])
                return operation, tables
            j += 1
        return "WITH", []
    if first in _DDL:
        j = i + 1
        while j < n and _upper(tokens[j]) in _DDL_SKIP:
            j += 1
        kind = _upper(tokens[j]) if j < n else ""
        if kind not in _DDL_OBJECTS:
            return first, []
        operation = f"{first} {kind}"
        j += 1
        if kind == "MATERIALIZED" and j < n and _upper(tokens[j]) == "VIEW":
            operation, j = f"{first} MATERIALIZED VIEW", j + 1
        while j < n and _upper(tokens[j]) in ("IF", "NOT", "EXISTS", "CONCURRENTLY"):
            j += 1
        name, j = _name(tokens, j)
        if kind == "INDEX":
            # CREATE INDEX idx ON table (...): the table is what it acts on
            while j < n and _upper(tokens[j]) != "ON":
                j += 1
            name, _ = _name(tokens, j + 1)
        return operation, [name] if name else []
    if first in ("INSERT", "REPLACE", "UPSERT"):
        j = i + 1
        if first == "INSERT" and j < n and _upper(tokens[j]) == "OR":
            j += 2  # INSERT OR REPLACE / OR IGNORE ...
        if j < n and _upper(tokens[j]) == "INTO":
            j += 1
        name, _ = _name(tokens, j)
        return first, [name] if name else []
    if first == "UPDATE":
        j = i + 1
        while j < n and _upper(tokens[j]) in _CONFLICT | {"ONLY"}:
            j += 1
        name, _ = _name(tokens, j)
        return first, [name] if name else []
    if first == "DELETE":
        j = i + 1
        if j < n and _upper(tokens[j]) == "FROM":
            j += 1
        if j < n and _upper(tokens[j]) == "ONLY":
            j += 1
        name, _ = _name(tokens, j)
        return first, [name] if name else []
    if first == "SELECT":
        return first, _tables_after_from(tokens, i + 1)
    if first in ("COPY", "VACUUM", "ANALYZE", "REINDEX", "LOCK"):
        j = i + 1
        if j < n and _upper(tokens[j]) == "TABLE":
            j += 1
        name, _ = _name(tokens, j)
        if name is not None and name.upper() in ("FULL", "VERBOSE", "INTO"):
            name = None
        return first, [name] if name else []
    if first in ("CALL", "EXEC", "EXECUTE"):
        name, _ = _name(tokens, i + 1)
        return first, [name] if name else []
    if first == "PRAGMA":
        name, _ = _name(tokens, i + 1)
        return first, [name] if name else []
    if first in ("BEGIN", "START") or first in ("COMMIT", "END", "ROLLBACK", "SAVEPOINT"):
        return ("BEGIN" if first == "START" else first), []
    return (first if len(first) <= 32 else "QUERY"), []


def _cut(summary: str) -> str:
    return summary if len(summary) <= MAX_SUMMARY else summary[:MAX_SUMMARY].rstrip()


def parse(sql: str) -> ParsedQuery:
    """Operation, table, summary and sanitized text of ``sql`` (one or several statements)."""
    pieces, statements = _tokens(sql)
    text = "".join(pieces)
    if not statements:
        return ParsedQuery("QUERY", None, "QUERY", text, 0)
    parts: List[str] = []
    operations: List[str] = []
    collections: List[Optional[str]] = []
    for tokens in statements:
        operation, tables = _statement(tokens)
        part = " ".join([operation, *tables])
        if part not in parts:
            parts.append(part)
        operations.append(operation)
        collections.append(tables[0] if len(tables) == 1 else None)
    if len(statements) == 1:
        return ParsedQuery(operations[0], collections[0], _cut(parts[0]), text, 1)
    single = collections[0] if len(set(collections)) == 1 else None
    return ParsedQuery("BATCH", single, _cut("; ".join(parts)), text, len(statements))
