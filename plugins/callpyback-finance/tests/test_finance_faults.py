"""The finance trail under faults: fork, a full disk, torn and edited lines, links, tracing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, List, Tuple

import pytest
from callpyback_finance import AuditTrail, verify_file
from callpyback_finance.chain import canonical, record_hash

import callpyback as cpb


def read(path: Path) -> List[dict]:
    return [json.loads(line) for line in path.read_text(encoding="ascii").splitlines()]


def run_script(tmp_path: Path, source: str, *args: Any) -> Tuple[Any, str]:
    """Run ``source`` in a fresh interpreter (the installed plugin); its last line is JSON."""
    script = tmp_path / f"script_{abs(hash(source))}.py"
    script.write_text(textwrap.dedent(source), encoding="utf-8")
    out = subprocess.run(
        # Forking a threaded process warns on 3.12+; that is exactly what these scripts test.
        [sys.executable, "-W", "ignore::DeprecationWarning", str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1]), out.stderr


# --- fork ----------------------------------------------------------------------------------

FORK = """
import json, os, sys, threading, time
import callpyback as cpb
from callpyback import plugins

path, held = sys.argv[1], sys.argv[2]
registry = plugins.get_registry()
audit = registry.create("observer", "finance.audit", {"path": path, "fields": ["n"]})
velocity = registry.create("error_handler", "finance.velocity",
                           {"max_transactions": 1_000_000, "window": 60})
limits = registry.create("error_handler", "finance.limits", {"max_amount": "1000"})

@cpb.CallPyBack(observers=[audit], error_handlers=[limits, velocity], max_observer_failures=None)
def pay(account, amount, n=0):
    return n

stop = threading.Event()
writers = []
if held == "none":
    # Four threads writing (with fsync) all the time: some lock is always held.
    started = threading.Barrier(5)
    def writer(t):
        started.wait()
        while not stop.is_set():
            pay(f"T{t}", 1)
    writers = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for t in writers:
        t.start()
    started.wait()
else:
    # One lock held by another thread at the moment of fork(), deterministically.
    lock = {"observer": audit.lock, "velocity": velocity._lock}[held]
    taken = threading.Event()
    def hold():
        with lock:
            taken.set()
            stop.wait()
    writers = [threading.Thread(target=hold)]
    writers[0].start()
    taken.wait()
children = []
for i in range(8 if held == "none" else 2):
    time.sleep(0.02)
    pid = os.fork()
    if pid == 0:
        pay("CHILD", 5, n=i)
        os._exit(0 if audit.write_errors == 0 else 3)
    children.append(pid)
deadline = time.monotonic() + 30  # a child not done by then is deadlocked
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
for t in writers:
    t.join()
audit.close()
print(json.dumps(sorted(status.values(), key=str)))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_threads_write_never_deadlocks_the_child(tmp_path: Path) -> None:
    """8 children forked while 4 threads pay through audit, limits and velocity all finish."""
    trail = tmp_path / "trail.jsonl"
    status, _ = run_script(tmp_path, FORK, trail, "none")
    assert status == [0] * 8
    result = verify_file(trail)
    assert result.ok, result.problems
    children = sorted(r["fields"]["n"] for r in read(trail) if r["parties"]["account"] == "CHILD")
    assert children == list(range(8))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("held", ["observer", "velocity"])
def test_a_lock_held_at_fork_is_fresh_in_the_child(tmp_path: Path, held: str) -> None:
    """Whichever lock another thread holds when fork() happens, the child's call goes through."""
    trail = tmp_path / "trail.jsonl"
    status, _ = run_script(tmp_path, FORK, trail, held)
    assert status == [0, 0]
    assert verify_file(trail).ok
    assert len(read(trail)) == 2


# --- a full disk ---------------------------------------------------------------------------

