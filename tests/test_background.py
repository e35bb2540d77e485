"""Background observers: off the caller's thread, bounded, flushed, fork-safe."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading

import pytest

import callpyback as cpb
from callpyback import ConfigurationError, _background


@pytest.fixture(autouse=True)
def fresh_dispatcher():
    """Each test starts with default settings and a drained, stopped worker."""
    _background.configure(maxsize=10_000, overflow="drop", block_timeout=0.1)
    yield
    cpb.shutdown(10)
    _background.configure(maxsize=10_000, overflow="drop", block_timeout=0.1)


def test_no_thread_until_first_use():
    """Importing callpyback (even the background module) starts no thread."""
    code = (
        "import threading, callpyback, callpyback._background as b; "
        "assert threading.active_count() == 1, threading.enumerate(); "
        "assert not b.stats()['running']; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_observer_runs_on_the_worker_with_a_snapshot():
    """The observer runs on another thread and sees the context as it was when notified."""
    seen = []

    def observer(context):
        seen.append((threading.current_thread().name, context.state.name, context.value))

    @cpb.CallPyBack(observers=[cpb.on_success(observer, background=True)])
    def f(x):
        return x * 2

    assert [f(i) for i in range(3)] == [0, 2, 4]
    assert cpb.flush(5)
    assert seen == [("callpyback-background", "POST_SUCCESS", v) for v in (0, 2, 4)]


def test_enable_async_observers_runs_async_observers_from_sync_functions():
    """With enable_async_observers=True an ``async def`` observer is awaited on the worker."""
    seen = []

    async def observer(context):
        await asyncio.sleep(0)
        seen.append(context.value)

    @cpb.CallPyBack(observers=[cpb.on_completion(observer)], enable_async_observers=True)
    def f(x):
        return x

    for i in range(5):
        f(i)
    assert cpb.flush(5)
    assert seen == [0, 1, 2, 3, 4]


def test_async_observer_on_sync_path_without_background_is_rejected():
    """Without background, an async observer on a sync function is a configuration error."""

    async def observer(context):
        return None

    with pytest.raises(ConfigurationError, match="async"):

        @cpb.CallPyBack(observers=[cpb.on_completion(observer)])
        def f():
            return 1


def test_overflow_drops_newest_and_counts_without_blocking_the_caller():
    """A slow observer fills the queue; extra items are dropped and counted, calls go on."""
    _background.configure(maxsize=5)
    gate = threading.Event()
    seen = []

    def slow(context):
        gate.wait(10)
        seen.append(context.value)

    @cpb.CallPyBack(observers=[cpb.on_completion(slow, background=True)])
    def f(x):
        return x

    before = _background.stats()["dropped"]
    for i in range(50):
        assert f(i) == i
    dropped = _background.stats()["dropped"] - before
    gate.set()
    assert cpb.flush(10)
    # One item may be running when the queue fills; the rest of the first 5-6 are kept.
    assert len(seen) + dropped == 50
    assert 5 <= len(seen) <= 6
    assert seen == sorted(seen) and seen[0] == 0


def test_block_policy_waits_for_room_then_drops():
    """overflow='block' waits up to block_timeout for room, then drops and counts."""
    _background.configure(maxsize=1, overflow="block", block_timeout=0.05)
    gate = threading.Event()
    seen = []

    def slow(context):
        gate.wait(10)
        seen.append(context.value)

    @cpb.CallPyBack(observers=[cpb.on_completion(slow, background=True)])
    def f(x):
        return x

    before = _background.stats()["dropped"]
    for i in range(4):
        f(i)
    dropped = _background.stats()["dropped"] - before
    gate.set()
    assert cpb.flush(10)
    assert dropped >= 1 and len(seen) + dropped == 4

    # With a worker that keeps up, blocking loses nothing.
    _background.configure(maxsize=2, block_timeout=5)
    fast = []

    @cpb.CallPyBack(
        observers=[cpb.on_completion(lambda value: fast.append(value), background=True)]
    )
    def g(x):
        return x

    before = _background.stats()["dropped"]
    for i in range(200):
        g(i)
    assert cpb.flush(10)
    assert fast == list(range(200)) and _background.stats()["dropped"] == before


def test_failing_background_observer_is_isolated_and_counted(caplog):
    """An exception in the worker is logged once and counted; the calls are unaffected."""

    def broken(context):
        raise ZeroDivisionError("observer bug")

    @cpb.CallPyBack(observers=[cpb.on_completion(broken, background=True, name="broken")])
    def f():
        return "fine"

    before = _background.stats()["failures"].get("broken", 0)
    with caplog.at_level("ERROR", logger="callpyback"):
        assert [f() for _ in range(3)] == ["fine"] * 3
        assert cpb.flush(5)
    assert _background.stats()["failures"]["broken"] - before == 3
    if before == 0:
        assert sum("broken" in r.getMessage() for r in caplog.records) == 1


def test_wrapped_functions_called_by_background_observers_are_not_observed():
    """The re-entrancy guard holds on the worker: a background observer never sees the calls it
    makes itself (no feedback loop); the called function's other observers still do."""
    calls = []

    def observer(context):
        calls.append(f"background saw {context.function_info.name}")
        if context.function_info.name == "outer":
            inner()

    background = cpb.on_completion(observer, background=True)
    shared = cpb.CallPyBack(observers=[background])

    @cpb.CallPyBack(observers=[cpb.on_completion(lambda: calls.append("inner observed"))])
    @shared
    def inner():
        return 1

    @shared
    def outer():
        return 2

    outer()
    assert cpb.flush(5)
    assert calls == ["background saw outer", "inner observed"]


