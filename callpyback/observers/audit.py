"""``AuditObserver``: an append-only JSON-lines audit trail of calls (who, what, when, outcome).

Subclassing seam (the finance plugin's hash-chained trail is built this way):

* :meth:`AuditObserver.build_record` ``(context) -> dict`` decides what a record holds;
* :meth:`AuditObserver.write_record` ``(record)`` serialises and appends it, holding
  :attr:`AuditObserver.lock` (re-entrant), so an override can extend the record with state that
  must follow file order (e.g. the previous record's hash) and then call ``super()``;
* :meth:`AuditObserver.serialize` ``(record) -> str`` makes the line (no newline);
* :meth:`AuditObserver.rotate` moves the full file aside; override to seal or sign it first.

The file itself is an :class:`AppendOnlyFile`, which the finance plugin's chain uses too: whole
lines appended under a lock that threads and processes share, never a partial record left behind
by a failed write, never opened through a symbolic link, and safe across ``fork()``.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import threading
import weakref
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Tuple, Union

from .. import _background
from ..errors import ConfigurationError
from ..states import ExecutionState
from ._base import BaseObserver
from .redaction import Redactor

__all__ = ["AppendOnlyFile", "AuditObserver", "open_for_append", "trace_ids"]

_ERROR = ExecutionState.ERROR

_flock: Optional[Callable[[int, int], Any]]
try:
    import fcntl

    _flock, _LOCK_EX, _LOCK_UN = fcntl.flock, fcntl.LOCK_EX, fcntl.LOCK_UN
except ImportError:  # pragma: no cover - Windows: threads only (documented)
    _flock, _LOCK_EX, _LOCK_UN = None, 0, 0

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# O_BINARY: no newline translation on Windows (the finance chain hashes the exact bytes).
_FLAGS = os.O_RDWR | os.O_APPEND | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)

PathLike = Union[str, "os.PathLike[str]"]


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


def trace_ids() -> Optional[Tuple[str, str]]:
    """``(trace_id, span_id)`` of the current OpenTelemetry span, in hex; None without one.

    Only an OpenTelemetry that the application imported counts: this never imports it (an audit
    trail must not pull a tracing stack into a process that does not use one).
    """
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    try:
        ctx = trace.get_current_span().get_span_context()
        if not ctx.is_valid:
            return None
        return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
    except Exception:  # a half-imported or foreign module: no ids rather than no record
        return None


def open_for_append(path: PathLike, mode: Optional[int] = None) -> Tuple[int, bool]:
    """Open ``path`` to append to, creating it; ``(fd, created)``.  Never through a symlink.

    A final symbolic link, dangling or not, is refused with an :class:`OSError` that says so:
    whoever can create a link in the directory could otherwise send the trail anywhere (or have
    it create a file of their choosing).  ``mode``: the exact permissions of a new file
    (default: 0o666 less the umask).
    """
    for _ in range(3):
        try:
            fd = os.open(path, _FLAGS | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666)
        except FileExistsError:  # also a dangling link: O_EXCL never follows one
            pass
        else:
            if mode is not None and hasattr(os, "fchmod"):
                os.fchmod(fd, mode)
            return fd, True
        if not _NOFOLLOW and os.path.islink(path):  # pragma: no cover - Windows: best effort
            raise _link_error(path)
        try:
            return os.open(path, _FLAGS | _NOFOLLOW), False
        except FileNotFoundError:
            continue  # removed in between: create it
        except OSError as exc:
            if os.path.islink(path):
                raise _link_error(path) from None
            raise exc from None
    raise OSError(errno.EAGAIN, f"{str(path)!r} keeps appearing and disappearing", str(path))


def _link_error(path: PathLike) -> OSError:
    try:
        target = os.readlink(path)
    except OSError:  # pragma: no cover - removed in between
        target = "?"
    return OSError(
        errno.ELOOP,
        f"{str(path)!r} is a symbolic link (to {target!r}); an audit trail is never opened "
        "through a link, which would let whoever can create one redirect the trail: give the "
        "real path, or remove the link",
        str(path),
    )


class AppendOnlyFile:
    """A file that threads and processes append whole lines to.

    * Opened without following a final symbolic link (see :func:`open_for_append`).
    * :meth:`locked` holds a thread lock and, on POSIX, ``fcntl.flock`` on the file, and checks
      that the file held is still the one at ``path`` (another process may have rotated, moved
      or removed it): records never go to a file that nobody will read.
    * :meth:`append` writes at the end.  If the file ends in a partial line (a writer died
      mid-record) it ends that line first, so the new record is a line of its own.  If the
      write fails or is short (disk full, file size limit), the file is cut back to where it
      was, so no partial record is left behind, and the error is raised.
    * After ``fork()`` the child has a fresh lock and opens its own descriptor (an inherited
      one would share the parent's ``flock``).

    On platforms without ``fcntl`` (Windows) the lock covers the threads of one process only.
    """

    def __init__(self, path: PathLike, *, mode: Optional[int] = None, fsync: bool = False):
        self.path = Path(path)
        self.mode = mode
        self.fsync = fsync
        self._lock = threading.RLock()
        self._fd: Optional[int] = None
        self._depth = 0
        # The file's size after our last append: when it still is, no one wrote in between
        # and the end needs no checking.
        self._end = -1
        _AFTER_FORK.add(self)

    def open(self) -> bool:
        """Open the file now (a bad path shows here rather than at the first append).

        Returns True if this created it.
        """
        with self._lock:
            if self._fd is not None:
                return False
            self._fd, created = open_for_append(self.path, self.mode)
            self._end = -1
            return created

    @contextmanager
    def locked(self) -> Iterator[AppendOnlyFile]:
        """Hold the file (threads and processes) for :meth:`size`, :meth:`read`, :meth:`append`.

        Re-entrant within a thread.
        """
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            fd = self._acquire()
            self._depth = 1
            try:
                yield self
            finally:
                self._depth = 0
                if _flock is not None and self._fd == fd:
                    with suppress(OSError):  # closing the descriptor releases it anyway
                        _flock(fd, _LOCK_UN)

    def _acquire(self) -> int:
        for _ in range(8):
            fd = self._fd
            if fd is None:
                self.open()
                fd = self._fd
                assert fd is not None
            if _flock is not None:
                _flock(fd, _LOCK_EX)
            if self._is_current(fd):
                return fd
            # Rotated, moved or removed since we opened it: appending there would put the
            # record where no one looks (or nowhere).  Reopen the file now at the path.
            self._drop()
        raise OSError(errno.EAGAIN, f"{str(self.path)!r} keeps being replaced", str(self.path))

    def _is_current(self, fd: int) -> bool:
        try:
            at_path = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (at_path.st_dev, at_path.st_ino) == (held.st_dev, held.st_ino)

    def _drop(self) -> None:
        fd, self._fd = self._fd, None
        self._end = -1
        if fd is not None:
            with suppress(OSError):
                os.close(fd)  # also releases our flock

    def _held(self) -> int:
        if not self._depth or self._fd is None:
            raise RuntimeError("AppendOnlyFile: use size/read/append inside `with file.locked()`")
        return self._fd

    def size(self) -> int:
        """The file's size in bytes."""
        return os.fstat(self._held()).st_size

    def read(self, length: int, offset: int) -> bytes:
        """Read ``length`` bytes at ``offset``."""
        fd = self._held()
        if hasattr(os, "pread"):
            return os.pread(fd, length, offset)
        os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows
        return os.read(fd, length)  # pragma: no cover

    def append(self, data: bytes) -> int:
        """Append ``data`` (whole lines) at the end; returns the file's new size.

        On any failure the file is cut back to its size before the call, then the error is
        raised: either the whole record is in the file, or none of it is.
        """
        fd = self._held()
        size = os.fstat(fd).st_size
        if size and size != self._end and self.read(1, size - 1) != b"\n":
            data = b"\n" + data  # a writer died mid-record: end its line, keep ours whole
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)  # may be short: a full disk, a file size limit
                view = view[written:]
            if self.fsync:
                os.fsync(fd)
        except BaseException:
            self._end = -1
            with suppress(OSError):  # e.g. not a regular file; the next append ends the line
                os.ftruncate(fd, size)
            raise
        self._end = size + len(data)
        return self._end

    def close(self) -> None:
        """Close the descriptor; a later :meth:`locked` opens the file again."""
        with self._lock:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                os.close(fd)

    def _after_fork(self) -> None:
        # The parent's threads may have held the lock at fork() and never release it here;
        # the inherited descriptor shares the parent's flock, so open our own.
        self._lock = threading.RLock()
        self._depth = 0
        self._drop()

    def __repr__(self) -> str:
        return f"AppendOnlyFile({str(self.path)!r})"


