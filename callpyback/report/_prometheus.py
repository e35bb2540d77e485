"""Prometheus on ``prometheus_client``: a collector over the metrics observers, a server for
``/metrics``, and a writer for prometheus_client's multiprocess mode.

Names follow the Prometheus conventions (base units, ``_total`` counters):

- ``callpyback_calls_total{target,outcome}``: completed calls by outcome (success, failure,
  recovered, cancelled, interrupted);
- ``callpyback_retries_total{target}``: extra attempts made by retrying error handlers;
- ``callpyback_calls_in_flight{target}`` and ``callpyback_calls_in_flight_max{target}``;
- ``callpyback_call_duration_seconds{target}``: a histogram (``_bucket{le}``, ``_sum``,
  ``_count``) whose fixed buckets are filled from the observer's own streaming histogram.

Nothing is added to the call path: every number is read from the observers when scraped.
"""

from __future__ import annotations

import atexit
import errno
import math
import os
import socket
import sys
import threading
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from .._histogram import Histogram
from ..errors import CallPyBackError, ConfigurationError
from ._collect import MetricsEntry, metrics_entries, metrics_observers
from ._deps import require

__all__ = [
    "DEFAULT_BUCKETS",
    "CallPyBackCollector",
    "MetricsPortError",
    "MetricsServer",
    "MultiProcessWriter",
    "le_counts",
    "serve",
]

#: Upper bounds (seconds) of the exported histogram: 10 us to 10 s in 1-2.5-5 steps.  Function
#: calls are often far below Prometheus' default 5 ms first bucket.
DEFAULT_BUCKETS: Tuple[float, ...] = (
    *(m * 10.0**e for e in range(-5, 1) for m in (1.0, 2.5, 5.0)),
    10.0,
)

#: prometheus_client's multiprocess files are refreshed this often (seconds) by each process.
SYNC_INTERVAL = 1.0

#: Set by ``callpyback run`` for its children in multiprocess mode: they write their own state.
MULTIPROCESS_ENV = "CALLPYBACK_METRICS_MULTIPROCESS"

_OUTCOMES = (
    ("success", "successes"),
    ("failure", "failures"),
    ("recovered", "recoveries"),
    ("cancelled", "cancelled"),
    ("interrupted", "interrupted"),
)
_HELP = {
    "calls": "Completed calls by outcome.",
    "retries": "Extra attempts made by retrying error handlers.",
    "calls_in_flight": "Calls running now.",
    "calls_in_flight_max": "Most calls seen running at once.",
    "call_duration_seconds": "Call duration in seconds.",
}


class MetricsPortError(CallPyBackError, OSError):
    """The ``/metrics`` endpoint could not be served at the address asked for."""


def check_prefix(prefix: str) -> str:
    if (
        not isinstance(prefix, str)
        or not prefix
        or not prefix.replace("_", "a").isalnum()
        or not prefix.isascii()
        or prefix[0].isdigit()
    ):
        raise ConfigurationError(
            f"prefix must be a Prometheus metric name ([a-zA-Z_][a-zA-Z0-9_]*), got {prefix!r}"
        )
    return prefix


def check_buckets(buckets: Iterable[float]) -> Tuple[float, ...]:
    values = tuple(buckets)
    ok = bool(values) and all(
        not isinstance(b, bool) and isinstance(b, (int, float)) and math.isfinite(b) and b > 0
        for b in values
    )
    if not ok or any(a >= b for a, b in zip(values, values[1:])):
        raise ConfigurationError(
            f"histogram buckets must be increasing positive numbers of seconds, got {values!r}; "
            "for example [0.001, 0.01, 0.1, 1] (+Inf is always added)"
        )
    return tuple(float(b) for b in values)


def le_counts(histogram: Histogram, bounds: Sequence[float]) -> List[int]:
    """Calls per exported bucket (not cumulative; the last is above every bound).

    Each of the histogram's own buckets (about 1 % wide) goes where the value it stands for
    falls, so a call within 1 % of a bound may be counted on either side of it.
    """
    counts = [0] * (len(bounds) + 1)
    gamma = histogram.gamma
    i, last = 0, len(bounds)
    for upper, n in histogram.buckets():  # ascending
        value = 0.0 if upper <= 0 else 2 * upper / (gamma + 1)
        while i < last and value > bounds[i]:
            i += 1
        counts[i] += n
    return counts