def test_flush_and_shutdown_semantics():
    """flush with nothing queued is immediate; shutdown stops the worker; next use restarts it."""
    assert cpb.flush(0.5)
    seen = []

    @cpb.CallPyBack(
        observers=[cpb.on_completion(lambda value: seen.append(value), background=True)]
    )
    def f(x):
        return x

    f(1)
    assert cpb.shutdown(5)
    assert not _background.stats()["running"]
    assert seen == [1]
    f(2)
    assert cpb.flush(5)
    assert seen == [1, 2] and _background.stats()["running"]


def test_flush_from_the_worker_does_not_deadlock():
    """An observer calling flush() gets False instead of waiting for itself."""
    results = []

    def observer(context):
        results.append(cpb.flush(1))

    @cpb.CallPyBack(observers=[cpb.on_completion(observer, background=True)])
    def f():
        return 1

    f()
    assert cpb.flush(5)
    assert results == [False]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"maxsize": 0}, "maxsize"),
        ({"maxsize": True}, "maxsize"),
        ({"overflow": "explode"}, "overflow"),
        ({"block_timeout": -1}, "block_timeout"),
    ],
)
def test_configure_validates(kwargs, match):
    """Bad settings are configuration errors that name the setting."""
    with pytest.raises(ConfigurationError, match=match):
        _background.configure(**kwargs)


def test_queued_items_are_flushed_at_exit(tmp_path):
    """The atexit hook runs what is still queued before the interpreter exits."""
    out_file = tmp_path / "out.txt"
    code = textwrap.dedent(
        f"""
        import time, callpyback as cpb
        def slow(value):
            time.sleep(0.01)
            with open({str(out_file)!r}, "a") as fh:
                fh.write(f"{{value}}\\n")
        @cpb.CallPyBack(observers=[cpb.on_completion(slow, background=True)])
        def f(x):
            return x
        for i in range(20):
            f(i)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert out_file.read_text().split() == [str(i) for i in range(20)]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_restarts_the_worker_in_the_child(tmp_path):
    """After fork the child gets its own worker and does not replay the parent's queue."""
    out_file = tmp_path / "fork.txt"
    code = textwrap.dedent(
        f"""
        import os, threading, callpyback as cpb
        from callpyback import _background
        gate = threading.Event()
        def record(value):
            if value == "parent-blocked":
                gate.wait(5)
            with open({str(out_file)!r}, "a") as fh:
                fh.write(f"{{os.getpid()}} {{value}}\\n")
        @cpb.CallPyBack(observers=[cpb.on_completion(record, background=True)])
        def f(x):
            return x
        f("parent-before")
        assert cpb.flush(5)
        f("parent-blocked")   # the worker is now stuck in it...
        f("parent-queued")    # ...and this waits in the queue at fork time
        pid = os.fork()
        if pid == 0:
            ok = not _background.stats()["running"] and _background.stats()["queued"] == 0
            f("child")
            ok = ok and cpb.flush(5)
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        gate.set()
        assert cpb.flush(5)
        print(os.getpid(), pid, os.waitstatus_to_exitcode(status))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    parent, child, child_status = proc.stdout.split()
    assert child_status == "0"
    lines = [line.split(" ", 1) for line in out_file.read_text().splitlines()]
    by_pid = {}
    for pid, value in lines:
        by_pid.setdefault(pid, []).append(value)
    assert by_pid[parent] == ["parent-before", "parent-blocked", "parent-queued"]
    assert by_pid[child] == ["child"]
