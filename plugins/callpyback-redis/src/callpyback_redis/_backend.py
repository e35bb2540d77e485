"""The Redis state backend: shared breakers and windows, a cached view, and outages survived.

The call path never waits on Redis for a closed breaker: the breaker admits from its own cached
view (:mod:`callpyback.handlers._breaker`), which this backend keeps fresh in two ways, both on
background threads started when the first breaker or window binds (never at import):

* the *listener* subscribes to the namespace's channel, on which every script publishes the
  snapshot it left (a change elsewhere arrives in about a millisecond on loopback);
* the *worker* polls every bound breaker's state once per ``poll_interval`` (one pipelined round
  trip: the bound if a message was lost), folds closed-state successes into the store, and,
  during an outage, probes Redis every ``retry_interval`` until it answers.

Only a failure, a half-open admission, a trial's outcome and manual control make an inline
call, each a single script bounded by ``timeout`` (no retries).  A call that cannot reach
Redis marks the backend *degraded*: one warning on the ``callpyback.state`` logger, the outage
counted in :attr:`RedisBackend.metrics`, and every bound breaker told ``shared_lost`` (it goes on
from its cached view as local state, or as ``on_outage`` says).  No further inline call is tried
until the worker's probe succeeds; then every breaker gets the store's state (it wins) and the
recovery is logged.

After ``fork()`` the child gets fresh connections, locks and threads (redis-py's pool also
checks the pid, and never shuts down a socket it does not own).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import logging
import os
import random
import threading
import time
import weakref
from hashlib import blake2b
from typing import Any, Callable, Dict, Hashable, List, Optional, Tuple

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from callpyback.errors import ConfigurationError
from callpyback.state import (
    OUTAGE_POLICIES,
    BreakerSnapshot,
    Hit,
    MemoryWindow,
    StateUnavailableError,
)

from . import _scripts

__all__ = ["RedisBackend"]

log = logging.getLogger("callpyback.state")

_NAMESPACE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")


def _check_number(value: Any, key: str, *, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > low:
        raise ConfigurationError(
            f"RedisBackend({key}=...) must be a number > {low:g}, got {value!r}"
        )
    if high is not None and value > high:
        raise ConfigurationError(
            f"RedisBackend({key}=...) must be at most {high:g}, got {value!r}"
            + (" (a state call must stay off the call path's budget)" if key == "timeout" else "")
        )
    return float(value)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _snapshot(reply: List[Any]) -> Tuple[BreakerSnapshot, Optional[str]]:
    state, g, v, f, calls, left, trials, reason, lease = (_text(x) for x in reply)
    snapshot = BreakerSnapshot(
        state, int(g), int(v), int(f), int(calls), int(left) / 1000.0, int(trials), reason
    )
    return snapshot, (lease or None)


class _Runtime:
    """One process's connections and threads (rebuilt in a forked child)."""

    def __init__(self, backend: RedisBackend) -> None:
        self.pid = os.getpid()
        self.client = backend._make_client()
        self.breaker_script = self.client.register_script(_scripts.BREAKER)
        self.window_script = self.client.register_script(_scripts.WINDOW)
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.uid = os.urandom(6).hex()
        self.members = itertools.count()
        self.threads: List[threading.Thread] = []

    def start(self, backend: RedisBackend) -> None:
        ref = weakref.ref(backend)
        for target, name in ((_listen, "listener"), (_work, "worker")):
            thread = threading.Thread(
                target=target, args=(ref, self), name=f"callpyback-redis-{name}", daemon=True
            )
            self.threads.append(thread)
            thread.start()

    def close(self, owned: bool = True) -> None:
        self.stop.set()
        self.wake.set()
        if owned:
            with contextlib.suppress(Exception):  # closing is best effort
                self.client.close()


