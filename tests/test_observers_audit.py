"""AuditObserver and Redactor: durable JSON lines, rotation, redaction, and I/O faults."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading

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
    audit.close()  # nothing is buffered (one write per record): closing has nothing to fail
    assert audit.write_errors == 3


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


# --- faults: fork, short writes, several processes, links, background, tracing -----------------


def run_script(tmp_path, source, *args, timeout=120):
    """Run ``source`` in a fresh interpreter; its last stdout line is JSON."""
    script = tmp_path / f"script_{abs(hash(source))}.py"
    script.write_text(textwrap.dedent(source), encoding="utf-8")
    # Forking a threaded process warns on 3.12+; that is exactly what these scripts test.
    out = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1]), out.stderr


FORK_WHILE_WRITING = """
import json, os, sys, threading, time
import callpyback as cpb
from callpyback import AuditObserver

audit = AuditObserver(sys.argv[1], fsync=True, include_arguments=True)

@cpb.CallPyBack(observers=[audit], max_observer_failures=None)
def pay(who, n):
    return n

stop = threading.Event()
started = threading.Barrier(5)

def writer(n):
    started.wait()
    while not stop.is_set():
        pay(f"thread-{n}", 0)

threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
for t in threads:
    t.start()
started.wait()
children = []
for i in range(8):
    time.sleep(0.02)  # let the writers take the lock again
    pid = os.fork()
    if pid == 0:
        pay("child", i)
        os._exit(0 if audit.write_errors == 0 else 3)
    children.append(pid)
deadline = time.monotonic() + 30  # a child that is not done by then is deadlocked
status = {}
for pid in children:
    while pid not in status:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            status[pid] = os.waitstatus_to_exitcode(code)
        elif time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            status[pid] = "hung"
        else:
            time.sleep(0.01)
stop.set()
for t in threads:
    t.join()
audit.close()
print(json.dumps(sorted(status.values(), key=str)))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_threads_write_never_deadlocks_the_child(tmp_path):
    """8 children forked while 4 threads write (fsync) each write their record and exit."""
    path = tmp_path / "fork.jsonl"
    status, _ = run_script(tmp_path, FORK_WHILE_WRITING, path)
    assert status == [0] * 8
    records = read(path)
    children = sorted(r["arguments"]["n"] for r in records if r["arguments"]["who"] == "child")
    assert children == list(range(8))


SHORT_WRITE = """
import json, logging, os, resource, signal, sys
import callpyback as cpb
from callpyback import AuditObserver

logging.basicConfig(level=logging.WARNING)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
path = sys.argv[1]
audit = AuditObserver(path)

@cpb.CallPyBack(observers=[audit], max_observer_failures=None)
def pay(n, memo):
    return n

pay(1, "x" * 200)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) + 50, hard))
results = [pay(2, "x" * 200), pay(3, "x" * 200)]  # each fits only in part: short writes
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # the space is back
results.append(pay(4, "x" * 200))
audit.close()
print(json.dumps({"results": results, "errors": audit.write_errors,
                  "written": audit.records_written}))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE (POSIX)")
def test_a_short_write_leaves_no_partial_record(tmp_path):
    """A write cut short by the file size limit is undone: every line stays a whole record."""
    path = tmp_path / "short.jsonl"
    out, stderr = run_script(tmp_path, SHORT_WRITE, path)
    assert out == {"results": [2, 3, 4], "errors": 2, "written": 2}
    assert [r["arguments"]["n"] for r in read(path)] == [1, 4]
    assert path.read_bytes().endswith(b"\n")
    assert stderr.count("could not write") == 1  # one outage, reported once...
    assert "2 records were not written" in stderr  # ...and how many it lost, when it ended


ROTATING_WRITER = """
import json, sys, threading
import callpyback as cpb
from callpyback import AuditObserver

path, me = sys.argv[1], sys.argv[2]
audit = AuditObserver(path, max_bytes=8000, backup_count=10_000)

@cpb.CallPyBack(observers=[audit], max_observer_failures=None)
def pay(who, n):
    return n

def writer(t):
    for n in range(500):
        pay(f"{me}-{t}", n)

threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
audit.close()
print(json.dumps({"errors": audit.write_errors, "written": audit.records_written}))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="cross-process locking is POSIX-only")
def test_processes_rotating_one_trail_lose_nothing(tmp_path):
    """4 processes x 4 threads x 500 calls, rotating every 8 kB: all 8,000 records are kept."""
    path = tmp_path / "shared.jsonl"
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(ROTATING_WRITER), encoding="utf-8")
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(path), f"P{p}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(4)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outs]
    assert [json.loads(out) for out, _ in outs] == [{"errors": 0, "written": 2000}] * 4
    files = sorted(tmp_path.glob("shared.jsonl*"))
    assert len(files) > 10  # it really rotated, many times
    seen = [(r["arguments"]["who"], r["arguments"]["n"]) for f in files for r in read(f)]
    expected = {(f"P{p}-{t}", n) for p in range(4) for t in range(4) for n in range(500)}
    assert len(seen) == 8000 and set(seen) == expected
    assert all(f.stat().st_size <= 8000 for f in files)