FULL_DISK = """
import json, logging, os, resource, signal, sys
import callpyback as cpb
from callpyback import plugins
from callpyback_finance import verify_file

logging.basicConfig(level=logging.WARNING)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG
path = sys.argv[1]
audit = plugins.get_registry().create("observer", "finance.audit", {"path": path})

@cpb.CallPyBack(observers=[audit], max_observer_failures=None)
def pay(account, amount):
    return amount

done = [pay("ACC-1", 1), pay("ACC-1", 2)]
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
# The disk fills up: the next records fit only in part (short writes), then not at all.
resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) + 120, hard))
done += [pay("ACC-1", 3), pay("ACC-1", 4)]
during = str(verify_file(path))
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space returns
done.append(pay("ACC-1", 5))
audit.close()
print(json.dumps({"done": done, "errors": audit.write_errors, "written": audit.records_written,
                  "during": during}))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE (POSIX)")
def test_a_full_disk_leaves_the_chain_verifiable(tmp_path: Path) -> None:
    """Short writes are cut back to the last whole record; the chain goes on when space returns."""
    trail = tmp_path / "trail.jsonl"
    out, stderr = run_script(tmp_path, FULL_DISK, trail)
    assert out["done"] == [1, 2, 3, 4, 5]  # the payments themselves never failed
    assert (out["errors"], out["written"]) == (2, 3)
    assert out["during"].startswith("OK: 2 records")
    result = verify_file(trail)
    assert result.ok and result.records == 3 and not result.skipped, result.problems
    assert [r["amounts"]["amount"] for r in read(trail)] == [1, 2, 5]
    assert [r["seq"] for r in read(trail)] == [1, 2, 3]
    assert stderr.count("finance.audit could not append") == 1
    assert "2 records were not written" in stderr


# --- torn lines and verify -----------------------------------------------------------------


def chain_of(path: Path, count: int) -> List[str]:
    writer = AuditTrail(path, durability="flush")
    for i in range(1, count + 1):
        writer.append({"amounts": {"amount": str(i * 100)}})
    writer.close()
    return path.read_text(encoding="ascii").splitlines(keepends=True)


def test_a_torn_record_is_recognised_and_skipped(tmp_path: Path) -> None:
    """A partial record (a writer killed mid-write) is skipped by the next writer and by verify."""
    trail = tmp_path / "trail.jsonl"
    chain_of(trail, 2)
    with open(trail, "ab") as f:
        f.write(b'{"amounts":{"amount":"3')  # the process died here
    AuditTrail(trail).append({"amounts": {"amount": "300"}})
    result = verify_file(trail)
    assert result.ok and result.records == 3 and result.skipped == (3,)
    assert "skipped 1 partial record" in str(result)
    whole = [json.loads(x) for x in trail.read_text().splitlines() if x.endswith("}")]
    assert [r["seq"] for r in whole] == [1, 2, 3]


def test_verify_goes_on_past_a_torn_line(tmp_path: Path) -> None:
    """An amount edited after a torn line is still reported."""
    trail = tmp_path / "trail.jsonl"
    chain_of(trail, 2)
    with open(trail, "ab") as f:
        f.write(b'{"amo')
    writer = AuditTrail(trail)
    writer.append({"amounts": {"amount": "300"}})
    writer.append({"amounts": {"amount": "400"}})
    lines = trail.read_text(encoding="ascii").splitlines(keepends=True)
    lines[4] = lines[4].replace('"400"', '"4"')
    trail.write_text("".join(lines), encoding="ascii")
    result = verify_file(trail)
    assert not result.ok and result.skipped == (3,)
    assert result.problems == ("line 5: record seq 4 does not match its hash: it was modified",)


def test_verify_reports_every_problem(tmp_path: Path) -> None:
    """Two edits, a removal and garbage: each is reported at its own line, in file order."""
    trail = tmp_path / "trail.jsonl"
    lines = chain_of(trail, 8)
    lines[1] = lines[1].replace('"200"', '"2"')
    del lines[3]  # seq 4
    lines[5] = lines[5].replace('"700"', '"7"')  # seq 7, now on line 6
    lines.insert(7, "not a record\n")
    trail.write_text("".join(lines), encoding="ascii")
    result = verify_file(trail)
    assert not result.ok and result.line == 2 and result.records == 7
    assert result.problems == (
        "line 2: record seq 2 does not match its hash: it was modified",
        "line 4: record seq 4 is missing (found seq 5): records were removed or reordered",
        "line 6: record seq 7 does not match its hash: it was modified",
        "line 8: not a JSON record (Expecting value: line 1 column 1 (char 0))",
    )
    assert str(result).startswith("BROKEN: line 2: ") and "and 3 more problems" in str(result)
    cli = subprocess.run(
        ["callpyback-finance", "verify", str(trail)], capture_output=True, text=True
    )
    assert cli.returncode == 1
    for problem in result.problems:
        assert problem in cli.stderr


def test_fragment_like_garbage_that_breaks_the_chain_is_a_problem(tmp_path: Path) -> None:
    """A line is only a torn write if the chain continues across it; a replaced record is not."""
    trail = tmp_path / "trail.jsonl"
    lines = chain_of(trail, 3)
    lines[1] = lines[1][:30] + "\n"  # record 2 cut down to a fragment: it is lost, not torn
    trail.write_text("".join(lines), encoding="ascii")
    result = verify_file(trail)
    assert not result.ok and result.line == 2 and not result.skipped
    assert "not a JSON record" in (result.problem or "")


def test_a_writer_after_an_unremovable_fragment_skips_it(tmp_path: Path) -> None:
    """Even a terminated fragment as the last line does not stop the chain from going on."""
    trail = tmp_path / "trail.jsonl"
    chain_of(trail, 1)
    with open(trail, "ab") as f:
        f.write(b'{"amounts":{"am\n')
    AuditTrail(trail).append({"amounts": {"amount": "200"}})
    assert [json.loads(x)["seq"] for x in trail.read_text().splitlines() if x.endswith("}")] == [
        1,
        2,
    ]
    result = verify_file(trail)
    assert result.ok and result.skipped == (2,)


# --- links ---------------------------------------------------------------------------------


def test_a_symlinked_trail_is_refused(create: Callable[..., Any], tmp_path: Path) -> None:
    """finance.audit never opens its trail through a symbolic link, dangling or not."""
    real = tmp_path / "real.jsonl"
    real.write_text("")
    (tmp_path / "link.jsonl").symlink_to(real)
    with pytest.raises(cpb.ConfigurationError, match="symbolic link"):
        create("observer", "finance.audit", path=str(tmp_path / "link.jsonl"))
    (tmp_path / "dangling.jsonl").symlink_to(tmp_path / "created-later.jsonl")
    with pytest.raises(cpb.ConfigurationError, match="symbolic link"):
        create("observer", "finance.audit", path=str(tmp_path / "dangling.jsonl"))
    with pytest.raises(OSError, match="symbolic link"):
        AuditTrail(tmp_path / "dangling.jsonl").append({"n": 1})
    assert not (tmp_path / "created-later.jsonl").exists() and real.read_text() == ""


# --- tracing -------------------------------------------------------------------------------


def test_records_carry_the_span_and_it_is_hashed(create: Callable[..., Any], trail: Path) -> None:
    """trace_id/span_id of the current span are recorded and covered by the record's hash."""
    from opentelemetry.sdk.trace import TracerProvider  # the test extra installs the SDK

    tracer = TracerProvider().get_tracer("tests")
    audit = create("observer", "finance.audit", path=str(trail))
    pay = cpb.CallPyBack(observers=[audit])(lambda account, amount: amount)
    with tracer.start_as_current_span("transfer") as span:
        pay("ACC-1", 10)
    pay("ACC-1", 20)
    audit.close()
    traced, untraced = read(trail)
    ctx = span.get_span_context()
    assert (traced["trace_id"], traced["span_id"]) == (
        format(ctx.trace_id, "032x"),
        format(ctx.span_id, "016x"),
    )
    assert "trace_id" not in untraced
    assert verify_file(trail).ok
    forged = dict(traced, trace_id="0" * 31 + "1")
    lines = trail.read_text(encoding="ascii").splitlines(keepends=True)
    lines[0] = canonical(forged) + "\n"
    trail.write_text("".join(lines), encoding="ascii")
    assert verify_file(trail).problem == (
        "line 1: record seq 1 does not match its hash: it was modified"
    )
    assert record_hash(traced) == traced["hash"]