class RedisBreakerState:
    """One breaker's state in Redis (a :class:`callpyback.state.SharedBreakerState`)."""

    def __init__(self, backend: RedisBackend, sink: Any) -> None:
        self.backend = backend
        self.name: str = sink.name
        self.sink = weakref.ref(sink)
        self.on_outage = backend.on_outage
        self.poll_interval = backend.poll_interval
        base = f"{backend.prefix}:breaker:{sink.name}"
        self.keys = (base, f"{base}:leases")
        p = sink.policy
        self.plain = p.failure_rate is None
        self.policy_args = (
            backend.channel,
            p.failure_threshold or 0,
            p.failure_rate or 0,
            p.window_size,
            p.minimum_calls,
            int(p.recovery_timeout * 1000),
            p.half_open_max_calls,
            p.success_threshold,
            int(backend.lease_ttl * 1000),
            int(max(backend.key_ttl, p.recovery_timeout + backend.lease_ttl) * 1000),
        )
        # Closed-state successes not yet told to the store, and their generation (sent in
        # batches: with the next failure, or by the worker).
        self._pending = 0
        self._pending_gen = 0
        self._pending_lock = threading.Lock()
        self._send = threading.Lock()  # orders a batch of successes before a failure

    @property
    def live(self) -> bool:
        return self.backend.live

    def _run(self, op: str, *extra: Any) -> List[Any]:
        return self.backend._script(self.keys, (op, self.name, *self.policy_args, *extra))

    def _take_pending(self) -> Tuple[int, int]:
        with self._pending_lock:
            pending, self._pending = self._pending, 0
            return pending, self._pending_gen

    def _give_back(self, pending: int, generation: int) -> None:
        # Not delivered (the store is unreachable): sent with the next batch, if still current.
        with self._pending_lock:
            if generation == self._pending_gen:
                self._pending += pending

    def has_pending(self) -> bool:
        return self._pending > 0

    def admit(self) -> Tuple[BreakerSnapshot, Optional[str]]:
        return _snapshot(self._run("admit"))

    def record(self, failed: bool, lease: Optional[str], reason: str) -> BreakerSnapshot:
        with self._send:
            pending, generation = (0, 0) if lease else self._take_pending()
            try:
                reply = self._run(
                    "record", int(failed), lease or "", reason[:300], pending, generation
                )
            except StateUnavailableError:
                self._give_back(pending, generation)
                raise
        return _snapshot(reply)[0]

    def count_success(self, generation: int) -> None:
        with self._pending_lock:
            if generation != self._pending_gen:
                self._pending_gen, self._pending = generation, 0
            self._pending += 1
        if self.plain:
            # The first success after failures: the store's count must drop to 0 before a
            # failure elsewhere adds to it, so send it now rather than at the next poll.
            self.backend._wake()

    def flush(self) -> Optional[BreakerSnapshot]:
        """Send the pending successes (the worker, off the call path)."""
        with self._send:
            reply = self._send_pending()
        return None if reply is None else _snapshot(reply)[0]

    def _send_pending(self) -> Optional[List[Any]]:
        """The pending successes to the store (under ``_send``); given back if it is down."""
        pending, generation = self._take_pending()
        if not pending:
            return None
        try:
            return self._run("flush", pending, generation)
        except StateUnavailableError:
            self._give_back(pending, generation)
            raise

    def release(self, lease: str) -> BreakerSnapshot:
        return _snapshot(self._run("release", lease))[0]

    def force(self, state: str, reason: str) -> BreakerSnapshot:
        # Successes still pending reset the failure streak before the force: sent first, or
        # a breaker forced open would report the streak they already ended.
        with self._send:
            self._send_pending()
            return _snapshot(self._run("force", state, reason))[0]

    def reset(self) -> BreakerSnapshot:
        return _snapshot(self._run("reset"))[0]

    def read(self) -> BreakerSnapshot:
        return _snapshot(self._run("read"))[0]

    def close(self) -> None:
        self.backend._unbind(self)

    def __repr__(self) -> str:
        return f"<RedisBreakerState {self.keys[0]!r} live={self.live}>"