class AuditObserver(BaseObserver):
    """Append one JSON object per completed (or interrupted) call to ``path``.

    Fields: ``timestamp`` (ISO 8601, UTC) and ``epoch``, ``who`` (``who(context)``; by default
    the OS user), ``what`` (``module:qualname``), ``outcome`` (success, failure, recovered,
    cancelled, interrupted), ``duration``, ``attempt``, ``arguments`` (redacted), ``exception``
    (type and redacted message) and, if ``include_result``, the redacted ``result``; plus ``pid``
    and ``thread``, and ``trace_id``/``span_id`` when an OpenTelemetry span is current.  Each
    line is one write; ``fsync=True`` also forces it to disk.  With ``max_bytes`` the file is
    rotated to ``path.1`` ... ``path.<backup_count>``, safely across processes.

    ``background=True`` builds the record on the caller's thread when the call is notified, and
    leaves only the write to the background worker.

    A file that cannot be opened (or is a symbolic link) is a
    :class:`~callpyback.errors.ConfigurationError` here; a write that fails later (disk full,
    permissions) is undone, logged, counted in :attr:`write_errors`, and the observed call goes
    on.
    """

    #: Where write failures are logged, and the name they are logged under.
    logger_name = "callpyback.audit"
    subject = "AuditObserver"
    failure_verb = "could not write to"

    def __init__(
        self,
        path: PathLike,
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
        # Not BaseObserver's background: the core would snapshot the context shallowly and build
        # the record later; we build it at notification time and defer only the write (and
        # ``defers_own_writes`` keeps enable_async_observers=True from moving us to the worker).
        super().__init__(priority=priority, name=name)
        self.background_writes = bool(background)
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
        #: Backups removed by rotation because there were already ``backup_count`` (logged).
        self.backups_deleted = 0
        self._failing = 0  # consecutive failed writes: an outage is reported when it starts/ends
        self._closed = False
        self._warned_worker = False
        self._file = AppendOnlyFile(self.path, fsync=self.fsync)
        _AFTER_FORK.add(self)
        if create_dirs:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigurationError(
                    f"AuditObserver cannot create the directory of {str(self.path)!r}: {exc}"
                ) from exc
        self._open_checked()
        self.states = frozenset({ExecutionState.COMPLETED, _ERROR})

    def _open_checked(self) -> None:
        try:
            self._file.open()
        except OSError as exc:
            raise ConfigurationError(
                f"AuditObserver cannot open {str(self.path)!r} for appending: "
                f"{exc.strerror or exc}; check the path and its permissions"
            ) from exc

    defers_own_writes = True

    # --- the subclassing seam -------------------------------------------------------------
    def update(self, context: Any) -> None:
        """Write the audit record of a completed (or interrupted) call."""
        if not self._warned_worker and threading.current_thread() is _background_thread():
            self._warn_shallow()
        record = self.build_record(context)
        if self.background_writes:
            self._write_later(record)
        else:
            self.write_record(record)

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
            else {
                "type": type(exc).__qualname__,
                "message": redactor.exception_message(exc, context.arguments),
            }
        )
        if outcome == "recovered":
            record["recovered_by"] = context.recovered_by
        if self.include_result and outcome in ("success", "recovered"):
            record["result"] = redactor.redact(context.value)
        record["pid"] = os.getpid()
        record["thread"] = threading.current_thread().name
        ids = trace_ids()
        if ids is not None:
            record["trace_id"], record["span_id"] = ids
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
        """Move ``path`` to ``path.1`` (shifting older ones up) and start a new file.

        Done under the file's cross-process lock: a process that still holds the old file
        notices at its next write and reopens ``path``.  A backup pushed past ``backup_count``
        is deleted, and that is logged (WARNING) and counted in :attr:`backups_deleted`.
        """
        with self.lock:
            if self._closed:
                raise ValueError(f"audit file {str(self.path)!r} is closed")
            with self._file.locked():
                self._rotate_files()

    # --- internals ------------------------------------------------------------------------
    def _rotate_files(self) -> None:
        base = str(self.path)
        top = 0  # backups are numbered 1, 2, ... without gaps; a gap ends the shift
        while top < self.backup_count and os.path.lexists(f"{base}.{top + 1}"):
            top += 1
        if top == self.backup_count:
            self.backups_deleted += 1
            _logger(self.logger_name).warning(
                "%s rotation deletes %r (backup_count=%d): the records in it are no longer "
                "kept; raise backup_count, or archive the backups, to keep them",
                self.subject,
                f"{base}.{top}",
                self.backup_count,
            )
            top -= 1  # path.<backup_count - 1> replaces it
        for i in range(top, 0, -1):
            os.replace(f"{base}.{i}", f"{base}.{i + 1}")
        os.replace(base, f"{base}.1")
        self.rotations += 1
        fd, _ = open_for_append(base)  # the next file exists from now on, even if idle
        os.close(fd)

    def _write_line(self, line: str) -> None:
        data = line.encode("utf-8")
        try:
            if self._closed:
                raise ValueError(f"audit file {str(self.path)!r} is closed")
            for _ in range(8):
                with self._file.locked() as file:
                    size = file.size()
                    if self.max_bytes is not None and size and size + len(data) > self.max_bytes:
                        self.rotate()
                        continue  # other processes may fill the new file first: look again
                    file.append(data)
                    break
            else:
                raise OSError(errno.EAGAIN, f"{str(self.path)!r} is rotated faster than written")
        except (OSError, ValueError) as exc:
            self._report_error(exc)
            return
        self._report_written()

    def _write_later(self, record: Dict[str, Any]) -> None:
        # A JSON round trip: plain data owned by the record alone, so nothing the caller
        # mutates after the call can change what is written.
        frozen = json.loads(self.serialize(record))
        if _background._DISPATCHER.exiting or not _background.defer(
            self.write_record, frozen, self.name or "audit"
        ):
            self.write_record(frozen)  # the queue is full: an audit record is never dropped

    def _warn_shallow(self) -> None:
        self._warned_worker = True
        _logger(self.logger_name).warning(
            "%s %r is run by the background worker (enable_async_observers=True), from a shallow "
            "snapshot of each call: an argument mutated after the call is recorded as mutated, "
            "and no trace_id/span_id is seen. Give the observer background=True instead: it "
            "builds each record on the caller's thread and writes it in the background",
            type(self).__name__,
            self.name,
        )

    def _report_error(self, exc: BaseException) -> None:
        with self.lock:
            self.write_errors += 1
            self._failing += 1
            first = self._failing == 1
        if first:
            _logger(self.logger_name).error(
                "%s %s %r: %s; the record was not written (nothing partial is left in the "
                "file). The observed calls go on; further failures are counted (write_errors) "
                "until a write succeeds again",
                self.subject,
                self.failure_verb,
                str(self.path),
                exc,
            )

    def _report_written(self) -> None:
        with self.lock:
            self.records_written += 1
            lost, self._failing = self._failing, 0
        if lost:
            _logger(self.logger_name).warning(
                "%s is writing to %r again, but %d record%s were not written while it failed "
                "(write_errors=%d in all)",
                self.subject,
                str(self.path),
                lost,
                "s" if lost != 1 else "",
                self.write_errors,
            )

    def _after_fork(self) -> None:
        self.lock = threading.RLock()

    def close(self) -> None:
        """Close the file; later records count as write errors.  Never raises."""
        with self.lock:
            self._closed = True
            try:
                self._file.close()
            except OSError as exc:
                self._report_error(exc)

    def __enter__(self) -> AuditObserver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} path={str(self.path)!r} written={self.records_written} "
            f"errors={self.write_errors}>"
        )


def _logger(name: str) -> Any:
    import logging  # only when there is something to report: `import callpyback` stays light

    return logging.getLogger(name)


def _background_thread() -> Any:
    return _background._DISPATCHER.thread


#: Everything here that holds a lock or a descriptor; reset in a forked child.
_AFTER_FORK: weakref.WeakSet[Any] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for obj in list(_AFTER_FORK):
        obj._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