def _go(value: float) -> str:
    from prometheus_client.utils import floatToGoString

    return floatToGoString(value)  # type: ignore[no-untyped-call,no-any-return]


class CallPyBackCollector:
    """A prometheus_client collector over metrics observers.

    ``observers``: a callable returning the observers to read at each scrape (default: every
    metrics observer in the process, found anew each time, so pipelines built later appear).
    """

    def __init__(
        self,
        observers: Optional[Callable[[], Iterable[Any]]] = None,
        *,
        prefix: str = "callpyback",
        buckets: Iterable[float] = DEFAULT_BUCKETS,
    ) -> None:
        require("prometheus_client", "Prometheus export")
        self.prefix = check_prefix(prefix)
        self.buckets = check_buckets(buckets)
        self._observers = observers if observers is not None else metrics_observers
        self._labels = [_go(b) for b in self.buckets] + ["+Inf"]

    def describe(self) -> List[Any]:
        # Nothing to describe up front: registering must not read every observer.
        """Nothing up front: registering must not read every observer."""
        return []

    def collect(self) -> Iterator[Any]:
        """The metric families of every metrics observer, read now (at each scrape)."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        p = self.prefix
        entries = metrics_entries(list(self._observers()))
        calls = CounterMetricFamily(f"{p}_calls", _HELP["calls"], labels=["target", "outcome"])
        retries = CounterMetricFamily(f"{p}_retries", _HELP["retries"], labels=["target"])
        in_flight = GaugeMetricFamily(
            f"{p}_calls_in_flight", _HELP["calls_in_flight"], labels=["target"]
        )
        peak = GaugeMetricFamily(
            f"{p}_calls_in_flight_max", _HELP["calls_in_flight_max"], labels=["target"]
        )
        durations = HistogramMetricFamily(
            f"{p}_call_duration_seconds", _HELP["call_duration_seconds"], labels=["target"]
        )
        labels = self._labels
        for target, entry in sorted(entries.items()):
            c = entry.counts
            for outcome, key in _OUTCOMES:
                calls.add_metric([target, outcome], c.get(key, 0))
            retries.add_metric([target], c.get("retries", 0))
            in_flight.add_metric([target], c.get("in_flight", 0))
            peak.add_metric([target], c.get("max_in_flight", 0))
            cumulative, buckets = 0, []
            for label, n in zip(labels, le_counts(entry.histogram, self.buckets)):
                cumulative += n
                buckets.append((label, cumulative))
            durations.add_metric([target], buckets, entry.histogram.sum)
        yield from (calls, retries, in_flight, peak, durations)


def exposition(collector: CallPyBackCollector) -> str:
    """The text exposition (format 0.0.4) of one collector, as prometheus_client writes it."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry).decode("utf-8")


# --- multiprocess mode ------------------------------------------------------------------------


