"""Threads: no lost notifications while observers are added and removed concurrently."""

from __future__ import annotations

import sys
import threading
from typing import Any

from callpyback import CallPyBack, on_completion, on_success

THREADS = 8
CALLS = 5_000


def test_concurrent_calls_with_churning_observers() -> None:
    """8 threads call one function while another thread keeps adding and removing observers."""
    lock = threading.Lock()
    counts = {"success": 0, "completed": 0, "churn": 0}
    values: list[int] = []

    def on_ok(value: int) -> None:
        with lock:
            counts["success"] += 1

    def on_done(value: int) -> None:
        with lock:
            counts["completed"] += 1
            values.append(value)

    deco = CallPyBack(observers=[on_success(on_ok), on_completion(on_done)])

    @deco
    def work(x: int) -> int:
        return x + 1

    errors: list[BaseException] = []
    stop = threading.Event()
    start = threading.Barrier(THREADS + 1)

    def caller(offset: int) -> None:
        try:
            start.wait()
            for i in range(CALLS):
                assert work(offset + i) == offset + i + 1
        except BaseException as exc:
            errors.append(exc)

    def churn() -> None:
        start.wait()
        while not stop.is_set():
            obs = deco.add_observer(
                on_success(lambda: counts.__setitem__("churn", counts["churn"] + 1))
            )
            deco.remove_observer(obs)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=caller, args=(n * CALLS,)) for n in range(THREADS)]
        churner = threading.Thread(target=churn)
        for t in [*threads, churner]:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        churner.join()
    finally:
        sys.setswitchinterval(old)

    assert errors == []
    assert counts["success"] == THREADS * CALLS
    assert counts["completed"] == THREADS * CALLS
    assert sorted(values) == [v + 1 for v in range(THREADS * CALLS)]


def test_context_is_per_call_across_threads() -> None:
    """metadata written before a call is read back by the same call, never another thread's."""
    mismatches: list[Any] = []
    deco = CallPyBack(
        observers=[
            on_success(lambda metadata, args: metadata.__setitem__("x", args[0]), priority=1),
            on_completion(
                lambda metadata, args: metadata["x"] == args[0] or mismatches.append(args)
            ),
        ]
    )
    f = deco(lambda x: x)

    def run(base: int) -> None:
        for i in range(2_000):
            f(base + i)

    threads = [threading.Thread(target=run, args=(n * 10_000,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mismatches == []