def test_a_symlinked_path_is_refused(tmp_path):
    """The trail is never opened through a symbolic link, dangling or not."""
    real = tmp_path / "real.jsonl"
    real.write_text("")
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    with pytest.raises(ConfigurationError, match="symbolic link"):
        AuditObserver(link)
    dangling = tmp_path / "dangling.jsonl"
    dangling.symlink_to(tmp_path / "elsewhere.jsonl")
    with pytest.raises(ConfigurationError, match="symbolic link"):
        AuditObserver(dangling)
    assert not (tmp_path / "elsewhere.jsonl").exists()
    assert real.read_text() == ""


def test_a_trail_replaced_by_a_symlink_is_not_followed(tmp_path, caplog):
    """If the file is swapped for a link while in use, writes fail (counted), the target is safe."""
    path = tmp_path / "a.jsonl"
    target = tmp_path / "target"
    target.write_text("untouched")
    audit = AuditObserver(path)
    f = cpb.CallPyBack(observers=[audit], max_observer_failures=None)(lambda: 1)
    f()
    path.rename(tmp_path / "a.jsonl.moved")
    path.symlink_to(target)
    with caplog.at_level(logging.ERROR, logger="callpyback.audit"):
        assert f() == 1
    assert audit.write_errors == 1 and "symbolic link" in caplog.text
    assert target.read_text() == "untouched"
    audit.close()


def test_a_removed_trail_is_recreated_not_written_into_the_void(tmp_path):
    """A file deleted (or moved away) while in use is reopened at its path: no record is lost."""
    path = tmp_path / "a.jsonl"
    audit = AuditObserver(path)
    f = cpb.CallPyBack(observers=[audit])(lambda n: n)
    f(1)
    path.rename(tmp_path / "archived.jsonl")
    f(2)
    path.unlink()
    f(3)
    audit.close()
    assert [r["arguments"]["n"] for r in read(tmp_path / "archived.jsonl")] == [1]
    assert [r["arguments"]["n"] for r in read(path)] == [3]
    assert audit.write_errors == 0 and audit.records_written == 3


def test_background_records_describe_the_call_as_it_was(tmp_path):
    """background=True builds the record on the caller's thread; later mutation is not seen."""
    path = tmp_path / "bg.jsonl"
    audit = AuditObserver(path, background=True)
    gate = threading.Event()
    # Holds the background worker until the argument has been mutated.
    blocker = cpb.on_completion(lambda: gate.wait(10), background=True)

    @cpb.CallPyBack(observers=[blocker, audit])
    def order(basket):
        return len(basket["items"])

    basket = {"items": ["apple"]}
    assert order(basket) == 1
    basket["items"].append("pear")
    basket["paid"] = True
    gate.set()
    assert cpb.flush(10)
    audit.close()
    (record,) = read(path)
    assert record["arguments"] == {"basket": {"items": ["apple"]}}
    assert record["thread"] == threading.current_thread().name  # the caller's, not the worker's


def test_enable_async_observers_keeps_the_audit_on_the_caller_thread(tmp_path, caplog):
    """enable_async_observers=True moves observers to the worker, but not the audit observer:
    it builds each record on the caller's thread (an argument mutated later is not recorded
    mutated), so nothing shallow is ever written and nothing needs a warning."""
    path = tmp_path / "async.jsonl"
    audit = AuditObserver(path)

    @cpb.CallPyBack(observers=[audit], enable_async_observers=True)
    def f(basket):
        return len(basket)

    basket = ["apple"]
    with caplog.at_level(logging.WARNING, logger="callpyback.audit"):
        f(basket)
        basket.append("pear")
        f(basket)
        assert cpb.flush(10)
    audit.close()
    assert not [r for r in caplog.records if "shallow" in r.getMessage()]
    records = read(path)
    assert [r["arguments"]["basket"] for r in records] == [["apple"], ["apple", "pear"]]
    assert {r["thread"] for r in records} == {threading.current_thread().name}


def test_records_carry_the_current_opentelemetry_span(tmp_path):
    """With a span active, trace_id and span_id (hex) are recorded; without one, they are absent."""
    from opentelemetry.sdk.trace import TracerProvider  # the test extra installs the SDK

    tracer = TracerProvider().get_tracer("tests")
    path = tmp_path / "otel.jsonl"
    audit = AuditObserver(path)
    f = cpb.CallPyBack(observers=[audit])(lambda: 1)
    with tracer.start_as_current_span("checkout") as span:
        f()
    f()
    audit.close()
    inside, outside = read(path)
    ctx = span.get_span_context()
    assert inside["trace_id"] == format(ctx.trace_id, "032x")
    assert inside["span_id"] == format(ctx.span_id, "016x")
    assert "trace_id" not in outside and "span_id" not in outside


def test_opentelemetry_is_never_imported_by_the_audit(tmp_path):
    """The ids come only from an OpenTelemetry the application imported itself."""
    out, _ = run_script(
        tmp_path,
        """
        import json, sys
        import callpyback as cpb
        from callpyback import AuditObserver
        audit = AuditObserver(sys.argv[1])
        cpb.CallPyBack(observers=[audit])(lambda: 1)()
        audit.close()
        record = json.loads(open(sys.argv[1]).read())
        print(json.dumps([sorted(m for m in sys.modules if m.startswith("opentelemetry")),
                          "trace_id" in record]))
        """,
        tmp_path / "plain.jsonl",
    )
    assert out == [[], False]
