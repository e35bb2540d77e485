"""Stress: 8 threads x 20,000 calls give exact metrics and no cross-thread variable leaks.

Run twice: with the default switch interval, and with ``sys.setswitchinterval(1e-6)`` so that
threads are preempted as often as CPython allows (inside observers, between counter reads and
writes, between the extractor's hook and the target frame).
"""

from __future__ import annotations

import sys
import threading

import pytest

import callpyback as cpb
from callpyback import ConcurrencyObserver, MetricsObserver

THREADS = 8
CALLS = 20_000


@pytest.fixture(params=["default", "1us"])
def switch_interval(request):
    old = sys.getswitchinterval()
    if request.param == "1us":
        sys.setswitchinterval(1e-6)
    try:
        yield request.param
    finally:
        sys.setswitchinterval(old)


def test_exact_metrics_and_no_variable_leaks(switch_interval):
    """Every call is counted exactly once and sees only its own local variables."""
    metrics = MetricsObserver()
    concurrency = ConcurrencyObserver()
    leaks = []
    checked = [0] * THREADS  # one slot per thread: no shared counter to race on

    def check(context):
        who, i = context.args
        marker = context.local_variables["marker"]
        if marker != (who, i):
            leaks.append((who, i, marker))
        checked[who] += 1

    @cpb.CallPyBack(
        observers=[metrics, concurrency, cpb.on_completion(check)], variable_names=["marker"]
    )
    def work(who, i):
        marker = (who, i)
        if i % 10 == 0:
            raise ValueError(marker)
        return marker

    start = threading.Barrier(THREADS)

    def run(who):
        start.wait()
        for i in range(CALLS):
            try:
                work(who, i)
            except ValueError:
                pass

    threads = [threading.Thread(target=run, args=(w,)) for w in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    target = f"{__name__}:{work.__qualname__}"
    m = metrics.get_metrics(target)
    total = THREADS * CALLS
    failures = THREADS * len(range(0, CALLS, 10))
    assert leaks == []
    assert checked == [CALLS] * THREADS
    assert m["calls"] == total
    assert m["failures"] == failures and m["successes"] == total - failures
    assert m["in_flight"] == 0 and 1 <= m["max_in_flight"] <= THREADS
    assert m["latency"]["count"] == total
    report = concurrency.get_report()["functions"][target]
    assert report["calls"] == total and report["in_flight"] == 0
    assert sys.getprofile() is None and sys.gettrace() is None
