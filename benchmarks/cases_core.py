"""Core overhead: the decorator itself, callback observers, coroutines, threads, recursion and
import time (group "core")."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Callable, List

from _harness import (
    Case,
    ExecutionResultFloor,
    atarget,
    compare,
    direct,
    passthrough,
    target,
)

from callpyback import CallPyBack, MetricsObserver, on_success


def passthrough_copy() -> Callable[[], Any]:
    """The harness's own check: a passthrough against a copy of itself must read 1.00x."""
    return direct(passthrough(target), 1)


def floor() -> Callable[[], Any]:
    """A hand-written timing wrapper: two clock reads and a callback given a result object."""
    return direct(ExecutionResultFloor(target, lambda result: None), 1)


def empty() -> Callable[[], Any]:
    return direct(CallPyBack()(target), 1)


def observers(n: int) -> Callable[[], Any]:
    deco = CallPyBack(observers=[on_success(lambda result: None) for _ in range(n)])
    return direct(deco(target), 1)


def _copy_of_target() -> Any:
    import types

    return types.FunctionType(
        target.__code__,
        target.__globals__,
        target.__name__,
        target.__defaults__,
        target.__closure__,
    )


def in_place(observer: Any) -> Callable[[], Any]:
    """The import hook's mode: the function object itself gets the observing code."""
    func = _copy_of_target()
    CallPyBack(observers=[observer] if observer is not None else []).instrument_in_place(func)
    return direct(func, 1)


def value_observer() -> Callable[[], Any]:
    deco = CallPyBack(observers=[on_success(lambda value: None)])
    return direct(deco(target), 1)


def per_extra_observer() -> Callable[[], List[float]]:
    """Cost of one more observer on the same state, in units of the passthrough call."""

    def measure() -> List[float]:
        one = compare(observers(1), direct(passthrough(target), 1), rounds=5)
        eleven = compare(observers(11), direct(passthrough(target), 1), rounds=5)
        return [(b - a) / 10 for a, b in zip(one.ratios, eleven.ratios)]

    return measure


def coroutine_one() -> Callable[[], Any]:
    deco = CallPyBack(observers=[on_success(lambda result: None)])
    return direct(deco(atarget), 1, kind="async")


def _thread_ratio(f: Callable[[int], Any], calls: int = 30_000) -> List[float]:
    """Per-call cost with 8 threads calling ``f`` vs one thread (CPython runs one at a time,
    so anything above 1.0 is contention: a lock, or work retried)."""

    def run(k: int) -> float:
        barrier = threading.Barrier(k + 1)

        def work() -> None:
            barrier.wait()
            for _ in range(calls):
                f(1)

        threads = [threading.Thread(target=work) for _ in range(k)]
        for t in threads:
            t.start()
        barrier.wait()
        p0 = time.process_time()
        for t in threads:
            t.join()
        return (time.process_time() - p0) / (k * calls)

    samples = []
    for _ in range(5):
        single = min(run(1) for _ in range(2))
        multi = min(run(8) for _ in range(2))
        samples.append(multi / single)
    return samples


def threads_callback() -> Callable[[], List[float]]:
    f = CallPyBack(observers=[on_success(lambda result: None)])(target)
    return lambda: _thread_ratio(f)


def threads_metrics() -> Callable[[], List[float]]:
    f = CallPyBack(observers=[MetricsObserver()])(target)
    return lambda: _thread_ratio(f)


def recursion_depth() -> Callable[[], List[float]]:
    """How deep a recursive function gets before RecursionError: plain depth / wrapped depth
    (2.0 means two frames per call; the target is at most 2)."""
    code = r"""
from callpyback import CallPyBack, MetricsObserver
deepest = {"plain": 0, "wrapped": 0}
def plain(n):
    deepest["plain"] = n
    return plain(n + 1)
@CallPyBack(observers=[MetricsObserver()])
def wrapped(n):
    deepest["wrapped"] = n
    return wrapped(n + 1)
for f in (plain, wrapped):
    try:
        f(0)
    except RecursionError:
        pass
print(deepest["plain"], deepest["wrapped"])
"""

    def measure() -> List[float]:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        plain, wrapped = (int(x) for x in out.stdout.split())
        print(
            f"    recursion: {plain} levels plain, {wrapped} wrapped "
            f"(limit {sys.getrecursionlimit()})"
        )
        return [plain / wrapped]

    return measure


def import_time() -> Callable[[], List[float]]:
    """Added start-up time of ``import callpyback``, as a fraction of a 25 ms budget."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def run(code: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
        return time.perf_counter() - t0

    def measure() -> List[float]:
        run("import callpyback")  # writes the .pyc files if they are missing
        samples = []
        for _ in range(5):
            bare = min(run("pass") for _ in range(5))
            imp = min(run("import callpyback") for _ in range(5))
            samples.append((imp - bare) / 0.025)
        print(
            f"    import callpyback adds {statistics.median(samples) * 25:.1f} ms to a bare "
            "interpreter start (min of 5, median of 5 rounds)"
        )
        return samples

    return measure


CASES = [
    Case(
        "passthrough vs a copy of itself (harness check)", passthrough_copy, note="must read 1.00x"
    ),
    Case(
        "hand-written timing wrapper (the pure-Python floor)",
        floor,
        note="2 clock reads + a callback given a result",
    ),
    Case("empty pipeline (decorator, no observers)", empty, target=1.05),
    Case("one on_success(lambda result: ...) observer", lambda: observers(1), target=3.0),
    Case(
        "one on_success(lambda value: ...) (no duration asked)",
        value_observer,
        note="no clock read: nothing can see a duration",
    ),
    Case("ten on_success observers", lambda: observers(10)),
    Case("in place (import hook), no observers", lambda: in_place(None), target=1.05),
    Case(
        "in place (import hook), one on_success(lambda result: ...)",
        lambda: in_place(on_success(lambda result: None)),
        target=3.0,
        note="compare with the decorator's line above",
    ),
    Case(
        "in place (import hook), MetricsObserver", lambda: in_place(MetricsObserver()), target=3.5
    ),
    Case(
        "each further observer (1 -> 11, per observer)",
        per_extra_observer,
        kind="custom",
        note="in units of the passthrough call",
    ),
    Case(
        "coroutine, one observer (vs async passthrough)",
        coroutine_one,
        kind="async",
        baseline="async",
    ),
    Case(
        "8 threads vs 1, one callback (per-call CPU)", threads_callback, kind="custom", target=1.05
    ),
    Case(
        "8 threads vs 1, MetricsObserver (per-call CPU)",
        threads_metrics,
        kind="custom",
        target=1.05,
    ),
    Case(
        "recursion: plain depth / wrapped depth",
        recursion_depth,
        kind="custom",
        target=2.02,
        note="2 frames per call: 995 plain reach >= 495 wrapped",
    ),
    Case("import callpyback (fraction of 25 ms budget)", import_time, kind="custom", target=1.0),
]
