"""finance.audit: one hash-chained record per call, with outcome, amounts, parties and redaction;
durable, thread-safe and safe across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, List

import pytest
from callpyback_finance import GENESIS, AuditTrail, AuditTrailError, verify_file
from callpyback_finance.chain import canonical, record_hash

import callpyback as cpb
from callpyback import plugins


def read(path: Path) -> List[dict]:
    return [json.loads(line) for line in path.read_text(encoding="ascii").splitlines()]


@pytest.fixture
def audited(
    create: Callable[..., Any], clock: cpb.MockTimeSource, trail: Path
) -> Callable[..., Any]:
    """``audited(**audit_options)``: a decorator auditing with finance.audit on the mock clock."""

    def make(*, handlers: Any = (), **options: Any) -> Any:
        audit = create("observer", "finance.audit", path=str(trail), **options)
        return cpb.CallPyBack(observers=[audit], error_handlers=list(handlers), time_source=clock)

    return make


def test_records_form_a_hash_chain(audited: Callable[..., Any], trail: Path, clock: Any) -> None:
    """seq counts from 1, prev links to the previous hash, hash covers the canonical record."""

    @audited()
    def transfer(account: str, payee: str, amount: Decimal, currency: str = "EUR") -> str:
        return "ok"

    for i in range(3):
        transfer("ACC-1", "shop", Decimal("10.05") * (i + 1))
        clock.advance(1.5)
    records = read(trail)
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert records[0]["prev"] == GENESIS
    assert [r["prev"] for r in records[1:]] == [r["hash"] for r in records[:-1]]
    for line, record in zip(trail.read_text(encoding="ascii").splitlines(), records):
        assert record["hash"] == record_hash(record)
        assert line == canonical(record)  # stored canonically, so verify can recompute
    assert verify_file(trail).ok and verify_file(trail).records == 3


def test_who_from_an_argument(audited: Callable[..., Any], trail: Path) -> None:
    @audited(who_field="operator")
    def approve(operator: str, account: str, amount: int) -> None: ...

    approve("clerk-17", "ACC-1", 10)
    (record,) = read(trail)
    assert record["who"] == "clerk-17"


def test_new_trail_is_not_world_readable(create: Callable[..., Any], trail: Path) -> None:
    create("observer", "finance.audit", path=str(trail))
    assert trail.stat().st_mode & 0o777 == 0o640


def test_record_content(audited: Callable[..., Any], trail: Path, clock: Any) -> None:
    """Timestamp from the time source, target, outcome, exact amounts, currency and parties."""

    @audited()
    def transfer(
        from_account: str, to_account: str, amount: Decimal, currency: str = "EUR"
    ) -> None:
        clock.advance(0.25)

    clock.set_time(1_700_000_500.0)
    transfer("ACC-1", "ACC-2", Decimal("1234.5678"), currency="USD")
    (record,) = read(trail)
    assert record["epoch"] == 1_700_000_500.0
    assert record["timestamp"] == "2023-11-14T22:21:40+00:00"
    assert record["duration"] == 0.25
    assert record["what"].endswith(":test_record_content.<locals>.transfer")
    assert record["outcome"] == "success" and record["attempt"] == 1
    assert record["pid"] == os.getpid() and record["who"]
    assert record["amounts"] == {"amount": "1234.5678"}  # a Decimal keeps every digit
    assert record["currency"] == "USD"
    assert record["parties"] == {"from_account": "ACC-1", "to_account": "ACC-2"}
    assert record["exception"] is None and "arguments" not in record


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("mask", "************4242"), ("remove", "[REDACTED]")],
)
def test_redaction_modes(
    audited: Callable[..., Any], trail: Path, mode: str, expected: str
) -> None:
    @audited(redaction=mode, include_arguments=True, fields=["card_number"], redact=["memo"])
    def charge(account: str, amount: int, card_number: str, cvv: str, memo: str) -> None:
        raise ValueError(f"card {card_number} declined, other card 4111 1111 1111 1111 tried")

    with pytest.raises(ValueError, match="4242424242424242"):  # the caller still sees it
        charge("ACC-1", 20, "4242424242424242", "123", "birthday present")
    (record,) = read(trail)
    text = trail.read_text(encoding="ascii")
    assert "4242424242424242" not in text and '"123"' not in text and "birthday" not in text
    assert "4111 1111 1111 1111" not in text  # the core's Luhn-checked pattern, in free text
    assert record["fields"] == {"card_number": expected}
    assert record["arguments"]["card_number"] == expected
    assert record["arguments"]["cvv"] == "[REDACTED]"  # too short to show any of it
    assert record["arguments"]["memo"] == ("************sent" if mode == "mask" else "[REDACTED]")
    assert record["arguments"]["account"] == "ACC-1"
    assert record["exception"] == {
        "type": "builtins.ValueError",
        "message": f"card {expected} declined, other card [REDACTED] tried",
    }
    assert record["outcome"] == "failure"


def test_hash_redaction_is_keyed_and_correlatable(audited: Callable[..., Any], trail: Path) -> None:
    """Equal values give equal digests under one key; another key gives another digest."""

    @audited(redaction="hash", redaction_key="k1", fields=["iban"])
    def pay(account: str, amount: int, iban: str) -> None: ...

    pay("A", 1, "DE89370400440532013000")
    pay("B", 2, "DE89370400440532013000")
    first, second = read(trail)
    assert first["fields"]["iban"] == second["fields"]["iban"]
    assert first["fields"]["iban"].startswith("sha256:")
    other = plugins.get_registry().create(
        "observer",
        "finance.audit",
        {"path": str(trail.with_name("b.jsonl")), "redaction": "hash", "redaction_key": "k2"},
    )
    assert other.finance_redactor.value("DE89370400440532013000") != first["fields"]["iban"]


def test_nested_mappings_in_fields_are_recorded_redacted(
    audited: Callable[..., Any], trail: Path
) -> None:
    """A field holding a mapping (a database statement, a request) is walked like the rest."""

    @audited(fields=["statement"])
    def write(statement: dict) -> None: ...

    write({"text": "UPDATE orders SET status = ?", "rows": 1, "token": "s3cr3t-value"})
    (record,) = read(trail)
    assert record["fields"]["statement"] == {
        "text": "UPDATE orders SET status = ?",
        "rows": 1,
        "token": "[REDACTED]",
    }


def test_outcomes(audited: Callable[..., Any], create: Callable[..., Any], trail: Path) -> None:
    """success, failure, recovered (with who recovered), blocked, cancelled and interrupted."""
    limits = create("error_handler", "finance.limits", max_amount=100)
    audit = audited(handlers=[limits, cpb.DefaultErrorHandler("fallback", (KeyError,))])

    @audit
    def pay(account: str, amount: int) -> str:
        if amount == 1:
            raise KeyError("no route")
        if amount == 2:
            raise ValueError("bad")
        if amount == 3:
            raise KeyboardInterrupt
        return "ok"

    @audit
    def statement(account: str, amount: int = 0) -> Any:
        yield 1
        yield 2

    pay("A", 50)
    assert pay("A", 1) == "fallback"
    with pytest.raises(ValueError):
        pay("A", 2)
    with pytest.raises(Exception, match="over the limit") as blocked:
        pay("A", 500)
    assert type(blocked.value).__name__ == "LimitExceededError"
    with pytest.raises(KeyboardInterrupt):
        pay("A", 3)
    gen = statement("A")
    next(gen)
    gen.close()
    records = read(trail)
    assert [r["outcome"] for r in records] == [
        "success",
        "recovered",
        "failure",
        "blocked",
        "interrupted",
        "cancelled",
    ]
    assert records[1]["recovered_by"] == "default"
    assert records[3]["exception"]["type"] == "callpyback_finance.rules.LimitExceededError"
    assert records[4]["exception"]["type"] == "builtins.KeyboardInterrupt"
    assert verify_file(trail).ok


def test_threads_never_interleave_or_skip(audited: Callable[..., Any], trail: Path) -> None:
    """16 threads x 40 calls: 640 records, contiguous sequence, intact chain."""

    @audited(durability="flush")
    def pay(account: str, amount: int) -> None: ...

    barrier = threading.Barrier(16)

    def worker(n: int) -> None:
        barrier.wait()
        for i in range(40):
            pay(f"ACC-{n}", i)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = verify_file(trail)
    assert result.ok, result.problem
    assert result.records == 640
    counts: dict = {}
    for r in read(trail):
        counts[r["parties"]["account"]] = counts.get(r["parties"]["account"], 0) + 1
    assert counts == {f"ACC-{n}": 40 for n in range(16)}


WRITER = """
import sys, callpyback as cpb
from callpyback import plugins
audit = plugins.get_registry().create("observer", "finance.audit", {"path": sys.argv[1]})
@cpb.CallPyBack(observers=[audit])
def pay(account, amount):
    return amount
