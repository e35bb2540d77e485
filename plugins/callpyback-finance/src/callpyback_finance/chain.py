"""The hash-chained, append-only JSON-lines file: writing (thread- and process-safe) and verifying.

Each line is one record, serialised canonically (sorted keys, no spaces, ASCII).  A record carries
``seq`` (1, 2, 3, ...), ``prev`` (the previous record's hash; 64 zeros for the first) and ``hash``:
the SHA-256 of the canonical serialisation of the record without its ``hash`` key.  Changing,
removing, inserting or reordering any record breaks the chain at that point, which
:func:`verify_file` reports by line number, going on to report every other problem too.

Concurrency: the file is the core's ``AppendOnlyFile``: a thread lock and ``fcntl.flock``
serialise writers, and the sequence number and previous hash are read from the file itself under
that lock, so several processes can append to one trail.  On platforms without ``fcntl``
(Windows) only the thread lock applies: give each process its own file there.

Failed writes: a write that fails or is short is cut back to the last whole record.  If even that
fails (or the writer was killed mid-write), the partial record is a *fragment*: the next writer
continues the chain from the last whole record, and :func:`verify_file` skips a fragment that the
chain continues across (it reports it, but the chain is intact).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from callpyback.errors import CallPyBackError
from callpyback.observers.audit import AppendOnlyFile

__all__ = [
    "GENESIS",
    "AuditTrail",
    "AuditTrailError",
    "VerifyResult",
    "canonical",
    "is_fragment",
    "jsonable",
    "record_hash",
    "verify_file",
]

#: ``prev`` of the first record of a trail.
GENESIS = "0" * 64

DURABILITY = ("fsync", "flush")


class AuditTrailError(CallPyBackError):
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


class AuditTrail:
    """Appends hash-chained records to ``path``.

    ``durability="fsync"`` (the default) makes each record reach the disk before :meth:`append`
    returns; ``"flush"`` hands it to the operating system only (it survives the process
    crashing, not the machine losing power), which is much faster.

    The file is the core's :class:`~callpyback.observers.audit.AppendOnlyFile`: opened without
    following a symbolic link, locked across threads and processes, cut back to its last whole
    record if a write fails or is short, reopened after ``fork()`` and when the file at ``path``
    was moved or removed.  A new file gets mode ``0o640``.
    """

    def __init__(self, path: Union[str, os.PathLike[str]], *, durability: str = "fsync") -> None:
        if durability not in DURABILITY:
            raise ValueError(f"durability must be one of {DURABILITY}, got {durability!r}")
        self.path = Path(path)
        self.durability = durability
        self._file = AppendOnlyFile(self.path, mode=0o640, fsync=durability == "fsync")
        # (file size after our last append, its seq, its hash): skips re-reading the tail when
        # no other process appended in between.  Only read or set under the file's lock.
        self._last: Optional[Tuple[int, int, str]] = None
        self._opened = False

    def open(self) -> None:
        """Create the directory and open (creating) the file: a bad path shows here."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file.open()
        self._opened = True

    def append(self, body: Mapping[str, Any]) -> Dict[str, Any]:
        """Add ``body`` (plus ``seq``, ``prev`` and ``hash``) as the next record; returns it.

        If the write fails, nothing of the record stays in the file and the error is raised.
        """
        record: Dict[str, Any] = jsonable(dict(body))
        for key in ("seq", "prev", "hash"):
            record.pop(key, None)
        if not self._opened:
            self.open()
        with self._file.locked() as file:
            size = file.size()
            last = self._last
            if last is not None and last[0] == size:
                seq, prev = last[1], last[2]
            else:
                seq, prev = _read_tail(file.read, size, self.path)
            record["seq"] = seq + 1
            record["prev"] = prev
            record["hash"] = record_hash(record)
            self._last = None
            end = file.append((canonical(record) + "\n").encode("ascii"))
            self._last = (end, seq + 1, record["hash"])
        return record

    def close(self) -> None:
        """Close the file; a later :meth:`append` opens it again."""
        self._file.close()
        self._last = None
        self._opened = False

    def __repr__(self) -> str:
        return f"AuditTrail({str(self.path)!r}, durability={self.durability!r})"


