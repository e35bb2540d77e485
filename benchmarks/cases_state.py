"""Shared state: what the Redis backend costs a closed breaker's call, and how fast a change
reaches another process.  Needs ``redis-server`` on PATH and the callpyback-redis plugin
(``pip install ./plugins/callpyback-redis``); a server is started on a free port for the run.

* ``closed breaker success, redis / in-process``: the same pipeline, one breaker bound to Redis,
  one in the process, both closed.  Target <= 1.2x: a closed breaker admits from its cached view
  and its hooks are skipped (``hot.idle``), so no call waits on the network.
* ``velocity window hit, redis / in-process``: one ``state.window`` hit (a Lua script, one
  round trip on loopback) against the in-memory window, for scale: no target.
* ``propagation``: a breaker opened in this process, seen open by a listener in another;
  returns (p99 ms, 100 ms), so <= 1.0 meets a 100 ms bound; the note gives median and max.
"""

from __future__ import annotations

import atexit
import itertools
import json
import shutil
import socket
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, List, Optional, Tuple

from _harness import Case, compare, direct, target

from callpyback import CallPyBack, state
from callpyback.handlers import CircuitBreakerHandler

_names = itertools.count()
_server: List[Any] = []


def _redis_url() -> str:
    """A redis-server for this run (127.0.0.1, free port, no persistence), stopped at exit."""
    if not _server:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (see .ci/setup.d/redis.sh)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        atexit.register(proc.terminate)
        import redis

        client = redis.Redis(port=port)
        for _ in range(500):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.01)
        _server.append((proc, f"redis://127.0.0.1:{port}/0"))
    return str(_server[0][1])


def _backend() -> Any:
    from callpyback_redis import RedisBackend

    current = state.current()
    if getattr(current, "name", "") != "redis":
        # Only breakers built with shared=True use it; the rest stay in the process.
        current = RedisBackend(_redis_url(), namespace="bench")
        state.use(current, breakers=())
    return current


def _breaker_call(shared: bool) -> Callable[[], Any]:
    handler = CircuitBreakerHandler(f"bench-state-{next(_names)}", shared=shared)
    assert (handler.breaker.backend is state.MEMORY) is not shared
    return direct(CallPyBack(error_handlers=[handler])(target), 1)


def closed_success() -> Callable[[], List[float]]:
    def run() -> List[float]:
        _backend()
        return compare(_breaker_call(True), _breaker_call(False), rounds=9).ratios

    return run


def window_hit() -> Callable[[], List[float]]:
    def run() -> List[float]:
        _backend()
        keys = itertools.count()
        shared = state.window(f"bench-window-{next(_names)}", 1_000_000, 60.0, shared=True)
        local = state.window(f"bench-window-{next(_names)}", 1_000_000, 60.0, shared=False)
        assert shared.hit("probe", 0.0).source == "shared"

        def hit_shared() -> Any:
            return shared.hit(next(keys) % 100, 0.0)

        def hit_local() -> Any:
            return local.hit(next(keys) % 100, 0.0)

        return compare(hit_shared, hit_local, rounds=5, windows=4).ratios

    return run


CHILD = r"""
import json, sys, time
from callpyback import state
from callpyback.handlers import CircuitBreakerHandler
from callpyback_redis import RedisBackend

state.use(RedisBackend(sys.argv[1], namespace="bench-propagation"))
handler = CircuitBreakerHandler(sys.argv[2], failure_threshold=1, recovery_timeout=3600)

def seen(event):
    if event.new.value == "open":
        print(json.dumps(time.time()), flush=True)

handler.add_listener(seen)
print("ready", flush=True)
sys.stdin.read()
"""


def propagation(case: Case) -> Callable[[], Tuple[float, float]]:
    def run() -> Tuple[float, float]:
        from callpyback_redis import RedisBackend

        url = _redis_url()
        name = f"bench-propagation-{next(_names)}"
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, url, name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None and child.stdin is not None
        previous = state.use(RedisBackend(url, namespace="bench-propagation"))
        try:
            handler = CircuitBreakerHandler(name, failure_threshold=1, recovery_timeout=3600)
            assert child.stdout.readline().strip() == "ready"
            time.sleep(0.3)  # the child's listener subscribes
            delays: List[float] = []
            for _ in range(50):
                start = time.time()
                handler.breaker.open()
                seen = json.loads(child.stdout.readline())
                delays.append(seen - start)
                handler.breaker.close()
                time.sleep(0.01)
        finally:
            child.stdin.close()
            child.wait(10)
            state.use(previous).close()
        ordered = sorted(delays)
        p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
        case.note = (
            f"open -> another process sees it: median {statistics.median(ordered) * 1000:.2f} ms,"
            f" p99 {p99:.2f} ms, max {ordered[-1] * 1000:.2f} ms over {len(ordered)} (pub/sub;"
            " polling bounds a lost message at poll_interval, 1 s by default)"
        )
        return p99, 100.0

    return run


def _case(name: str, build: Callable[[Case], Any], **kw: Any) -> Case:
    case: Optional[Case] = None

    def built() -> Any:
        assert case is not None
        return build(case)

    case = Case(name, built, kind="custom", group="state", **kw)
    return case


CASES = [
    Case(
        "closed breaker success, redis / in-process backend",
        closed_success,
        kind="custom",
        group="state",
        target=1.2,
        note="same pipeline; the Redis breaker admits from its cached view",
    ),
    Case(
        "velocity window hit, redis / in-process",
        window_hit,
        kind="custom",
        group="state",
        note="one Lua script round trip on loopback vs a deque (for scale)",
    ),
    _case("propagation of an open breaker, p99 / 100 ms", propagation, target=1.0),
]