class MultiProcessWriter:
    """Writes this process's metrics into prometheus_client's multiprocess files.

    Every :data:`SYNC_INTERVAL` seconds (and at exit, and before each scrape served by this
    process) the observers' totals are *set* into this process's ``*_<pid>.db`` files, which
    ``MultiProcessCollector`` sums over every process.  A forked child inherits its parent's
    observers with their counts: it writes only what it did itself (its totals less those at
    the fork).
    """

    def __init__(
        self,
        path: str,
        *,
        prefix: str = "callpyback",
        buckets: Iterable[float] = DEFAULT_BUCKETS,
        interval: float = SYNC_INTERVAL,
    ) -> None:
        values = require("prometheus_client", "Prometheus multiprocess export").values
        self.path = path
        self.prefix = check_prefix(prefix)
        self.buckets = check_buckets(buckets)
        self.interval = interval
        # Share prometheus_client's own value class when it is already in multiprocess mode:
        # two writers of one counter_<pid>.db would corrupt it.
        value_class = values.ValueClass
        if not getattr(value_class, "_multiprocess", False):
            value_class = values.MultiProcessValue()
        self._value_class = value_class
        self._values: Dict[Tuple[Any, ...], Any] = {}
        self._baseline: Dict[Tuple[Any, ...], float] = {}
        self._at_fork: Dict[Tuple[Any, ...], float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._labels = [_go(b) for b in self.buckets] + ["+Inf"]
        self.pid = os.getpid()
        self.errors = 0

    # --- what is written --------------------------------------------------------------------
    def _samples(self) -> Dict[Tuple[Any, ...], float]:
        """(type, metric, sample, labelnames, labelvalues, mode) -> value, for every target."""
        out: Dict[Tuple[Any, ...], float] = {}
        entries: Dict[str, MetricsEntry] = metrics_entries()
        for target, entry in entries.items():
            c = entry.counts
            for outcome, key in _OUTCOMES:
                k = ("counter", "calls", "_total", ("target", "outcome"), (target, outcome), "")
                out[k] = float(c.get(key, 0))
            out[("counter", "retries", "_total", ("target",), (target,), "")] = float(
                c.get("retries", 0)
            )
            out[("gauge", "calls_in_flight", "", ("target",), (target,), "livesum")] = float(
                c.get("in_flight", 0)
            )
            out[("gauge", "calls_in_flight_max", "", ("target",), (target,), "livemax")] = float(
                c.get("max_in_flight", 0)
            )
            hist = entry.histogram
            for label, n in zip(self._labels, le_counts(hist, self.buckets)):
                k = (
                    "histogram",
                    "call_duration_seconds",
                    "_bucket",
                    ("target", "le"),
                    (target, label),
                    "",
                )
                out[k] = float(n)
            out[("histogram", "call_duration_seconds", "_sum", ("target",), (target,), "")] = (
                hist.sum
            )
        return out

    def _value(self, key: Tuple[Any, ...]) -> Any:
        value = self._values.get(key)
        if value is None:
            typ, short, suffix, labelnames, labelvalues, mode = key
            metric = f"{self.prefix}_{short}"
            kwargs = {"multiprocess_mode": mode} if mode else {}
            value = self._values[key] = self._value_class(
                typ, metric, metric + suffix, labelnames, labelvalues, _HELP[short], **kwargs
            )
        return value

    def sync(self) -> None:
        """Write this process's current totals (never raises: a failed sync is counted)."""
        from ._runtime import critical

        with critical(), self._lock:
            try:
                samples = self._samples()
                baseline = self._baseline
                for key, value in samples.items():
                    if key[5] != "livemax":
                        value -= baseline.get(key, 0.0)
                    self._value(key).set(value)
            except Exception:
                self.errors += 1
                if "pytest" in sys.modules:
                    raise

    # --- the thread, exit and fork ----------------------------------------------------------
    def start(self) -> MultiProcessWriter:
        """Sync now, then every interval on a daemon thread; again at exit and after fork."""
        self.sync()
        self._start_thread()
        atexit.register(self._final)
        os.register_at_fork(
            before=self._before_fork,
            after_in_parent=self._after_fork_parent,
            after_in_child=self._after_fork_child,
        )
        return self

    def _start_thread(self) -> None:
        self._stop = threading.Event()
        thread = threading.Thread(target=self._loop, name="callpyback-metrics-sync", daemon=True)
        self._thread = thread
        thread.start()

    def _loop(self) -> None:
        stop = self._stop
        while not stop.wait(self.interval):
            self.sync()

    def stop(self) -> None:
        """Stop the writer thread."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._thread = None

    def _final(self) -> None:
        from ._runtime import critical

        with critical():  # a SIGTERM must not find the main thread inside Event.set()
            self._stop.set()
            self.sync()

    def _before_fork(self) -> None:
        # Hold the lock across the fork, so that no sync is half-written into the files (and
        # prometheus_client's own lock is free); remember the totals the child will inherit.
        self._lock.acquire()
        try:
            self._at_fork = self._samples()
        except Exception:
            self._at_fork = {}

    def _after_fork_parent(self) -> None:
        self._at_fork = {}
        self._lock.release()

    def _after_fork_child(self) -> None:
        self._lock = threading.Lock()
        self._baseline, self._at_fork = self._at_fork, {}
        self._values = {}  # prometheus_client reopens its files for the new pid on first use
        self.pid = os.getpid()
        self._start_thread()
        # multiprocessing's forked children end with os._exit (no atexit): its finalizers,
        # which it clears after the fork and then runs at the child's end, get the last sync.
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None:
            mp_util.register_after_fork(self, _register_mp_finalizer)


def _register_mp_finalizer(writer: MultiProcessWriter) -> None:
    import multiprocessing.util as mp_util

    mp_util.Finalize(writer, writer._final, exitpriority=10)


def _multiprocess_collector(path: str) -> Any:
    """prometheus_client's ``MultiProcessCollector``, reading only whole files: a process
    killed while creating its file leaves it empty, and one such file would fail every scrape."""
    import glob

    from prometheus_client.multiprocess import MultiProcessCollector

    class WholeFiles(MultiProcessCollector):
        def collect(self) -> Any:
            files = []
            for name in glob.glob(os.path.join(path, "*.db")):
                try:
                    if os.path.getsize(name) >= 8:
                        files.append(name)
                except OSError:  # removed meanwhile (mark_process_dead)
                    continue
            return self.merge(files, accumulate=True)  # type: ignore[no-untyped-call]

    return WholeFiles


class _SyncFirst:
    """Registered before ``MultiProcessCollector``: the serving process writes its own state
    just before the files are read, so a scrape sees it fresh."""

    def __init__(self, writer: MultiProcessWriter) -> None:
        self.writer = writer

    def describe(self) -> List[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        self.writer.sync()
        return iter(())


# --- serving /metrics -------------------------------------------------------------------------


class MetricsServer:
    """A running ``/metrics`` endpoint (prometheus_client's own HTTP server, daemon thread)."""

    def __init__(self, httpd: Any, thread: Any, addr: str, unregister: Callable[[], None]) -> None:
        self._httpd = httpd
        self._thread = thread
        self.addr = addr
        self.port: int = httpd.server_address[1]
        self._unregister = unregister
        self.writer: Optional[MultiProcessWriter] = None

    @property
    def url(self) -> str:
        """The ``/metrics`` URL the server answers on."""
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving (and stop this process's multiprocess writer, after a last sync)."""
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.writer is not None:
            self.writer.stop()
            self.writer.sync()
        self._unregister()


def serve(
    port: int = 9464,
    addr: str = "127.0.0.1",
    *,
    buckets: Iterable[float] = DEFAULT_BUCKETS,
    prefix: str = "callpyback",
    multiprocess_dir: Optional[str] = None,
) -> MetricsServer:
    """Serve ``/metrics`` on ``addr:port`` (port 0: any free port; see ``.port``).

    Single-process: the collector is added to prometheus_client's default registry (so the
    program's own prometheus_client metrics and the process collector are served too).
    ``multiprocess_dir``: serve what every process wrote there (prometheus_client's
    ``MultiProcessCollector``), this process included.
    """
    prometheus_client = require("prometheus_client", "callpyback run --metrics-port")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigurationError(f"the metrics port must be 0 to 65535, got {port!r}")
    buckets = check_buckets(buckets)
    writer: Optional[MultiProcessWriter] = None
    if multiprocess_dir is not None:
        from prometheus_client import CollectorRegistry

        if not os.path.isdir(multiprocess_dir):
            raise ConfigurationError(
                f"the multiprocess directory {multiprocess_dir!r} does not exist; create it "
                "(empty) before starting the program"
            )
        writer = MultiProcessWriter(multiprocess_dir, prefix=prefix, buckets=buckets)
        registry = CollectorRegistry()
        registry.register(_SyncFirst(writer))
        _multiprocess_collector(multiprocess_dir)(registry, path=multiprocess_dir)

        def unregister() -> None:
            pass

    else:
        registry = prometheus_client.REGISTRY
        collector = CallPyBackCollector(prefix=prefix, buckets=buckets)
        registry.register(collector)

        def unregister() -> None:
            registry.unregister(collector)

    try:
        started = prometheus_client.start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        unregister()
        raise MetricsPortError(_bind_error(exc, addr, port)) from exc
    except BaseException:
        unregister()
        raise
    if not isinstance(started, tuple):  # prometheus_client < 0.17 returned nothing
        raise CallPyBackError("callpyback needs prometheus_client >= 0.17 to serve /metrics")
    httpd, thread = started
    server = MetricsServer(httpd, thread, addr, unregister)
    if writer is not None:
        server.writer = writer.start()
    return server


def _bind_error(exc: OSError, addr: str, port: int) -> str:
    where = f"{addr}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot serve /metrics on {where}: the address is already in use (another "
            "process listens there); choose another port (0 picks a free one)"
        )
    if exc.errno == errno.EACCES:
        return (
            f"cannot serve /metrics on {where}: permission denied (ports below 1024 need "
            "privileges); choose a port of 1024 or more"
        )
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return (
            f"cannot serve /metrics on {where}: {addr!r} is not an address of this machine "
            f"({exc}); use 127.0.0.1 (the default) or an address of one of its interfaces"
        )
    return f"cannot serve /metrics on {where}: {exc}"