for i in range(int(sys.argv[3])):
    pay(sys.argv[2], i)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fcntl locking is POSIX-only (documented)")
def test_processes_share_one_trail(trail: Path, tmp_path: Path) -> None:
    """Four processes appending at once produce one intact chain (flock + tail read under lock)."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER, encoding="utf-8")
    procs = [
        subprocess.Popen([sys.executable, str(script), str(trail), f"P{n}", "60"]) for n in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    result = verify_file(trail)
    assert result.ok, result.problem
    assert result.records == 240


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_reopens_and_continues_the_chain(trail: Path) -> None:
    """A child process must not share the parent's file lock: it reopens the trail."""
    writer = AuditTrail(trail, durability="flush")
    writer.append({"who": "parent"})
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            writer.append({"who": "child"})
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    writer.append({"who": "parent again"})
    assert [r["who"] for r in read(trail)] == ["parent", "child", "parent again"]
    assert verify_file(trail).ok


def test_two_writers_in_one_process_share_the_chain(trail: Path) -> None:
    """Separate trail objects on one file (two pipelines) read the tail under the lock."""
    a, b = AuditTrail(trail), AuditTrail(trail)
    for i in range(5):
        (a if i % 2 else b).append({"i": i})
    assert [r["seq"] for r in read(trail)] == [1, 2, 3, 4, 5]
    assert verify_file(trail).ok


