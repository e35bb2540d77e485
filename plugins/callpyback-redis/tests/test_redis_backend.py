"""The Redis backend in one process: command budget, keys, FLUSHALL, fork, threads, rebinding."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Dict

import pytest
from callpyback_redis import RedisBackend
from redis_support import RedisServer

import callpyback as cpb
from callpyback import ConfigurationError, state
from callpyback.handlers import BreakerState, CircuitBreakerHandler, CircuitOpenError


def _backend(server: RedisServer, namespace: str, **options: Any) -> RedisBackend:
    options.setdefault("timeout", 1.0)  # a loaded test machine is not an outage
    backend = RedisBackend(server.url, namespace=namespace, **options)
    state.use(backend)
    return backend


def _evalsha_calls(server: RedisServer) -> int:
    stats: Dict[str, Any] = server.client().info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0)) + int(
        stats.get("cmdstat_eval", {}).get("calls", 0)
    )


def _wait(condition: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_closed_and_open_steady_states_send_no_command_per_call(
    server: RedisServer, namespace: str
) -> None:
    """1000 successful calls through a closed breaker, then 1000 rejected by an open one:
    Redis sees no per-call command (at most a poll each way), and the keys carry TTLs."""
    _backend(server, namespace, poll_interval=30.0)
    handler = CircuitBreakerHandler("budget", failure_threshold=1, recovery_timeout=60)
    failing = {"on": False}

    @cpb.CallPyBack(error_handlers=[handler])
    def protected() -> str:
        if failing["on"]:
            raise ConnectionError("down")
        return "ok"

    protected()
    before = _evalsha_calls(server)
    for _ in range(1000):
        protected()
    assert _evalsha_calls(server) - before <= 1
    failing["on"] = True
    with pytest.raises(ConnectionError):
        protected()  # one script: the failure that opens it
    before = _evalsha_calls(server)
    for _ in range(1000):
        with pytest.raises(CircuitOpenError):
            protected()
    assert _evalsha_calls(server) - before <= 1
    client = server.client()
    key = f"callpyback:{namespace}:breaker:budget"
    assert 0 < client.pttl(key) <= 86400 * 1000
    assert sorted(k.decode() for k in client.keys(f"callpyback:{namespace}:*")) == [key]


def test_window_keys_are_hashed_and_expire(server: RedisServer, namespace: str) -> None:
    """A window key never contains the caller's value (an account number) and expires with
    its window."""
    _backend(server, namespace)
    window = state.window("transfers", 2, 5.0)
    assert window.hit("IBAN DE44 5001 0517 5407 3249 31", 0.0).source == "shared"
    (key,) = server.client().keys(f"callpyback:{namespace}:window:*")
    assert b"DE44" not in key and key.startswith(
        f"callpyback:{namespace}:window:transfers:".encode()
    )
    assert 5000 < server.client().pttl(key) <= 6000


def test_flushall_and_script_flush_mid_run(server: RedisServer, namespace: str) -> None:
    """pybreaker#28: keys vanishing (FLUSHALL, eviction) reinitialise the breaker, and a
    flushed script cache is reloaded; no call ever raises for it."""
    _backend(server, namespace, poll_interval=0.1)
    handler = CircuitBreakerHandler("flushed", failure_threshold=2, recovery_timeout=60)

    @cpb.CallPyBack(error_handlers=[handler])
    def protected() -> str:
        raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            protected()
    assert handler.breaker._state is BreakerState.OPEN
    server.client().flushall()
    server.client().script_flush()
    _wait(lambda: handler.breaker._state is BreakerState.CLOSED)  # the next poll saw it go
    with pytest.raises(ConnectionError):
        protected()
    raw = server.client().hgetall(f"callpyback:{namespace}:breaker:flushed")
    assert raw[b"s"] == b"closed" and raw[b"f"] == b"1"


def test_breakers_and_namespaces_never_interfere(server: RedisServer, namespace: str) -> None:
    """pybreaker#88: two breakers in one namespace, and one name in two namespaces, are
    separate states."""
    _backend(server, namespace)
    a = CircuitBreakerHandler("alpha", failure_threshold=1)
    b = CircuitBreakerHandler("beta", failure_threshold=1)
    a.breaker.open()
    assert a.breaker._state is BreakerState.OPEN and b.breaker._state is BreakerState.CLOSED
    other = RedisBackend(server.url, namespace=f"{namespace}-other", timeout=1.0)
    state.use(other).close()
    assert a.breaker._state is BreakerState.CLOSED  # the other namespace knows nothing of it
    assert server.client().hget(f"callpyback:{namespace}:breaker:alpha", "s") == b"open"


def test_use_rebinds_live_breakers_and_windows_by_pattern(
    server: RedisServer, namespace: str
) -> None:
    """Selecting a backend re-binds what was built before; patterns, exclude and shared=
    choose which; moving back to memory keeps the last state seen, locally."""
    payments = CircuitBreakerHandler("payments-api", failure_threshold=1)
    cache = CircuitBreakerHandler("cache", failure_threshold=1)
    pinned = CircuitBreakerHandler("payments-local", failure_threshold=1, shared=False)
    forced = CircuitBreakerHandler("search", failure_threshold=1, shared=True)
    velocity = state.window("finance.velocity", 3, 60)
    backend = RedisBackend(server.url, namespace=namespace, timeout=1.0)
    state.use(backend, breakers=["payments-*"], exclude=["*-local"], windows=["finance.*"])
    assert payments.breaker.backend is backend and forced.breaker.backend is backend
    assert cache.breaker.backend is state.MEMORY and pinned.breaker.backend is state.MEMORY
    assert velocity.backend is backend and velocity.hit("A", 0.0).source == "shared"
    payments.breaker.open()
    state.use(state.MEMORY)
    assert payments.breaker.backend is state.MEMORY
    assert payments.breaker._state is BreakerState.OPEN  # carried over as local state
    assert velocity.hit("A", 0.0).source == "memory"
    backend.close()


def test_no_thread_before_a_breaker_binds_and_none_at_import() -> None:
    """Importing the plugin and building a backend start nothing; binding starts the
    listener and the worker."""
    code = textwrap.dedent("""
        import threading, callpyback_redis
        from callpyback import state
        names = lambda: sorted(t.name for t in threading.enumerate() if 'redis' in t.name)
        backend = callpyback_redis.RedisBackend('redis://127.0.0.1:1/0', timeout=0.01)
        before = names()
        state.use(backend)
        middle = names()
        from callpyback.handlers import CircuitBreakerHandler
        CircuitBreakerHandler('x')
        print(before, middle, names())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("] [") == [
        "[",
        "",
        "'callpyback-redis-listener', 'callpyback-redis-worker']\n",
    ]


