"""ConcurrencyObserver: in-flight tracking and overlap detection for guarded functions."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

import callpyback as cpb
from callpyback import ConcurrencyObserver, ConfigurationError


def test_max_concurrency_with_threads():
    """Calls held open together are counted as concurrent."""
    obs = ConcurrencyObserver()
    barrier = threading.Barrier(4)

    @cpb.CallPyBack(observers=[obs])
    def work():
        barrier.wait(10)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    target = f"{__name__}:{work.__qualname__}"
    assert obs.max_concurrency(target) == 4
    report = obs.get_report()
    assert report["functions"][target] == {"calls": 4, "in_flight": 0, "max_concurrency": 4}
    assert report["overlap_count"] == 0  # not guarded: concurrency alone is not an overlap


def test_non_reentrant_overlap_records_both_threads():
    """Two threads inside a non-reentrant function at once are reported with their identities."""
    overlaps = []
    obs = ConcurrencyObserver(non_reentrant=["update_balance"], on_overlap=overlaps.append)
    inside = threading.Event()
    release = threading.Event()

    @cpb.CallPyBack(observers=[obs])
    def update_balance(who):
        if who == "first":
            inside.set()
            release.wait(10)

    first = threading.Thread(target=update_balance, args=("first",), name="writer-1")
    first.start()
    assert inside.wait(10)
    second = threading.Thread(target=update_balance, args=("second",), name="writer-2")
    second.start()
    second.join()
    release.set()
    first.join()
    (overlap,) = overlaps
    assert overlap.call.thread_name == "writer-2"
    assert [r.thread_name for r in overlap.running] == ["writer-1"]
    assert not overlap.same_thread
    assert overlap.group.endswith(":update_balance") or overlap.group.endswith("update_balance")
    assert obs.get_report()["overlap_count"] == 1


def test_sequential_calls_never_overlap():
    """A guarded function called one call at a time reports nothing."""
    obs = ConcurrencyObserver(non_reentrant=["*"], on_overlap=lambda o: pytest.fail("overlap"))

    @cpb.CallPyBack(observers=[obs])
    def f():
        return 1

    for _ in range(100):
        f()
    assert obs.get_report()["overlap_count"] == 0


def test_single_writer_group_across_functions_and_asyncio_tasks():
    """Two functions in one single_writer group overlapping in asyncio tasks are reported."""
    overlaps = []
    obs = ConcurrencyObserver(
        single_writer={"ledger": ["deposit", "withdraw"]}, on_overlap=overlaps.append
    )
    deco = cpb.CallPyBack(observers=[obs])

    @deco
    async def deposit():
        await asyncio.sleep(0.01)

    @deco
    async def withdraw():
        await asyncio.sleep(0.01)

    @deco
    async def read_only():
        await asyncio.sleep(0.01)

    async def main():
        await asyncio.gather(
            asyncio.create_task(deposit(), name="task-dep"),
            asyncio.create_task(withdraw(), name="task-wd"),
            asyncio.create_task(read_only(), name="task-ro"),
        )

    asyncio.run(main())
    (overlap,) = overlaps
    assert overlap.group == "ledger"
    assert overlap.call.task == "task-wd" and overlap.running[0].task == "task-dep"
    assert overlap.same_thread  # asyncio interleaving on one thread


def test_recursion_is_reentrance(caplog):
    """Recursing into a non-reentrant function is reported; without a callback it is logged."""
    obs = ConcurrencyObserver(non_reentrant=[f"{__name__}:*"])

    @cpb.CallPyBack(observers=[obs])
    def rec(n):
        if n:
            rec(n - 1)

    with caplog.at_level(logging.WARNING, logger="callpyback.concurrency"):
        rec(1)
    assert obs.overlap_count == 1 and obs.overlaps[0].same_thread
    assert "overlapping execution" in caplog.records[0].getMessage()


def test_failures_end_the_call_too():
    """A failing call leaves in-flight and group membership."""
    overlaps = []
    obs = ConcurrencyObserver(non_reentrant=["boom"], on_overlap=overlaps.append)

    @cpb.CallPyBack(observers=[obs])
    def boom():
        raise ValueError

    for _ in range(3):
        with pytest.raises(ValueError):
            boom()
    assert overlaps == []
    assert obs.get_report()["functions"][f"{__name__}:{boom.__qualname__}"]["in_flight"] == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"non_reentrant": [3]}, "non_reentrant"),
        ({"single_writer": {"": ["f"]}}, "group names"),
        ({"single_writer": {"g": [""]}}, "single_writer"),
        ({"on_overlap": "log"}, "on_overlap"),
        ({"background": True}, "background"),
    ],
)
def test_bad_options(kwargs, match):
    """Bad options are rejected at construction."""
    with pytest.raises(ConfigurationError, match=match):
        ConcurrencyObserver(**kwargs)