def test_fsync_policy(trail: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """'fsync' syncs every record before returning; 'flush' never calls fsync."""
    synced: list = []
    real = os.fsync

    def counting(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    durable = AuditTrail(trail)
    durable.append({"n": 1})
    durable.append({"n": 2})
    assert len(synced) == 2
    fast = AuditTrail(trail, durability="flush")
    fast.append({"n": 3})
    assert len(synced) == 2
    with pytest.raises(ValueError, match="durability must be one of"):
        AuditTrail(trail, durability="eventually")


def test_a_torn_last_line_is_terminated_and_skipped(trail: Path) -> None:
    """After a crash mid-write the chain goes on from the last complete record; verify skips it."""
    writer = AuditTrail(trail)
    writer.append({"n": 1})
    with open(trail, "ab") as f:
        f.write(b'{"n":2,"seq":2,"pr')  # a writer died here
    AuditTrail(trail).append({"n": 3})
    lines = trail.read_bytes().split(b"\n")
    assert lines[1] == b'{"n":2,"seq":2,"pr'
    third = json.loads(lines[2])
    assert third["seq"] == 2 and third["prev"] == read_first_hash(trail)
    result = verify_file(trail)
    assert result.ok and result.records == 2 and result.skipped == (2,), result.problems


def read_first_hash(path: Path) -> str:
    return str(json.loads(path.read_bytes().split(b"\n")[0])["hash"])


def test_refuses_to_extend_a_trail_it_cannot_trust(trail: Path) -> None:
    trail.parent.mkdir(parents=True)
    trail.write_text("this is not an audit record\n", encoding="ascii")
    with pytest.raises(AuditTrailError, match="refusing to extend"):
        AuditTrail(trail).append({"n": 1})


def test_long_records_and_tail_reading(trail: Path) -> None:
    """Records longer than the tail-read chunk still chain correctly (incl. after reopening)."""
    for i in range(3):
        AuditTrail(trail).append({"memo": "x" * (6000 * (i + 1))})
    assert [r["seq"] for r in read(trail)] == [1, 2, 3]
    assert verify_file(trail).ok


def test_a_failing_trail_never_breaks_the_call(
    create: Callable[..., Any], trail: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """If the trail cannot be written, the payment still returns; the error is logged once."""
    audit = create("observer", "finance.audit", path=str(trail))
    trail.unlink()
    trail.mkdir()  # a directory where the file should be

    @cpb.CallPyBack(observers=[audit])
    def pay(account: str, amount: int) -> str:
        return "paid"

    assert pay("A", 1) == "paid" and pay("A", 2) == "paid"
    assert audit.write_errors == 2 and audit.records_written == 0
    logged = [r for r in caplog.records if "finance.audit could not append" in r.getMessage()]
    assert len(logged) == 1


def test_an_unusable_path_is_a_configuration_error(
    create: Callable[..., Any], tmp_path: Path
) -> None:
    """The core observer checks the path when the component is built, not at the first call."""
    (tmp_path / "taken").write_text("a file, not a directory", encoding="ascii")
    with pytest.raises(cpb.ConfigurationError, match="cannot create the directory"):
        create("observer", "finance.audit", path=str(tmp_path / "taken" / "trail.jsonl"))


def test_rotation_is_refused(create: Callable[..., Any], trail: Path) -> None:
    audit = create("observer", "finance.audit", path=str(trail))
    with pytest.raises(NotImplementedError, match="new chain"):
        audit.rotate()
