"""What every driver integration shares: the :class:`Statement` observers see, the
:class:`Tracer` that turns a statement into an observed call, and the observed callables.

A statement runs as an ordinary observed call: ``decorator.observe(run_statement,
target="db:SELECT orders")`` is built once per statement summary (and per pipeline) and
cached, and each execution calls it with one argument, the :class:`Statement`.  Observers read
it as ``arguments["statement"]`` (or ``context.arguments["statement"]``); everything observers
already do with a call (metrics, timing, alerting, audit, logging, spans) applies unchanged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Callable, Dict, FrozenSet, Iterator, Optional, Tuple

from ._sql import ParsedQuery, parse

__all__ = [
    "METHODS",
    "TARGET_SCHEME",
    "Statement",
    "Tracer",
    "run_statement",
    "run_statement_async",
]

#: Targets of database calls are ``db:<summary>``: ``db:SELECT orders``, ``db:COMMIT``.
TARGET_SCHEME = "db"
#: The DB-API calls that can be observed.
METHODS: FrozenSet[str] = frozenset(
    {"execute", "executemany", "executescript", "callproc", "commit", "rollback"}
)

_log = logging.getLogger("callpyback.db")

#: Mapping keys, in the order records show them; keys whose value is None are left out.
_KEYS = (
    "system",
    "namespace",
    "operation",
    "collection",
    "summary",
    "text",
    "method",
    "batch_size",
    "rows",
    "parameters",
    "raw_text",
    "error_type",
    "status_code",
)

COMMIT = ParsedQuery("COMMIT", None, "COMMIT", "COMMIT", 1)
ROLLBACK = ParsedQuery("ROLLBACK", None, "ROLLBACK", "ROLLBACK", 1)


class Statement(Mapping):  # type: ignore[type-arg]
    """One database call, as observers see it (``arguments["statement"]``).

    Attributes (None when unknown or not captured):

    * ``system``: the database system (``"sqlite"``, ``"postgresql"``), OpenTelemetry's
      ``db.system.name``; ``namespace``: the database (file or name);
    * ``operation`` (``"SELECT"``, ``"INSERT"``, ``"CREATE TABLE"``, ``"COMMIT"``, ``"BATCH"``
      for several statements), ``collection`` (the one table it acts on), ``summary`` (what the
      target is made of: ``"SELECT orders"``);
    * ``text``: the statement with every literal replaced by ``?`` (never the raw SQL);
    * ``method``: the DB-API call (``execute``, ``executemany``, ``executescript``,
      ``callproc``, ``commit``, ``rollback``); ``batch_size``: parameter sets of an
      ``executemany`` (or statements of a script);
    * ``rows``: rows affected (or returned) when the driver knows it, set when the call returns;
    * ``parameters`` and ``raw_text``: only when the instrumentation was asked to capture them
      (``capture_parameters``, ``raw_text``);
    * ``error_type`` (``"sqlite3.IntegrityError"``) and ``status_code`` (SQLSTATE, or SQLite's
      error name) when the call failed.

    It is a read-only mapping of those names to their values (the ones that are not None), so
    audit records and logs serialise it as a plain object, and :meth:`attributes` gives
    OpenTelemetry's semantic-convention names.
    """

    # What every call sets is a slot; what few calls set (batch size, captured values, the
    # error) lives in an instance dict created only when set, and reads the None below.
    __slots__ = (*_KEYS[:7], "rows", "__dict__", "_args", "_call", "_cursor")
    batch_size: Optional[int] = None
    parameters: Any = None
    raw_text: Optional[str] = None
    error_type: Optional[str] = None
    status_code: Optional[str] = None

    def __init__(
        self,
        parsed: ParsedQuery,
        system: Optional[str],
        namespace: Optional[str],
        method: str,
        call: Callable[..., Any],
        args: Tuple[Any, ...],
        cursor: Any = None,
    ) -> None:
        self.system = system
        self.namespace = namespace
        self.operation = parsed.operation
        self.collection = parsed.collection
        self.summary = parsed.summary
        self.text: Optional[str] = parsed.text
        self.method = method
        self.rows: Optional[int] = None
        self._call = call
        self._args = args
        self._cursor = cursor

    # --- Mapping ---------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key in _KEYS:
            value = getattr(self, key)
            if value is not None:
                return value
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k in _KEYS if getattr(self, k) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"Statement({dict(self)!r})"

    def attributes(self) -> Dict[str, Any]:
        """OpenTelemetry database attributes (``db.system.name``, ``db.query.summary``, ...)."""
        out: Dict[str, Any] = {}
        for name, value in (
            ("db.system.name", self.system),
            ("db.namespace", self.namespace),
            ("db.operation.name", self.operation),
            ("db.collection.name", self.collection),
            ("db.query.summary", self.summary),
            ("db.query.text", self.text),
            ("db.operation.batch.size", self.batch_size),
            ("db.response.status_code", self.status_code),
            ("error.type", self.error_type),
        ):
            if value is not None:
                out[name] = value
        if self.rows is not None and self.operation == "SELECT":
            out["db.response.returned_rows"] = self.rows
        return out

    # --- filled in by the runners ------------------------------------------------------------
    def _finished(self) -> None:
        cursor = self._cursor
        if cursor is not None:
            try:
                rows = cursor.rowcount
            except Exception:  # a closed cursor, an odd driver: no count rather than an error
                return
            if type(rows) is int and rows >= 0:
                self.rows = rows

    def _failed(self, exc: BaseException) -> None:
        kind = type(exc)
        module = kind.__module__
        self.error_type = (
            kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"
        )
        code = getattr(exc, "sqlstate", None) or getattr(exc, "sqlite_errorname", None)
        if isinstance(code, str):
            self.status_code = code


def run_statement(statement: Statement) -> Any:
    """The observed callable of synchronous calls: runs the driver's own method."""
    __tracebackhide__ = True
    try:
        result = statement._call(*statement._args)
    except BaseException as exc:
        statement._failed(exc)
        raise
    statement._finished()
    return result


