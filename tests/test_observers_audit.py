"""AuditObserver and Redactor: durable JSON lines, rotation, redaction, and I/O faults."""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import pytest

import callpyback as cpb
from callpyback import AuditObserver, ConfigurationError, Redactor


def read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- Redactor ---------------------------------------------------------------------------------


def test_redactor_masks_keys_and_patterns_in_nested_data_without_mutating():
    """Key names and value patterns are masked at any depth; the input is left as it was."""
    data = {
        "user": "ann",
        "Password": "hunter2",
        "profile": {"db_password": "x", "api-key": "k", "tags": ["a", ("Bearer abc.def", 3)]},
        "note": "card 4111-1111-1111-1111 and order 1234567890123",
    }
    snapshot = json.dumps(data, sort_keys=True)
    out = Redactor().redact(data)
    assert out == {
        "user": "ann",
        "Password": "[REDACTED]",
        "profile": {
            "db_password": "[REDACTED]",
            "api-key": "[REDACTED]",
            "tags": ["a", ("[REDACTED]", 3)],
        },
        "note": "card [REDACTED] and order 1234567890123",  # not a valid card number: kept
    }
    assert json.dumps(data, sort_keys=True) == snapshot


def test_redactor_dataclasses_objects_cycles_and_depth():
    """Dataclasses become dicts, other objects their redacted repr; cycles and depth are cut."""

    @dataclasses.dataclass
    class Card:
        holder: str
        card_number: str

    class Token:
        def __repr__(self):
            return "Token(eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl)"

    cyclic = []
    cyclic.append(cyclic)
    r = Redactor(max_depth=3)
    assert r.redact(Card("Ann", "4111111111111111")) == {
        "holder": "Ann",
        "card_number": "[REDACTED]",
    }
    assert r.redact(Token()) == "Token([REDACTED])"
    assert r.redact(cyclic) == ["[cycle]"]
    assert r.redact({"a": {"b": {"c": {"d": 1}}}}) == {"a": {"b": {"c": "[...]"}}}


def test_redactor_options():
    """extend=False replaces the defaults; custom patterns and masks apply."""
    r = Redactor(keys=["iban_code"], patterns=[r"ACC-\d+"], extend=False, mask="#")
    assert r.redact({"password": "p", "IBAN-code": "DE1", "memo": "pay ACC-991 now"}) == {
        "password": "p",
        "IBAN-code": "#",
        "memo": "pay # now",
    }
    assert not Redactor().is_sensitive_key("author")  # short keys match exactly only
    assert Redactor().is_sensitive_key("AUTH")
    with pytest.raises(ConfigurationError, match="regular expression"):
        Redactor(patterns=["("])
    with pytest.raises(ConfigurationError, match="keys"):
        Redactor(keys=[""])
    with pytest.raises(ConfigurationError, match="max_depth"):
        Redactor(max_depth=0)


# --- AuditObserver ----------------------------------------------------------------------------


def test_audit_trail_is_written_and_reread(tmp_path, clock):
    """Each call appends one JSON line with who, what, when and outcome, redacted."""
    path = tmp_path / "audit" / "calls.jsonl"
    audit = AuditObserver(path, who=lambda context: context.arguments["user"])

    @cpb.CallPyBack(observers=[audit], time_source=clock)
    def transfer(user, amount, card_number, password=None):
        clock.advance(0.5)
        if amount > 100:
            raise PermissionError(f"limit exceeded for card {card_number}")
        return "done"

    transfer("ann", 10, "4111111111111111", password="pw")
    with pytest.raises(PermissionError):
        transfer("bob", 500, "4111 1111 1111 1111")
    audit.close()
    first, second = read(path)
    target = f"{__name__}:{transfer.__qualname__}"
    assert first["who"] == "ann" and first["what"] == target and first["outcome"] == "success"
    assert first["epoch"] == 1_000_000.0 and first["timestamp"] == "1970-01-12T13:46:40+00:00"
    assert first["duration"] == 0.5 and first["attempt"] == 1 and first["exception"] is None
    assert first["arguments"] == {
        "user": "ann",
        "amount": 10,
        "card_number": "[REDACTED]",
        "password": "[REDACTED]",
    }
    assert first["pid"] == os.getpid() and "result" not in first
    assert second["who"] == "bob" and second["outcome"] == "failure"
    assert second["exception"] == {
        "type": "PermissionError",
        "message": "limit exceeded for card [REDACTED]",
    }
    assert "4111" not in path.read_text()


