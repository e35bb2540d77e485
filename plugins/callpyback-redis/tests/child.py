"""A worker process for the multi-process tests (run as a script, never imported by pytest).

argv[1] is a JSON config: url, namespace, breaker options, backend options, velocity options
and ``skew`` (seconds added to this process's clocks: its time source, ``time.time`` and
``time.monotonic`` as seen by the application).  Commands arrive as JSON lines on stdin, and
each gets one JSON line back: {"result": ...} or {"error": "..."}.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from typing import Any, Dict, List

from callpyback_redis import RedisBackend

import callpyback as cpb
from callpyback import state
from callpyback.handlers import CircuitBreakerHandler, CircuitOpenError

config: Dict[str, Any] = json.loads(sys.argv[1])
skew = float(config.get("skew", 0.0))


class SkewedClock(cpb.SystemTimeSource):
    """This process's clocks, off by ``skew`` seconds (the shared state must not care)."""

    def now(self) -> float:
        return super().now() + skew

    def monotonic(self) -> float:
        return super().monotonic() + skew


if skew:
    _real_time = time.time
    time.time = lambda: _real_time() + skew  # type: ignore[assignment]

clock = SkewedClock()
backend = RedisBackend(config["url"], namespace=config["namespace"], **config.get("backend", {}))
state.use(backend)
handler = CircuitBreakerHandler(
    config.get("breaker_name", "payments"), **config.get("breaker", {"failure_threshold": 5})
)
behaviour = {"mode": "ok", "sleep": 0.0}
ran: List[str] = []
ran_lock = threading.Lock()


@cpb.CallPyBack(error_handlers=[handler], time_source=clock)
def protected() -> str:
    with ran_lock:
        ran.append(behaviour["mode"])
    if behaviour["sleep"]:
        time.sleep(behaviour["sleep"])
    if behaviour["mode"] == "fail":
        raise ConnectionError("dependency down")
    return "ok"


guard = None
if "velocity" in config:
    from callpyback import plugins

    guard = plugins.get_registry().create("error_handler", "finance.velocity", config["velocity"])

    @cpb.CallPyBack(error_handlers=[guard], time_source=clock)
    def transfer(account: str, amount: int) -> int:
        return amount


def call_once() -> str:
    try:
        protected()
        return "ok"
    except CircuitOpenError:
        return "rejected"
    except ConnectionError:
        return "failed"


def run(command: Dict[str, Any]) -> Any:
    op = command["op"]
    if op == "ping":
        return "pong"
    if op == "call":
        behaviour["mode"] = command.get("mode", "ok")
        behaviour["sleep"] = command.get("sleep", 0.0)
        return [call_once() for _ in range(command.get("n", 1))]
    if op == "state":
        stats = handler.stats
        return {
            "state": handler.state.value,
            "failures": stats.consecutive_failures,
            "ran": len(ran),
            "live": backend.live,
        }
    if op == "wait_state":
        start = time.perf_counter()
        deadline = start + command.get("timeout", 5.0)
        while handler.breaker._state.value != command["state"]:
            if time.perf_counter() > deadline:
                return None
            time.sleep(0.0005)
        return time.perf_counter() - start
    if op == "hammer":
        # Threads calling for ``seconds``; returns how many calls ran the function, per outcome.
        behaviour["mode"] = command.get("mode", "ok")
        behaviour["sleep"] = command.get("sleep", 0.0)
        before = len(ran)
        outcomes: Dict[str, int] = {}
        lock = threading.Lock()
        stop = time.monotonic() + command["seconds"]

        def loop() -> None:
            while time.monotonic() < stop:
                outcome = call_once()
                with lock:
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
                if outcome == "rejected":
                    time.sleep(0.0005)

        threads = [threading.Thread(target=loop) for _ in range(command.get("threads", 2))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return {"ran": len(ran) - before, "outcomes": outcomes}
    if op == "transfer":
        assert guard is not None
        admitted = 0
        blocked: List[str] = []
        for _ in range(command.get("n", 1)):
            try:
                transfer(command["account"], 1)
                admitted += 1
            except Exception as exc:  # VelocityExceededError
                blocked.append(str(exc))
        return {"admitted": admitted, "blocked": blocked}
    if op == "barrier":
        # Wait until the wall clock (unskewed) reaches ``at``: start several children together.
        delay = command["at"] - (time.time() - skew)
        if delay > 0:
            time.sleep(delay)
        return True
    if op == "metrics":
        return backend.metrics
    if op == "open":
        handler.breaker.open()
        return handler.state.value
    raise ValueError(f"unknown op {op!r}")


for line in sys.stdin:
    command = json.loads(line)
    if command["op"] == "quit":
        break
    try:
        reply = {"result": run(command)}
    except Exception:
        reply = {"error": traceback.format_exc()}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
state.use(state.MEMORY)
backend.close()