async def run_statement_async(statement: Statement) -> Any:
    """The observed callable of asynchronous calls (``await cursor.execute(...)``)."""
    __tracebackhide__ = True
    try:
        result = await statement._call(*statement._args)
    except BaseException as exc:
        statement._failed(exc)
        raise
    statement._finished()
    return result


Select = Callable[[str], Any]

_MAX_PLANS = 4096


class Tracer:
    """Decides, once per distinct statement text, whether and how it is observed.

    ``select(target) -> CallPyBack | None`` picks the pipeline of a target (``db:SELECT
    orders``); None means the statement runs exactly as without CallPyBack.  The observed
    callable of each (target, sync/async) is built once with ``decorator.observe`` and cached;
    so is the parse of each statement text (bounded: dynamic SQL with inlined values is parsed
    every time rather than filling memory).
    """

    def __init__(
        self,
        select: Select,
        *,
        system: Optional[str] = None,
        raw_text: bool = False,
        capture_parameters: bool = False,
        methods: Optional[FrozenSet[str]] = None,
        max_targets: int = 1000,
    ) -> None:
        self.select = select
        self.system = system
        self.raw_text = bool(raw_text)
        self.capture_parameters = bool(capture_parameters)
        self.methods = METHODS if methods is None else frozenset(methods)
        unknown = self.methods - METHODS
        if unknown:
            raise ValueError(
                f"unknown DB-API methods {sorted(unknown)}; choose from {sorted(METHODS)}"
            )
        self.max_targets = max_targets
        #: False after uninstrumenting: connections made meanwhile run their driver's calls bare.
        self.active = True
        # (method, is_async) -> {statement text: (parsed, observed or None)}
        self._caches: Dict[Tuple[str, bool], Dict[Any, Tuple[ParsedQuery, Any]]] = {
            (method, is_async): {} for method in METHODS for is_async in (False, True)
        }
        self._observed: Dict[Tuple[str, bool], Any] = {}
        self._by_method: Dict[Tuple[str, bool], Any] = {}
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        #: Driver classes made for this tracer (base class -> traced subclass).
        self.classes: Dict[Any, Any] = {}

    # --- plans ---------------------------------------------------------------------------------
    def plans(self, method: str, is_async: bool = False) -> Dict[Any, Tuple[ParsedQuery, Any]]:
        """The cache the driver code reads first: statement text -> :meth:`plan`'s answer."""
        return self._caches[(method, is_async)]

    def plan(self, text: Any, method: str, is_async: bool = False) -> Tuple[ParsedQuery, Any]:
        """(parsed, observed callable or None) for statement ``text``, cached when hashable."""
        parsed = parse(text) if isinstance(text, str) else _parse_other(text)
        observed = self.observed(parsed.summary, is_async) if method in self.methods else None
        entry = (parsed, observed)
        cache = self._caches[(method, is_async)]
        if isinstance(text, (str, bytes)):
            if len(cache) >= _MAX_PLANS:
                cache.clear()
            cache[text] = entry
        return entry

    def observed(self, summary: str, is_async: bool = False) -> Any:
        """The observed callable for statements summarised as ``summary``, or None."""
        target = f"{TARGET_SCHEME}:{summary}"
        key = (target, is_async)
        try:
            return self._observed[key]
        except KeyError:
            pass
        with self._lock:
            if key in self._observed:
                return self._observed[key]
            if len(self._observed) >= self.max_targets:
                # Statement summaries are bounded by the schema; a flood of them means table
                # names are generated.  Report the rest under their operation only.
                self._warn_once(
                    "targets",
                    "callpyback-db: more than %d distinct statement targets; further ones are "
                    "reported as db:<OPERATION> (raise max_targets if the schema really has "
                    "that many tables)",
                    self.max_targets,
                )
                short = f"{TARGET_SCHEME}:{summary.split(' ', 1)[0]}"
                if short != target:
                    observed = self._observed.get((short, is_async))
                    if observed is None and (short, is_async) not in self._observed:
                        observed = self._build(short, is_async)
                        self._observed[(short, is_async)] = observed
                    return observed
            observed = self._build(target, is_async)
            self._observed[key] = observed
            return observed

    def _build(self, target: str, is_async: bool) -> Any:
        try:
            decorator = self.select(target)
            if decorator is None:
                return None
            runner = run_statement_async if is_async else run_statement
            return decorator.observe(runner, target=target)
        except Exception as exc:  # a pipeline that cannot observe this call: run it bare
            self._warn_once(
                target,
                "callpyback-db: %s cannot be observed (%s); it runs without observation",
                target,
                exc,
            )
            return None

    def method_observed(self, parsed: ParsedQuery, method: str, is_async: bool = False) -> Any:
        """The observed callable of a call without statement text (commit, rollback)."""
        key = (method, is_async)
        try:
            return self._by_method[key]
        except KeyError:
            pass
        observed = self.observed(parsed.summary, is_async) if method in self.methods else None
        self._by_method[key] = observed
        return observed

    def statement(
        self,
        parsed: ParsedQuery,
        namespace: Optional[str],
        method: str,
        call: Callable[..., Any],
        args: Tuple[Any, ...],
        cursor: Any,
        sql: Any = None,
        parameters: Any = None,
        system: Optional[str] = None,
    ) -> Statement:
        """A :class:`Statement` with what this tracer was asked to capture."""
        st = Statement(parsed, system or self.system, namespace, method, call, args, cursor)
        if self.raw_text and sql is not None:
            st.raw_text = sql if isinstance(sql, str) else _text_of(sql)
        if self.capture_parameters and parameters is not None:
            st.parameters = parameters
        return st

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _log.warning(message, *args)


def _text_of(sql: Any) -> str:
    if isinstance(sql, (bytes, bytearray, memoryview)):
        return bytes(sql).decode("utf-8", "replace")
    return str(sql)


def _parse_other(sql: Any) -> ParsedQuery:
    if isinstance(sql, (bytes, bytearray, memoryview)):
        return parse(_text_of(sql))
    # Anything else (a driver's query object whose text we cannot get safely): never its repr,
    # which may hold values.
    return ParsedQuery("QUERY", None, "QUERY", "", 0)


def batch_size(parameters: Any) -> Tuple[Any, Optional[int]]:
    """(parameters to pass on, their count if known without consuming them)."""
    try:
        return parameters, len(parameters)
    except TypeError:
        return parameters, None