FORK_CHILD = """
import json, os, sys, time
import callpyback as cpb
from callpyback import state
from callpyback.handlers import CircuitBreakerHandler
from callpyback_redis import RedisBackend

url, namespace = sys.argv[1], sys.argv[2]
backend = RedisBackend(url, namespace=namespace, timeout=1.0, poll_interval=5.0)
state.use(backend)
handler = CircuitBreakerHandler("forked", failure_threshold=1, recovery_timeout=60)
handler.breaker.close()  # the parent has talked to Redis: a pooled connection exists
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    # The child: its own connections and threads; it learns of the parent's change.
    os.close(read)
    deadline = time.monotonic() + 5
    while handler.breaker._state.value != "open" and time.monotonic() < deadline:
        time.sleep(0.005)
    seen = handler.breaker._state.value
    handler.breaker.close()  # its own write, on its own connection
    os.write(write, json.dumps([seen, os.getpid() == backend._runtime().pid]).encode())
    os._exit(0)
os.close(write)
time.sleep(0.3)  # the child's listener subscribes
handler.breaker.open()  # published: the child must hear it
_, status = os.waitpid(pid, 0)
child = json.loads(os.read(read, 1000))
time.sleep(0.2)
# The parent's connection still works (the child never shut it down).
print(json.dumps({"child": child, "status": status, "parent": handler.breaker.stats.state.value,
                  "live": backend.live, "redis": backend._runtime().client.ping()}))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_gives_the_child_its_own_connections_and_listener(
    server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    script = tmp_path / "fork_child.py"
    script.write_text(FORK_CHILD)
    out = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", str(script), server.url, namespace],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["child"] == ["open", True] and result["status"] == 0
    assert result["live"] is True and result["redis"] is True
    assert result["parent"] == "closed"  # the child's close() reached the parent too


def test_threads_hammering_one_breaker_count_every_failure(
    server: RedisServer, namespace: str
) -> None:
    """8 threads, 25 failures each, threshold 200: the shared count is exactly 200 and the
    breaker opens on the last one (atomic scripts, no lost update: pybreaker#24)."""
    _backend(server, namespace)
    handler = CircuitBreakerHandler("hammered", failure_threshold=200, recovery_timeout=60)

    @cpb.CallPyBack(error_handlers=[handler])
    def protected() -> None:
        raise ConnectionError("down")

    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(25):
            with contextlib.suppress(ConnectionError, CircuitOpenError):
                protected()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    raw = server.client().hgetall(f"callpyback:{namespace}:breaker:hammered")
    assert raw[b"s"] == b"open" and raw[b"f"] == b"200"
    assert handler.stats.failures == 200


def test_backend_options_are_checked() -> None:
    with pytest.raises(ConfigurationError, match=r"timeout=...\) must be at most 1"):
        RedisBackend("redis://localhost", timeout=5)
    with pytest.raises(ConfigurationError, match="must start with redis://"):
        RedisBackend("http://localhost:6379")
    with pytest.raises(ConfigurationError, match="namespace"):
        RedisBackend("redis://localhost", namespace="my service")
    with pytest.raises(ConfigurationError, match=r"on_outage=...\) must be one of"):
        RedisBackend("redis://localhost", on_outage="open")
    with pytest.raises(ConfigurationError, match="not both"):
        RedisBackend("redis://localhost", client_factory=lambda: None)
    with pytest.raises(ConfigurationError, match="not a state backend"):
        state.use(object())


def test_password_never_reaches_the_log() -> None:
    backend = RedisBackend("redis://user:s3cret@127.0.0.1:1/0", timeout=0.01)
    assert backend._where() == "redis://127.0.0.1:1/0"
