"""Core overhead: the decorator itself, observers, coroutines, threads and import time."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Callable

from _harness import Case, atarget, direct, passthrough, target, time_sync

from callpyback import CallPyBack, on_success


def empty() -> Callable[[], Any]:
    return direct(CallPyBack()(target), 1)


def observers(n: int) -> Callable[[], Any]:
    deco = CallPyBack(observers=[on_success(lambda result: None) for _ in range(n)])
    return direct(deco(target), 1)


def value_observer() -> Callable[[], Any]:
    deco = CallPyBack(observers=[on_success(lambda value: None)])
    return direct(deco(target), 1)


def per_extra_observer() -> Callable[[], tuple[float, float]]:
    """Slope of cost per added observer, in units of the passthrough call."""

    def measure() -> tuple[float, float]:
        base = direct(passthrough(target), 1)
        one, many = observers(1), observers(1000)
        slopes, bases = [], []
        for _ in range(5):
            b = time_sync(base, 20_000)
            t1 = time_sync(one, 5_000)
            tn = time_sync(many, 500)
            slopes.append((tn - t1) / 999)
            bases.append(b)
        return statistics.median(slopes), statistics.median(bases)

    return measure


def coroutine_one() -> Callable[[], Any]:
    deco = CallPyBack(observers=[on_success(lambda result: None)])
    return direct(deco(atarget), 1, kind="async")


def threads_scaling() -> Callable[[], tuple[float, float]]:
    """Per-call cost with 8 threads calling one wrapped function vs. one thread.

    CPython runs one thread at a time, so 8 threads doing N calls each should take about 8x one
    thread doing N calls; a lock on the call path would make it much worse.
    """
    f = CallPyBack(observers=[on_success(lambda result: None)])(target)
    calls = 50_000

    def run_threads(k: int) -> float:
        barrier = threading.Barrier(k + 1)

        def work() -> None:
            barrier.wait()
            for _ in range(calls):
                f(1)

        threads = [threading.Thread(target=work) for _ in range(k)]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        return (time.perf_counter() - t0) / (k * calls)

    def measure() -> tuple[float, float]:
        multi = statistics.median(run_threads(8) for _ in range(3))
        single = statistics.median(run_threads(1) for _ in range(3))
        return multi, single

    return measure


def import_time() -> Callable[[], tuple[float, float]]:
    """Added start-up time of ``import callpyback``, as a fraction of the 25 ms budget."""

    # Installed packages have .pyc files; measure that, not a compile on every start (some
    # environments set PYTHONDONTWRITEBYTECODE, which would charge compilation to each run).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def run(code: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
        return time.perf_counter() - t0

    def measure() -> tuple[float, float]:
        run("import callpyback")  # writes the .pyc files if they are missing
        bare = [run("pass") for _ in range(15)]
        imp = [run("import callpyback") for _ in range(15)]
        added = statistics.median(imp) - statistics.median(bare)
        print(f"    import callpyback adds {added * 1e3:.1f} ms to a bare interpreter start")
        return added, 0.025

    return measure


CASES = [
    Case("empty pipeline (decorator, no observers)", empty, target=1.1),
    Case("one on_success(lambda result: ...) observer", lambda: observers(1), target=3.5),
    Case("one on_success(lambda value: ...) (no duration asked)", lambda: value_observer(),
         note="no clock read: nothing can see a duration"),
    Case("ten on_success observers", lambda: observers(10)),
    Case(
        "each further observer (slope 1 -> 1000)",
        per_extra_observer,
        kind="custom",
        target=0.5,
        note="cost of one more observer / passthrough call",
    ),
    Case(
        "coroutine, one observer (vs async passthrough)",
        coroutine_one,
        kind="async",
        baseline="async",
        target=3.5,
    ),
    Case("8 threads, per-call cost vs 1 thread", threads_scaling, kind="custom", target=1.3),
    Case("import callpyback (fraction of 25 ms budget)", import_time, kind="custom", target=1.0),
]
