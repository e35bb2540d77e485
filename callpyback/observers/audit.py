"""``AuditObserver``: an append-only JSON-lines audit trail of calls (who, what, when, outcome).

Subclassing seam (the finance plugin's hash-chained trail is built this way):

* :meth:`AuditObserver.build_record` ``(context) -> dict`` decides what a record holds;
* :meth:`AuditObserver.write_record` ``(record)`` serialises and appends it, holding
  :attr:`AuditObserver.lock` (re-entrant), so an override can extend the record with state that
  must follow file order (e.g. the previous record's hash) and then call ``super()``;
* :meth:`AuditObserver.serialize` ``(record) -> str`` makes the line (no newline);
* :meth:`AuditObserver.rotate` moves the full file aside; override to seal or sign it first.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Callable, Dict, Optional, Union

from ..errors import ConfigurationError
from ..states import ExecutionState
from ._base import BaseObserver
from .redaction import Redactor

__all__ = ["AuditObserver"]

_ERROR = ExecutionState.ERROR


def _default_who(context: Any) -> str:
    return _process_user()


_USER: Optional[str] = None


def _process_user() -> str:
    global _USER
    if _USER is None:
        try:
            import getpass

            _USER = getpass.getuser()
        except Exception:  # no login name (containers): fall back to the uid
            _USER = f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return _USER


class AuditObserver(BaseObserver):
    """Append one JSON object per completed (or interrupted) call to ``path``.

    Fields: ``timestamp`` (ISO 8601, UTC) and ``epoch``, ``who`` (``who(context)``; by default
    the OS user), ``what`` (``module:qualname``), ``outcome`` (success, failure, recovered,
    cancelled, interrupted), ``duration``, ``attempt``, ``arguments`` (redacted), ``exception``
    (type and redacted message) and, if ``include_result``, the redacted ``result``; plus ``pid``
    and ``thread``.  Each line is flushed; ``fsync=True`` also forces it to disk.  With
    ``max_bytes`` the file is rotated to ``path.1`` ... ``path.<backup_count>``.

    A file that cannot be opened is a :class:`~callpyback.errors.ConfigurationError` here; a
    write that fails later (disk full, permissions) is logged once, counted in
    :attr:`write_errors`, and the observed call goes on.
    """

    def __init__(
        self,
        path: Union[str, os.PathLike[str]],
        *,
        who: Optional[Callable[[Any], Any]] = None,
        include_arguments: bool = True,
        include_result: bool = False,
        redactor: Optional[Redactor] = None,
        fsync: bool = False,
        max_bytes: Optional[int] = None,
        backup_count: int = 5,
        create_dirs: bool = True,
        priority: int = 0,
        name: Optional[str] = None,
        background: bool = False,
    ) -> None:
        super().__init__(priority=priority, name=name, background=background)
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise ConfigurationError(f"AuditObserver path must be a file path, got {path!r}")
        self.path = Path(path)
        if who is not None and not callable(who):
            raise ConfigurationError(
                f"AuditObserver who must be a callable taking the context, got {who!r}"
            )
        self.who = who or _default_who
        if redactor is not None and not isinstance(redactor, Redactor):
            raise ConfigurationError(f"AuditObserver redactor must be a Redactor, got {redactor!r}")
        self.redactor = redactor if redactor is not None else Redactor()
        self.include_arguments = bool(include_arguments)
        self.include_result = bool(include_result)
        self.fsync = bool(fsync)
        if max_bytes is not None and (
            isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1
        ):
            raise ConfigurationError(
                f"AuditObserver max_bytes must be a positive int or None, got {max_bytes!r}"
            )
        if isinstance(backup_count, bool) or not isinstance(backup_count, int) or backup_count < 1:
            raise ConfigurationError(
                f"AuditObserver backup_count must be at least 1 (an audit trail is never deleted "
                f"outright by rotation), got {backup_count!r}"
            )
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        #: Re-entrant: subclasses extend write_record under it and then call super().
        self.lock = threading.RLock()
        self.records_written = 0
        self.write_errors = 0
        self.rotations = 0
        self._file: Optional[IO[str]] = None
        if create_dirs:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigurationError(
                    f"AuditObserver cannot create the directory of {str(self.path)!r}: {exc}"
                ) from exc
        self._open()
        self.states = frozenset({ExecutionState.COMPLETED, _ERROR})

    def _open(self) -> None:
        try:
            self._file = open(self.path, "a", encoding="utf-8", newline="\n")  # noqa: SIM115
        except OSError as exc:
            raise ConfigurationError(
                f"AuditObserver cannot open {str(self.path)!r} for appending: {exc}; check the "
                "path and its permissions"
            ) from exc
        self._size = self._file.tell()

    # --- the subclassing seam -------------------------------------------------------------
    def update(self, context: Any) -> None:
        self.write_record(self.build_record(context))

    def build_record(self, context: Any) -> Dict[str, Any]:
        """The record of one call, as a JSON-serialisable dict (redaction already applied)."""
        info = context.function_info
        ts = context.timestamp
        outcome = context.outcome
        redactor = self.redactor
        record: Dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(ts, timezone.utc).isoformat(),
            "epoch": ts,
            "who": self.who(context),
            "what": info.target,
            "outcome": outcome,
            "duration": context.execution_time,
            "attempt": context.attempt,
        }
        if self.include_arguments:
            record["arguments"] = redactor.redact_mapping(context.arguments)
        exc = context.exception
        record["exception"] = (
            None
            if exc is None
            else {"type": type(exc).__qualname__, "message": redactor.redact_text(str(exc))}
        )
        if outcome == "recovered":
            record["recovered_by"] = context.recovered_by
        if self.include_result and outcome in ("success", "recovered"):
            record["result"] = redactor.redact(context.value)
        record["pid"] = os.getpid()
        record["thread"] = threading.current_thread().name
        return record

    def serialize(self, record: Dict[str, Any]) -> str:
        """One JSON line (without the newline); unknown objects become their redacted repr."""
        return json.dumps(
            record,
            ensure_ascii=False,
            separators=(",", ":"),
            default=lambda o: self.redactor.redact_text(repr(o)),
        )

    def write_record(self, record: Dict[str, Any]) -> None:
        """Serialise and append ``record``; never raises for I/O errors (they are counted)."""
        line = self.serialize(record) + "\n"
        with self.lock:
            self._write_line(line)

    def rotate(self) -> None:
        """Move ``path`` to ``path.1`` (shifting older ones up) and start a new file."""
        with self.lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            base = str(self.path)
            for i in range(self.backup_count - 1, 0, -1):
                if os.path.exists(f"{base}.{i}"):
                    os.replace(f"{base}.{i}", f"{base}.{i + 1}")
            if os.path.exists(base):
                os.replace(base, f"{base}.1")
            self.rotations += 1
            self._file = open(self.path, "a", encoding="utf-8", newline="\n")  # noqa: SIM115
            self._size = 0

    # --- internals ------------------------------------------------------------------------
    def _write_line(self, line: str) -> None:
        try:
            if self._file is None:
                raise OSError(f"audit file {str(self.path)!r} is closed")
            encoded = len(line.encode("utf-8"))
            if self.max_bytes is not None and self._size and self._size + encoded > self.max_bytes:
                self.rotate()
                assert self._file is not None
            self._file.write(line)
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())
            self._size += encoded
            self.records_written += 1
        except (OSError, ValueError) as exc:
            self._report_error(exc)

    def _report_error(self, exc: Exception) -> None:
        self.write_errors += 1
        if self.write_errors == 1:
            import logging

            logging.getLogger("callpyback.audit").error(
                "AuditObserver could not write to %r: %s; the observed calls go on, and later "
                "write errors are only counted (write_errors)",
                str(self.path),
                exc,
            )

    def close(self) -> None:
        """Flush and close the file; later records count as write errors.  Never raises."""
        with self.lock:
            file, self._file = self._file, None
            if file is None:
                return
            try:
                try:
                    file.flush()
                    if self.fsync:
                        os.fsync(file.fileno())
                finally:
                    file.close()  # closes the descriptor even when the final flush fails
            except OSError as exc:
                self._report_error(exc)

    def __enter__(self) -> AuditObserver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<AuditObserver path={str(self.path)!r} written={self.records_written} "
            f"errors={self.write_errors}>"
        )