def test_outcomes_and_results(tmp_path):
    """Recovered and interrupted calls are recorded as such; results only when asked."""
    path = tmp_path / "a.jsonl"
    audit = AuditObserver(path, include_result=True, include_arguments=False)

    @cpb.CallPyBack(observers=[audit], default_return={"token": "t0k"})
    def f(mode):
        if mode == "fail":
            raise ValueError("bad")
        if mode == "stop":
            raise KeyboardInterrupt
        return {"value": 1, "secret": "s"}

    f("ok")
    f("fail")
    with pytest.raises(KeyboardInterrupt):
        f("stop")
    audit.close()
    ok, recovered, stopped = read(path)
    assert ok["result"] == {"value": 1, "secret": "[REDACTED]"} and "arguments" not in ok
    assert recovered["outcome"] == "recovered" and recovered["result"] == {"token": "[REDACTED]"}
    assert recovered["recovered_by"]
    assert (
        stopped["outcome"] == "interrupted" and stopped["exception"]["type"] == "KeyboardInterrupt"
    )


def test_appends_to_an_existing_file_with_fsync(tmp_path):
    """A second observer on the same file appends; fsync=True still writes every line."""
    path = tmp_path / "a.jsonl"
    for _ in range(2):
        audit = AuditObserver(path, fsync=True)
        cpb.CallPyBack(observers=[audit])(lambda: 1)()
        audit.close()
    assert len(read(path)) == 2


def test_rotation_keeps_backups(tmp_path):
    """Past max_bytes the file moves to .1, .2 ... and the oldest beyond backup_count goes."""
    path = tmp_path / "r.jsonl"
    audit = AuditObserver(path, max_bytes=400, backup_count=2, include_arguments=False)

    @cpb.CallPyBack(observers=[audit])
    def f(i):
        return i

    for i in range(20):
        f(i)
    audit.close()
    assert audit.rotations >= 2
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["r.jsonl", "r.jsonl.1", "r.jsonl.2"]
    for p in tmp_path.iterdir():
        assert p.stat().st_size <= 400
        assert all(rec["outcome"] == "success" for rec in read(p))
    assert audit.records_written == 20


def test_unopenable_file_is_reported_at_construction(tmp_path):
    """A path that cannot be opened is a ConfigurationError naming the path and the OS error."""
    directory = tmp_path / "is_a_dir"
    directory.mkdir()
    with pytest.raises(ConfigurationError, match=r"cannot open .*is_a_dir"):
        AuditObserver(directory)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigurationError, match="cannot create the directory"):
        AuditObserver(blocker / "sub" / "audit.jsonl")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_is_reported_once_and_the_call_goes_on(caplog):
    """Writing to a full disk is logged once, counted, and never reaches the caller."""
    audit = AuditObserver("/dev/full", create_dirs=False)

    @cpb.CallPyBack(observers=[audit])
    def f():
        return "still works"

    with caplog.at_level(logging.ERROR, logger="callpyback.audit"):
        assert [f() for _ in range(3)] == ["still works"] * 3
    assert audit.write_errors == 3 and audit.records_written == 0
    assert len(caplog.records) == 1 and "/dev/full" in caplog.records[0].getMessage()
    audit.close()  # the final flush fails too: counted, not raised
    assert audit.write_errors == 4


def test_writes_after_close_are_counted(tmp_path):
    """A closed trail counts writes as errors rather than raising into the call."""
    audit = AuditObserver(tmp_path / "c.jsonl")
    audit.close()
    cpb.CallPyBack(observers=[audit])(lambda: 1)()
    assert audit.write_errors == 1


def test_subclassing_seam(tmp_path):
    """build_record and write_record can be extended, e.g. to chain records by sequence."""

    class Sequenced(AuditObserver):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.seq = 0

        def build_record(self, context):
            record = super().build_record(context)
            record["tenant"] = "acme"
            return record

        def write_record(self, record):
            with self.lock:  # re-entrant: super() takes it again
                self.seq += 1
                record["seq"] = self.seq
                super().write_record(record)

    path = tmp_path / "s.jsonl"
    with Sequenced(path) as audit:
        g = cpb.CallPyBack(observers=[audit])(lambda: 1)
        g()
        g()
    assert [(r["seq"], r["tenant"]) for r in read(path)] == [(1, "acme"), (2, "acme")]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"path": ""}, "path"),
        ({"path": 3}, "path"),
        ({"who": "me"}, "who"),
        ({"max_bytes": 0}, "max_bytes"),
        ({"backup_count": 0}, "backup_count"),
        ({"redactor": {}}, "redactor"),
    ],
)
def test_bad_options(tmp_path, kwargs, match):
    """Options are validated at construction."""
    kwargs.setdefault("path", tmp_path / "x.jsonl")
    with pytest.raises(ConfigurationError, match=match):
        AuditObserver(**kwargs)


def test_non_json_arguments_are_serialised_by_redacted_repr(tmp_path):
    """Objects json cannot encode are written as their (redacted) repr."""

    class Secretive:
        def __repr__(self):
            return "Secretive(Bearer xyz)"

    path = tmp_path / "o.jsonl"
    with AuditObserver(path) as audit:
        cpb.CallPyBack(observers=[audit])(lambda obj: None)(Secretive())
    (rec,) = read(path)
    assert rec["arguments"] == {"obj": "Secretive([REDACTED])"}
