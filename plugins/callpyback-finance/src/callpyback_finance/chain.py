"""The hash-chained, append-only JSON-lines file: writing (thread- and process-safe) and verifying.

Each line is one record, serialised canonically (sorted keys, no spaces, ASCII).  A record carries
``seq`` (1, 2, 3, ...), ``prev`` (the previous record's hash; 64 zeros for the first) and ``hash``:
the SHA-256 of the canonical serialisation of the record without its ``hash`` key.  Changing,
removing, inserting or reordering any record breaks the chain at that point, which
:func:`verify_file` reports by line number.

Concurrency: a thread lock serialises writers in one process; ``fcntl.flock`` on the file
serialises processes, and the sequence number and previous hash are read from the file itself
under that lock, so several processes can append to one trail.  On platforms without ``fcntl``
(Windows) only the thread lock applies: give each process its own file there.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple, Union

_flock: Optional[Callable[[int, int], Any]]
try:
    import fcntl

    _flock, _LOCK_EX, _LOCK_UN = fcntl.flock, fcntl.LOCK_EX, fcntl.LOCK_UN
except ImportError:  # pragma: no cover - Windows: no cross-process locking (documented)
    _flock, _LOCK_EX, _LOCK_UN = None, 0, 0

__all__ = [
    "GENESIS",
    "AuditTrail",
    "AuditTrailError",
    "VerifyResult",
    "canonical",
    "jsonable",
    "record_hash",
    "verify_file",
]

#: ``prev`` of the first record of a trail.
GENESIS = "0" * 64

DURABILITY = ("fsync", "flush")


class AuditTrailError(Exception):
    """The trail file cannot be appended to safely (its last record is not a valid record)."""


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types, so that serialising, parsing and re-serialising is exact.

    Decimals become strings (never floats: amounts keep every digit), mapping keys become
    strings, and anything else unknown becomes its ``repr``.
    """
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is dict:
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (str, int, float)):  # subclasses (enums, bool...) keep their JSON form
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [jsonable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    return repr(value)


def canonical(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical form of ``record`` without its ``hash`` key."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical(body).encode("ascii")).hexdigest()


@contextmanager
def _file_lock(fd: int) -> Iterator[None]:
    if _flock is None:  # pragma: no cover
        yield
        return
    _flock(fd, _LOCK_EX)
    try:
        yield
    finally:
        _flock(fd, _LOCK_UN)


class AuditTrail:
    """Appends hash-chained records to ``path``.

    ``durability="fsync"`` (the default) makes each record reach the disk before :meth:`append`
    returns; ``"flush"`` hands it to the operating system only (it survives the process
    crashing, not the machine losing power), which is much faster.
    """

    def __init__(self, path: Union[str, os.PathLike[str]], *, durability: str = "fsync") -> None:
        if durability not in DURABILITY:
            raise ValueError(f"durability must be one of {DURABILITY}, got {durability!r}")
        self.path = Path(path)
        self.durability = durability
        self._lock = threading.Lock()
        self._fd: Optional[int] = None
        self._pid = 0
        # (file size after our last write, its seq, its hash): skips re-reading the tail when
        # no other process appended in between.
        self._last: Optional[Tuple[int, int, str]] = None
        ref = weakref.ref(self)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    def _reset_after_fork(self) -> None:
        # The child inherits the fd, whose flock would be shared with the parent's: reopen.
        self._lock = threading.Lock()
        self._fd = None
        self._last = None

    def _open(self) -> int:
        pid = os.getpid()
        if self._fd is None or self._pid != pid:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # O_BINARY: no newline translation on Windows, or the hashes would not match.
            flags = os.O_RDWR | os.O_APPEND | os.O_CREAT
            flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
            self._fd = os.open(self.path, flags, 0o640)
            self._pid = pid
            self._last = None
        return self._fd

    def append(self, body: Mapping[str, Any]) -> Dict[str, Any]:
        """Add ``body`` (plus ``seq``, ``prev`` and ``hash``) as the next record; returns it."""
        record: Dict[str, Any] = jsonable(dict(body))
        for key in ("seq", "prev", "hash"):
            record.pop(key, None)
        with self._lock:
            fd = self._open()
            with _file_lock(fd):
                size = os.fstat(fd).st_size
                if self._last is not None and self._last[0] == size:
                    seq, prev = self._last[1], self._last[2]
                else:
                    seq, prev, torn = _read_tail(fd, size, self.path)
                    if torn:
                        # A writer died mid-record: end that line so ours stays parseable;
                        # verify reports the torn line.
                        _write_all(fd, b"\n")
                record["seq"] = seq + 1
                record["prev"] = prev
                record["hash"] = record_hash(record)
                _write_all(fd, (canonical(record) + "\n").encode("ascii"))
                if self.durability == "fsync":
                    os.fsync(fd)
                self._last = (os.fstat(fd).st_size, seq + 1, record["hash"])
        return record

    def close(self) -> None:
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None
            self._last = None

    def __repr__(self) -> str:
        return f"AuditTrail({str(self.path)!r}, durability={self.durability!r})"


def _after_fork(ref: Any) -> None:
    trail = ref()
    if trail is not None:
        trail._reset_after_fork()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_at(fd: int, length: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, length, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows; appends ignore the position
    return os.read(fd, length)  # pragma: no cover


def _read_tail(fd: int, size: int, path: Path) -> Tuple[int, str, bool]:
    """(seq, hash, torn) of the last complete record; (0, GENESIS, False) for an empty file."""
    if size == 0:
        return 0, GENESIS, False
    chunk = 4096
    start = size
    while True:
        start = max(0, start - chunk)
        lines = _read_at(fd, size - start, start).split(b"\n")
        torn = lines[-1] != b""  # the file does not end with a newline
        complete = lines[:-1]
        # Unless we read from the start of the file, the first piece may be a partial line.
        if start == 0 or len(complete) >= 2:
            break
        chunk *= 2
    if not complete:
        return 0, GENESIS, torn  # the only line is torn
    line = complete[-1]
    try:
        last = json.loads(line)
        seq, digest = int(last["seq"]), str(last["hash"])
    except (ValueError, KeyError, TypeError):
        raise AuditTrailError(
            f"the last record of {str(path)!r} is not an audit record ({line[:80]!r}); refusing "
            "to extend a chain that cannot be trusted. Run `callpyback-finance verify "
            f"{path}` and start a new file"
        ) from None
    return seq, digest, torn


# --- verification --------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of :func:`verify_file`: ``ok``, or the first problem and its line."""

    ok: bool
    records: int
    head: str
    line: Optional[int] = None
    problem: Optional[str] = None

    def __str__(self) -> str:
        if self.ok:
            return f"OK: {self.records} records, chain intact, head {self.head}"
        return f"BROKEN: {self.problem}"


def verify_file(
    path: Union[str, os.PathLike[str]],
    *,
    expected_head: Optional[str] = None,
    expected_count: Optional[int] = None,
) -> VerifyResult:
    """Walk the chain in ``path`` and report the first broken or missing record.

    A chain alone cannot show that records were cut off its end; pass the head hash or the
    record count you saw earlier (``expected_head`` / ``expected_count``) to check that too.
    """
    prev, expect_seq, count, lineno = GENESIS, 1, 0, 0

    def broken(message: str) -> VerifyResult:
        return VerifyResult(False, count, prev, lineno, f"line {lineno}: {message}")

    with open(path, "rb") as f:
        for raw in f:
            lineno += 1
            if not raw.endswith(b"\n"):
                return broken(
                    "incomplete record at the end of the file (a write was interrupted, or the "
                    "file was truncated)"
                )
            text = raw[:-1]
            if not text.strip():
                return broken("empty line where a record was expected")
            try:
                record = json.loads(text)
            except ValueError as exc:
                return broken(f"not a JSON record ({exc})")
            if not isinstance(record, dict) or not {"seq", "prev", "hash"} <= record.keys():
                return broken("not an audit record (it needs 'seq', 'prev' and 'hash')")
            seq = record["seq"]
            if record_hash(record) != record["hash"]:
                return broken(f"record seq {seq!r} does not match its hash: it was modified")
            if text != canonical(record).encode("ascii"):
                # Same values, other bytes (say 0.0 written as 0e0): still an edit of the file.
                return broken(
                    f"record seq {seq!r} is not in the canonical form it was written in: the "
                    "line was edited"
                )
            if seq != expect_seq:
                if isinstance(seq, int) and seq > expect_seq:
                    missing = (
                        f"record seq {expect_seq} is missing"
                        if seq == expect_seq + 1
                        else f"records seq {expect_seq} to {seq - 1} are missing"
                    )
                    return broken(f"{missing} (found seq {seq}): records were removed or reordered")
                return broken(
                    f"expected seq {expect_seq}, found {seq!r}: records were duplicated or "
                    "reordered"
                )
            if record["prev"] != prev:
                before = f"line {lineno - 1}" if lineno > 1 else "the start of the chain"
                return broken(
                    f"record seq {seq} does not chain to {before}: the record before it was "
                    "replaced, or records were removed or inserted"
                )
            prev, expect_seq, count = record["hash"], expect_seq + 1, count + 1
    if expected_count is not None and count < expected_count:
        lineno += 1
        return broken(
            f"expected at least {expected_count} records, found {count}: records were removed "
            "from the end"
        )
    if (
        expected_head is not None
        and expected_head != prev
        and not _head_in_file(path, expected_head)
    ):
        lineno += 1
        return broken(f"head {expected_head} is not in the file: records were removed from the end")
    return VerifyResult(True, count, prev)


def _head_in_file(path: Union[str, os.PathLike[str]], head: str) -> bool:
    # An earlier head must still be in the chain (the file may have grown since).
    needle = f'"hash":"{head}"'.encode("ascii")
    with open(path, "rb") as f:
        return any(needle in line for line in f)
