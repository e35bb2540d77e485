"""Redis hung (SIGSTOP) or dead (SIGKILL) mid-load: calls keep their latency bound, fall back
to local state with one warning and a metric, and recover when Redis answers again."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Dict, List

import pytest
from callpyback_redis import RedisBackend
from redis_support import RedisServer

import callpyback as cpb
from callpyback import state
from callpyback.handlers import BreakerState, CircuitBreakerHandler, CircuitOpenError

TIMEOUT = 0.05  # the documented default: tens of milliseconds


class Load:
    """Threads calling a protected function, recording each call's latency and outcome."""

    def __init__(self, handler: CircuitBreakerHandler, threads: int = 4) -> None:
        self.failing = threading.Event()
        self.stop = threading.Event()
        self.latencies: List[float] = []
        self.outcomes: Dict[str, int] = {}
        self._lock = threading.Lock()

        @cpb.CallPyBack(error_handlers=[handler])
        def protected() -> str:
            if self.failing.is_set():
                raise ConnectionError("dependency down")
            return "ok"

        self.protected = protected
        self.threads = [threading.Thread(target=self._loop) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            start = time.perf_counter()
            try:
                self.protected()
                outcome = "ok"
            except CircuitOpenError:
                outcome = "rejected"
            except ConnectionError:
                outcome = "failed"
            took = time.perf_counter() - start
            with self._lock:
                self.latencies.append(took)
                self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            time.sleep(0.0005)

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[int(len(ordered) * 0.99)]


def _wait(condition: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def _warnings(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "callpyback.state" and r.levelno == logging.WARNING
    ]


@pytest.mark.parametrize("how", ["hung", "dead"])
def test_outage_mid_load_falls_back_and_recovers(
    server: RedisServer, namespace: str, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """Mid-load, Redis is stopped (hung: SIGSTOP) or killed (refused: SIGKILL).  p99 stays
    under 100 ms and no call waits more than a few timeouts; failures then open the breaker
    locally; one WARNING and the metric say so; once Redis is back (SIGCONT, or a restart on
    the same port) the store's state is restored within the retry interval."""
    caplog.set_level(logging.INFO, logger="callpyback.state")
    backend = RedisBackend(
        server.url, namespace=namespace, timeout=TIMEOUT, poll_interval=0.2, retry_interval=0.2
    )
    state.use(backend)
    handler = CircuitBreakerHandler("payments", failure_threshold=5, recovery_timeout=60)
    events: List[Any] = []
    handler.add_listener(events.append)
    load = Load(handler)
    try:
        time.sleep(0.2)
        assert backend.metrics["degraded"] == 0
        if how == "hung":
            server.pause()
        else:
            server.kill()
        load.failing.set()  # failures now: each would ask Redis
        _wait(lambda: handler.breaker._state is BreakerState.OPEN)  # opened locally
        assert backend.metrics["degraded"] == 1
        time.sleep(0.5)  # rejections from local state, and probes failing meanwhile
        outage = dict(load.outcomes)
        # 5 opened it; calls already admitted by then may still fail (4 threads)
        assert 5 <= outage.get("failed", 0) <= 8 and outage.get("rejected", 0) > 50
        load.failing.clear()  # the dependency is back too
        if how == "hung":
            server.resume()
        else:
            server.restart()
        _wait(lambda: backend.metrics["degraded"] == 0)
        time.sleep(0.2)  # calls go on, on the store's state
    finally:
        load.finish()
    assert load.p99() < 0.1
    assert max(load.latencies) < 10 * TIMEOUT  # never redis-py's 5 s default, nor retries
    metrics = backend.metrics
    assert metrics["outages"] == 1 and metrics["errors"] >= 1 and metrics["degraded_seconds"] > 0.4
    (warning,) = _warnings(caplog)  # one per outage, not one per call
    assert "is unreachable" in warning and "fall back to per-process state" in warning
    assert any("answers again" in r.getMessage() for r in caplog.records)
    # Redis saw at most the failures sent before it hung (it runs them when it resumes; a
    # timed-out call's fate is unknown): its state wins (closed), and counting goes on there.
    assert handler.breaker._state is BreakerState.CLOSED
    assert events[-1].reason.startswith("shared state restored")
    assert load.outcomes["ok"] > outage["ok"]
    assert load.protected() == "ok"
    with pytest.raises(ConnectionError):
        load.failing.set()
        load.protected()
    raw = server.client().hgetall(f"callpyback:{namespace}:breaker:payments")
    assert raw[b"f"] == b"1" and raw[b"s"] == b"closed"


def test_a_second_outage_warns_again(
    server: RedisServer, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="callpyback.state")
    backend = RedisBackend(
        server.url, namespace=namespace, timeout=TIMEOUT, poll_interval=0.1, retry_interval=0.1
    )
    state.use(backend)
    keep = CircuitBreakerHandler("polled")  # a bound breaker: the worker polls it
    for _ in range(2):
        server.kill()
        _wait(lambda: backend.metrics["degraded"] == 1)
        server.restart()
        _wait(lambda: backend.metrics["degraded"] == 0)
    assert len(_warnings(caplog)) == 2 and backend.metrics["outages"] == 2
    assert keep.breaker.backend is backend


@pytest.mark.parametrize("policy", ["reject", "allow"])
def test_breaker_outage_policy(server: RedisServer, namespace: str, policy: str) -> None:
    """on_outage="reject" fails fast while Redis is unreachable; "allow" lets every call
    through (and counts nothing); both end when Redis is back."""
    backend = RedisBackend(
        server.url,
        namespace=namespace,
        timeout=TIMEOUT,
        poll_interval=0.1,
        retry_interval=0.1,
        on_outage=policy,
    )
    state.use(backend)
    handler = CircuitBreakerHandler(f"policy-{policy}", failure_threshold=2)
    failing = {"on": False}

    @cpb.CallPyBack(error_handlers=[handler])
    def protected() -> str:
        if failing["on"]:
            raise ConnectionError("down")
        return "ok"

    assert protected() == "ok"
    server.kill()
    _wait(lambda: not backend.live)  # the listener's connection drops, or the next poll fails
    failing["on"] = True
    if policy == "reject":
        assert not handler.hot.idle
        with pytest.raises(CircuitOpenError):
            protected()
    else:
        for _ in range(5):
            with pytest.raises(ConnectionError):
                protected()  # not counted: never opens
        assert handler.breaker._state is BreakerState.CLOSED and handler.hot.idle
    server.restart()
    _wait(lambda: backend.live)
    failing["on"] = False
    assert protected() == "ok"