class RedisWindow:
    """A sliding window in Redis: one sorted set per key (an account), scored by server time.

    Keys are hashed (``blake2b`` of the key's ``repr``), so user input never becomes a Redis
    key.  While Redis is unreachable, ``windows_on_outage`` decides: ``"local"`` counts in a
    per-process window (at ``local_limit``), ``"reject"`` answers over the limit and
    ``"allow"`` under it, both marked ``"unchecked"``.
    """

    def __init__(
        self, backend: RedisBackend, name: str, limit: int, seconds: float, max_keys: int
    ) -> None:
        self.backend = backend
        self.name = name
        self.limit = limit
        self.seconds = seconds
        self.prefix = f"{backend.prefix}:window:{name}:"
        self.on_outage = backend.windows_on_outage
        self._args = (int(seconds * 1000), limit)
        self._ttl = int(seconds * 1000) + 1000
        self.local = MemoryWindow(backend.local_limit or limit, seconds, max_keys)
        self.local.source = "local"

    def hit(self, key: Hashable, now: float, record_over: bool) -> Hit:
        backend = self.backend
        if backend.live:
            digest = blake2b(repr(key).encode("utf-8", "backslashreplace"), digest_size=12)
            try:
                count, over = backend._window(
                    self.prefix + digest.hexdigest(),
                    (*self._args, int(record_over), self._ttl),
                )
                return Hit(count, over, "shared")
            except StateUnavailableError:
                pass
        if self.on_outage == "local":
            return self.local.hit(key, now, record_over)
        return Hit(0, self.on_outage == "reject", "unchecked")

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<RedisWindow {self.prefix!r} {self.limit}/{self.seconds:g}s>"