def is_fragment(line: bytes) -> bool:
    """True if ``line`` is the start of a record cut short by a failed write.

    Canonical records are ASCII JSON objects whose first key is quoted: a fragment starts like
    one and does not parse.  Whether it is *only* a torn write is for the chain to say: the
    record after it must continue the chain from the record before it.
    """
    if not (line.startswith(b'{"') or line == b"{") or not line.isascii():
        return False
    try:
        json.loads(line)
    except ValueError:
        return True
    return False


def _read_tail(read: Callable[[int, int], bytes], size: int, path: Path) -> Tuple[int, str]:
    """(seq, hash) of the last record in the file; (0, GENESIS) if it has none.

    Fragments of records (failed writes the writer could not remove) are skipped; any other line
    that is not a record stops the writer.
    """
    chunk = 4096
    start = size
    while start > 0:
        start = max(0, start - chunk)
        lines = read(size - start, start).split(b"\n")
        if start > 0:
            lines = lines[1:]  # the first piece may be the end of a longer line
        for line in reversed(lines):
            if not line or is_fragment(line):
                continue
            try:
                last = json.loads(line)
                return int(last["seq"]), str(last["hash"])
            except (ValueError, KeyError, TypeError):
                raise AuditTrailError(
                    f"the last record of {str(path)!r} is not an audit record ({line[:80]!r}); "
                    "refusing to extend a chain that cannot be trusted. Run `callpyback-finance "
                    f"verify {path}` and start a new file"
                ) from None
        chunk *= 2
    return 0, GENESIS