class RedisBackend:
    """Breakers and windows shared through a Redis server (a ``callpyback.state.StateBackend``).

    ``url`` (``redis://host:port/db``, ``rediss://`` or ``unix://``) or ``client_factory`` (a
    callable returning a configured ``redis.Redis``; it is called again in a forked child).
    ``namespace`` prefixes every key and the channel, so services never share state by accident.
    ``timeout`` bounds each Redis call (seconds; the same for connecting; no retries).
    ``poll_interval``: the bound on learning of a change made elsewhere if its message is lost.
    ``retry_interval``: how often an unreachable Redis is probed (with +-20 % jitter).
    ``lease_ttl``: a half-open trial lease not returned (its process died) expires after this.
    ``key_ttl``: keys untouched this long expire.  ``on_outage`` (breakers) and
    ``windows_on_outage``: ``"local"``, ``"reject"`` or ``"allow"`` (see
    :data:`callpyback.state.OutagePolicy`); ``local_limit``: a window's per-process limit
    during an outage (default: the window's own).
    """

    name = "redis"

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str = "callpyback",
        timeout: float = 0.05,
        poll_interval: float = 1.0,
        retry_interval: float = 1.0,
        lease_ttl: float = 30.0,
        key_ttl: float = 86400.0,
        on_outage: str = "local",
        windows_on_outage: str = "local",
        local_limit: int | None = None,
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        if (url is None) == (client_factory is None):
            raise ConfigurationError(
                "RedisBackend: pass url='redis://host:6379/0' or client_factory=..., not "
                + ("both" if url is not None else "neither")
            )
        if url is not None and (
            not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://"))
        ):
            raise ConfigurationError(
                f"RedisBackend(url=...) must start with redis://, rediss:// or unix://, got {url!r}"
            )
        if (
            not isinstance(namespace, str)
            or not namespace
            or not set(namespace) <= _NAMESPACE_CHARS
        ):
            raise ConfigurationError(
                "RedisBackend(namespace=...) must be letters, digits and '_.:-' (it prefixes "
                f"every key), got {namespace!r}"
            )
        for key, value in (("on_outage", on_outage), ("windows_on_outage", windows_on_outage)):
            if value not in OUTAGE_POLICIES:
                raise ConfigurationError(
                    f"RedisBackend({key}=...) must be one of {list(OUTAGE_POLICIES)}, got {value!r}"
                )
        if local_limit is not None and (
            isinstance(local_limit, bool) or not isinstance(local_limit, int) or local_limit < 1
        ):
            raise ConfigurationError(
                f"RedisBackend(local_limit=...) must be an int >= 1, got {local_limit!r}"
            )
        self.url = url
        self.client_factory = client_factory
        self.namespace = namespace
        self.timeout = _check_number(timeout, "timeout", low=0, high=1.0)
        self.poll_interval = _check_number(poll_interval, "poll_interval", low=0)
        self.retry_interval = _check_number(retry_interval, "retry_interval", low=0)
        self.lease_ttl = _check_number(lease_ttl, "lease_ttl", low=0)
        self.key_ttl = _check_number(key_ttl, "key_ttl", low=0)
        self.on_outage = on_outage
        self.windows_on_outage = windows_on_outage
        self.local_limit = local_limit
        self.prefix = f"callpyback:{namespace}"
        self.channel = f"{self.prefix}:breakers"
        #: False while Redis is unreachable (set by the first failed call, cleared by a probe).
        self.live = True
        self._lock = threading.Lock()
        self._stores: Dict[str, RedisBreakerState] = {}
        self._rt: Optional[_Runtime] = None
        self._closed = False
        self._outage_started = 0.0
        self._metrics: Dict[str, Any] = {
            "outages": 0,
            "errors": 0,
            "degraded_seconds": 0.0,
            "last_error": None,
            "messages": 0,
            "polls": 0,
        }
        self._listeners: List[Callable[[str, Dict[str, Any]], Any]] = []
        _LIVE.add(self)

    # --- the StateBackend protocol --------------------------------------------------------
    def bind_breaker(self, sink: Any) -> RedisBreakerState:
        store = RedisBreakerState(self, sink)
        with self._lock:
            self._stores[sink.name] = store
        self._runtime()
        if self.live:
            # On failure every sink, this one included, was told shared_lost().
            with contextlib.suppress(StateUnavailableError):
                sink.shared_changed(store.read())
        else:
            sink.shared_lost()
        return store

    def window(self, name: str, limit: int, seconds: float, max_keys: int) -> RedisWindow:
        self._runtime()
        return RedisWindow(self, name, limit, seconds, max_keys)

    def close(self) -> None:
        """Stop the threads and close the connections (pending successes are sent first)."""
        with self._lock:
            self._closed = True
            rt, self._rt = self._rt, None
            stores = list(self._stores.values())
        if rt is not None and rt.pid == os.getpid():
            if self.live:
                for store in stores:
                    try:
                        store.flush()
                    except StateUnavailableError:
                        break
            rt.close()

    # --- observability --------------------------------------------------------------------
    @property
    def metrics(self) -> Dict[str, Any]:
        """``degraded`` (0/1), ``outages``, ``errors``, ``degraded_seconds`` (total),
        ``last_error``, ``messages`` (changes received), ``polls``, ``breakers`` (bound)."""
        with self._lock:
            out = dict(self._metrics)
            out["degraded"] = 0 if self.live else 1
            if not self.live:
                out["degraded_seconds"] += time.monotonic() - self._outage_started
            out["breakers"] = len(self._stores)
        return out

    def add_listener(self, listener: Callable[[str, Dict[str, Any]], Any]) -> None:
        """Call ``listener(event, details)`` on ``"degraded"`` and ``"recovered"``."""
        self._listeners.append(listener)

    def __repr__(self) -> str:
        where = self.url if self.url is not None else "client_factory"
        return (
            f"RedisBackend({where!r}, namespace={self.namespace!r}, "
            f"{'live' if self.live else 'degraded'})"
        )

    # --- connections and calls ------------------------------------------------------------
    def _make_client(self) -> Any:
        if self.client_factory is not None:
            return self.client_factory()
        # Bounded everything: redis-py's defaults are a 5 s socket timeout and 10 retries with
        # back-off, which would stall every caller during an outage.
        assert self.url is not None
        return redis.Redis.from_url(
            self.url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
            client_name=f"callpyback-{self.namespace}",
        )

    def _runtime(self) -> _Runtime:
        rt = self._rt
        if rt is not None and rt.pid == os.getpid():
            return rt
        with self._lock:
            rt = self._rt
            if rt is None or rt.pid != os.getpid():
                if self._closed:
                    raise StateUnavailableError(f"{self!r} was closed")
                rt = self._rt = _Runtime(self)
                rt.start(self)
        return rt

    def _script(self, keys: Tuple[str, str], args: Tuple[Any, ...]) -> List[Any]:
        if not self.live:
            raise StateUnavailableError(f"{self!r}: Redis is unreachable")
        try:
            rt = self._runtime()
            return rt.breaker_script(keys=keys, args=args)  # type: ignore[no-any-return]
        except (redis.RedisError, OSError) as exc:
            self._lost(exc)
            raise StateUnavailableError(f"{self!r}: {exc!r}") from exc

    def _window(self, key: str, args: Tuple[Any, ...]) -> Tuple[int, bool]:
        if not self.live:
            raise StateUnavailableError(f"{self!r}: Redis is unreachable")
        try:
            rt = self._runtime()
            member = f"{rt.uid}:{next(rt.members)}"
            count, over = rt.window_script(keys=(key,), args=(*args[:3], member, args[3]))
        except (redis.RedisError, OSError) as exc:
            self._lost(exc)
            raise StateUnavailableError(f"{self!r}: {exc!r}") from exc
        return int(count), bool(int(over))

    def _wake(self) -> None:
        rt = self._rt
        if rt is not None:
            rt.wake.set()

    def _unbind(self, store: RedisBreakerState) -> None:
        with self._lock:
            if self._stores.get(store.name) is store:
                del self._stores[store.name]

    def _bound(self) -> List[Tuple[RedisBreakerState, Any]]:
        """Live (store, sink) pairs; stores whose breaker is gone are dropped."""
        pairs = []
        with self._lock:
            for name, store in list(self._stores.items()):
                sink = store.sink()
                if sink is None:
                    del self._stores[name]
                else:
                    pairs.append((store, sink))
        return pairs

    # --- outages --------------------------------------------------------------------------
    def _lost(self, exc: BaseException) -> None:
        with self._lock:
            self._metrics["errors"] += 1
            self._metrics["last_error"] = repr(exc)
            if not self.live:
                return
            self.live = False
            self._outage_started = time.monotonic()
            self._metrics["outages"] += 1
        log.warning(
            "callpyback state: Redis at %s is unreachable (%r); circuit breakers and windows "
            "fall back to %s state (on_outage=%r, windows_on_outage=%r) until it answers "
            "again; this is the only warning for this outage",
            self._where(),
            exc,
            "per-process" if self.on_outage == "local" else "policy",
            self.on_outage,
            self.windows_on_outage,
        )
        for _, sink in self._bound():
            _safely(sink.shared_lost)
        self._notify("degraded", {"error": repr(exc)})
        self._wake()

    def _restored(self, snapshots: List[Tuple[Any, BreakerSnapshot]]) -> None:
        with self._lock:
            if self.live:
                return
            took = time.monotonic() - self._outage_started
            self._metrics["degraded_seconds"] += took
            self.live = True
        for sink, snapshot in snapshots:
            _safely(sink.shared_restored, snapshot)
        log.info(
            "callpyback state: Redis at %s answers again after %.3gs; shared state restored "
            "(%d breakers)",
            self._where(),
            took,
            len(snapshots),
        )
        self._notify("recovered", {"seconds": took})

    def _where(self) -> str:
        if self.url is None:
            return "client_factory()"
        # Never log a password: keep the scheme, host and port.
        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://{rest.rpartition('@')[2]}"

    def _notify(self, event: str, details: Dict[str, Any]) -> None:
        for listener in list(self._listeners):
            _safely(listener, event, details)

    # --- background work ------------------------------------------------------------------
    def _poll(self, rt: _Runtime) -> List[Tuple[Any, BreakerSnapshot]]:
        """Flush pending successes, then read every bound breaker in one round trip."""
        for store, sink in self._bound():
            if store.has_pending():
                snapshot = store.flush()
                if snapshot is not None:
                    _safely(sink.shared_changed, snapshot)
        return self._read_all(rt)

    def _read_all(self, rt: _Runtime) -> List[Tuple[Any, BreakerSnapshot]]:
        """Every bound breaker's state, in one pipelined round trip (also the outage probe,
        sent although the backend is marked down)."""
        pairs = self._bound()
        self._metrics["polls"] += 1
        if not pairs:
            rt.client.ping()
            return []
        pipe = rt.client.pipeline(transaction=False)
        for store, _ in pairs:
            args = ("read", store.name, *store.policy_args)
            rt.breaker_script(keys=store.keys, args=args, client=pipe)
        replies = pipe.execute()
        return [(sink, _snapshot(reply)[0]) for (_, sink), reply in zip(pairs, replies)]

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        rt, self._rt = self._rt, None
        if rt is not None:
            rt.close(owned=False)  # the parent's sockets: never shut them down here
            if self._stores and not self._closed:
                self._runtime()  # the child needs its own listener to learn of changes


def _safely(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("callpyback state: %r failed", fn)


def _listen(ref: Callable[[], Optional[RedisBackend]], rt: _Runtime) -> None:
    """Apply every published snapshot to the breaker it names (the listener thread)."""
    pubsub = None
    while not rt.stop.is_set():
        backend = ref()
        if backend is None:
            return
        if not backend.live:
            if pubsub is not None:
                _close_quietly(pubsub)
                pubsub = None
            del backend
            rt.stop.wait(0.05)
            continue
        try:
            if pubsub is None:
                pubsub = rt.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(backend.channel)
            channel = backend.channel
            del backend  # never hold the backend while blocked: let it be collected
            message = pubsub.get_message(timeout=0.5)
        except Exception as exc:
            if pubsub is not None:
                _close_quietly(pubsub)
                pubsub = None
            if rt.stop.is_set():
                return  # our own close() cut the connection
            if not isinstance(exc, (redis.RedisError, OSError)):
                log.exception("callpyback state: unexpected error reading %s", channel_of(ref))
            backend = ref()
            if backend is not None:
                backend._lost(exc)
            del backend
            continue
        if message is None or message.get("type") != "message":
            continue
        _apply_message(ref, message, channel)
    if pubsub is not None:
        _close_quietly(pubsub)


def channel_of(ref: Callable[[], Optional[RedisBackend]]) -> str:
    backend = ref()
    return backend.channel if backend is not None else "?"


def _apply_message(ref: Callable[[], Optional[RedisBackend]], message: Any, channel: str) -> None:
    backend = ref()
    if backend is None:
        return
    try:
        name, state, g, v, f, calls, left, trials, reason, _at = json.loads(message["data"])
    except (ValueError, TypeError):
        log.warning("callpyback state: ignoring a malformed message on %s", channel)
        return
    store = backend._stores.get(name)
    sink = store.sink() if store is not None else None
    if sink is None:
        return
    backend._metrics["messages"] += 1
    snapshot = BreakerSnapshot(
        state, int(g), int(v), int(f), int(calls), int(left) / 1000.0, int(trials), reason
    )
    _safely(sink.shared_changed, snapshot)


def _close_quietly(pubsub: Any) -> None:
    with contextlib.suppress(Exception):
        pubsub.close()


def _work(ref: Callable[[], Optional[RedisBackend]], rt: _Runtime) -> None:
    """Poll, flush and, during an outage, probe (the worker thread)."""
    first = True
    while not rt.stop.is_set():
        backend = ref()
        if backend is None:
            return
        if backend.live:
            wait = 0.0 if first else backend.poll_interval
        else:
            wait = backend.retry_interval * random.uniform(0.8, 1.2)
        first = False
        del backend
        rt.wake.wait(wait)
        rt.wake.clear()
        if rt.stop.is_set():
            return
        backend = ref()
        if backend is None:
            return
        try:
            if backend.live:
                for sink, snapshot in backend._poll(rt):
                    _safely(sink.shared_changed, snapshot)
            else:
                backend._restored(backend._read_all(rt))
        except Exception as exc:
            if rt.stop.is_set():
                return  # our own close() cut the connection
            if not isinstance(exc, (redis.RedisError, OSError, StateUnavailableError)):
                # Not a network error (a reply we cannot read...): no store we cannot read is
                # trusted, so it is an outage too, with the traceback logged.
                log.exception("callpyback state: unexpected error polling %s", backend._where())
            if backend.live:
                backend._lost(exc)
        del backend


#: Every backend not yet collected (for fork and exit).
_LIVE: weakref.WeakSet[RedisBackend] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for backend in list(_LIVE):
        backend._after_fork_in_child()


def _at_exit() -> None:
    for backend in list(_LIVE):
        with contextlib.suppress(Exception):
            backend.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