# --- verification --------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of :func:`verify_file`.

    ``ok``: no problem found.  ``records``: the records in the file.  ``head``: the hash of the
    last one.  ``problems``: every problem, ``"line N: ..."``, in file order; ``line`` and
    ``problem`` are the first of them.  ``skipped``: lines holding a fragment of a record from
    a failed write, which the chain continues across (not a problem: nothing in the chain is
    missing, and the writer counted the failed write).
    """

    ok: bool
    records: int
    head: str
    line: Optional[int] = None
    problem: Optional[str] = None
    problems: Tuple[str, ...] = ()
    skipped: Tuple[int, ...] = ()

    def __str__(self) -> str:
        if self.ok:
            text = f"OK: {self.records} records, chain intact, head {self.head}"
            if self.skipped:
                count = len(self.skipped)
                where = ", ".join(map(str, self.skipped))
                text += (
                    f"; skipped {count} partial record{'s' if count != 1 else ''} left by a "
                    f"failed or interrupted write (line{'s' if count != 1 else ''} {where})"
                )
            return text
        more = len(self.problems) - 1
        tail = f" (and {more} more problem{'s' if more != 1 else ''})" if more > 0 else ""
        return f"BROKEN: {self.problem}{tail}"


def verify_file(
    path: Union[str, os.PathLike[str]],
    *,
    expected_head: Optional[str] = None,
    expected_count: Optional[int] = None,
) -> VerifyResult:
    """Walk the chain in ``path`` and report every broken or missing record.

    After a problem, checking resumes from the record where it was found, so later edits are
    reported too.  A chain alone cannot show that records were cut off its end; pass the head
    hash or the record count you saw earlier (``expected_head`` / ``expected_count``) to check
    that too.
    """
    problems: List[Tuple[int, str]] = []
    skipped: List[int] = []
    # What the next record must carry (``expect`` is None after a seq that is not a number).
    prev = GENESIS
    expect: Optional[int] = 1
    head, count, lineno, last_line = GENESIS, 0, 0, 0
    fragments: List[int] = []  # fragments waiting for the next record to vouch for them
    damaged = 0  # unreadable lines since the last record
    complete = True

    with open(path, "rb") as f:
        for raw in f:
            lineno += 1
            complete = raw.endswith(b"\n")
            text = raw[:-1] if complete else raw
            record, why = _parse(text)
            if record is None:
                if is_fragment(text):
                    fragments.append(lineno)
                    continue
                if not complete:
                    why = "incomplete last line, and not the start of a record"
                problems.append((lineno, why))
                damaged += 1
                continue
            seq = record["seq"]
            follows = seq == expect and record["prev"] == prev
            if fragments:
                if follows and not damaged:
                    skipped.extend(fragments)  # torn writes: the chain goes on across them
                else:
                    problems.extend((n, "not a JSON record (a damaged record)") for n in fragments)
                    damaged += len(fragments)
                fragments = []
            if record_hash(record) != record["hash"]:
                problems.append(
                    (lineno, f"record seq {seq!r} does not match its hash: it was modified")
                )
            elif text != canonical(record).encode("ascii"):
                # Same values, other bytes (say 0.0 written as 0e0): still an edit of the file.
                problems.append(
                    (
                        lineno,
                        f"record seq {seq!r} is not in the canonical form it was written in: "
                        "the line was edited",
                    )
                )
            elif not follows:
                message = _link_problem(record, expect, last_line, damaged)
                if message is not None:
                    problems.append((lineno, message))
            # Go on from this record as it stands, so that one problem is reported once.
            prev = record["hash"]
            expect = seq + 1 if isinstance(seq, int) and not isinstance(seq, bool) else None
            head, count, damaged, last_line = record["hash"], count + 1, 0, lineno
    if fragments:
        if fragments[-1] == lineno and not complete:  # a torn tail: a write in progress?
            skipped.extend(fragments)
        else:  # whole lines after the last record: no record vouches for them
            problems.extend((n, "not a JSON record (a damaged record)") for n in fragments)
    if expected_count is not None and count < expected_count:
        problems.append(
            (
                lineno + 1,
                f"expected at least {expected_count} records, found {count}: records were "
                "removed from the end",
            )
        )
    if (
        expected_head is not None
        and expected_head != head
        and not _head_in_file(path, expected_head)
    ):
        problems.append(
            (
                lineno + 1,
                f"head {expected_head} is not in the file: records were removed from the end",
            )
        )
    if not problems:
        return VerifyResult(True, count, head, skipped=tuple(skipped))
    problems.sort(key=lambda p: p[0])
    texts = tuple(f"line {n}: {message}" for n, message in problems)
    return VerifyResult(False, count, head, problems[0][0], texts[0], texts, tuple(skipped))


def _parse(text: bytes) -> Tuple[Optional[Dict[str, Any]], str]:
    """(record, "") or (None, why it is not one)."""
    if not text.strip():
        return None, "empty line where a record was expected"
    try:
        record = json.loads(text)
    except ValueError as exc:
        return None, f"not a JSON record ({exc})"
    if not isinstance(record, dict) or not {"seq", "prev", "hash"} <= record.keys():
        return None, "not an audit record (it needs 'seq', 'prev' and 'hash')"
    return record, ""


def _link_problem(
    record: Dict[str, Any], expect: Optional[int], last_line: int, damaged: int
) -> Optional[str]:
    """Why ``record`` does not follow the one before it; None if the damage above explains it."""
    seq = record["seq"]
    if expect is not None and seq != expect:
        if isinstance(seq, int) and seq > expect:
            if damaged and seq <= expect + damaged:
                return None  # the unreadable lines above were these records
            first = expect + damaged
            missing = (
                f"record seq {first} is missing"
                if seq == first + 1
                else f"records seq {first} to {seq - 1} are missing"
            )
            return f"{missing} (found seq {seq}): records were removed or reordered"
        return f"expected seq {expect}, found {seq!r}: records were duplicated or reordered"
    before = f"line {last_line}" if last_line else "the start of the chain"
    return (
        f"record seq {seq} does not chain to {before}: the record before it was replaced, or "
        "records were removed or inserted"
    )


def _head_in_file(path: Union[str, os.PathLike[str]], head: str) -> bool:
    # An earlier head must still be in the chain (the file may have grown since).
    needle = f'"hash":"{head}"'.encode("ascii")
    with open(path, "rb") as f:
        return any(needle in line for line in f)
