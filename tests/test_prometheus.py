"""Prometheus through prometheus_client: the collector's families, the real ``/metrics``
endpoint over loopback, ``callpyback run --metrics-port``, and multiprocess aggregation with
real worker processes (multiprocessing fork and spawn, gunicorn)."""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import callpyback as cpb
from callpyback import MetricsObserver, MockTimeSource, report
from callpyback._histogram import Histogram
from callpyback.report._prometheus import DEFAULT_BUCKETS, exposition, le_counts
from tests.report_support import Program, clean_env, eventually, free_port, sample, scrape

# Servers, browsers, terminals, child suites: the newest and oldest Pythons' runs
# (.ci/matrix.sh) skip these; the main run has them all.
pytestmark = pytest.mark.slow


def families_of(text: str) -> Dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_the_collector_follows_prometheus_conventions() -> None:
    """calls_total by outcome, retries_total, in-flight gauges and a real histogram whose
    buckets, _sum and _count match a workload of known durations."""
    clock = MockTimeSource(0.0)
    metrics = MetricsObserver()

    @cpb.CallPyBack(observers=[metrics], time_source=clock)
    def op(seconds: float) -> None:
        clock.advance(seconds)
        if seconds > 1:
            raise TimeoutError(seconds)

    for s in (0.003, 0.003, 0.003, 0.02):
        op(s)
    with pytest.raises(TimeoutError):
        op(20.0)
    t = f"{__name__}:{op.__qualname__}"
    fams = families_of(exposition(report.CallPyBackCollector(lambda: [metrics])))
    assert {n: f.type for n, f in fams.items()} == {
        "callpyback_calls": "counter",
        "callpyback_retries": "counter",
        "callpyback_calls_in_flight": "gauge",
        "callpyback_calls_in_flight_max": "gauge",
        "callpyback_call_duration_seconds": "histogram",
    }
    assert sample(fams, "callpyback_calls_total", target=t, outcome="success") == 4
    assert sample(fams, "callpyback_calls_total", target=t, outcome="failure") == 1
    assert sample(fams, "callpyback_calls_total", target=t, outcome="recovered") == 0
    assert sample(fams, "callpyback_retries_total", target=t) == 0
    assert sample(fams, "callpyback_calls_in_flight", target=t) == 0
    buckets = {
        s.labels["le"]: s.value
        for s in fams["callpyback_call_duration_seconds"].samples
        if s.name.endswith("_bucket") and s.labels["target"] == t
    }
    assert len(buckets) == len(DEFAULT_BUCKETS) + 1
    assert (buckets["0.0025"], buckets["0.005"], buckets["0.025"]) == (0, 3, 4)
    assert (buckets["10.0"], buckets["+Inf"]) == (4, 5)
    name = "callpyback_call_duration_seconds"
    assert sample(fams, f"{name}_count", target=t) == 5
    assert sample(fams, f"{name}_sum", target=t) == pytest.approx(20.029)


def test_exported_buckets_agree_with_the_values_away_from_the_bounds() -> None:
    """le_counts puts each value in its bucket (values not within 1 % of a bound)."""
    rng = random.Random(3)
    bounds = DEFAULT_BUCKETS
    values = [v for v in (rng.lognormvariate(-6, 3) for _ in range(5000)) if v > 1e-9]
    values = [v for v in values if all(abs(v - b) / b > 0.02 for b in bounds)]
    hist = Histogram(0.01)
    hist.add_many(values)
    expected = [0] * (len(bounds) + 1)
    for v in values:
        expected[next((i for i, b in enumerate(bounds) if v <= b), len(bounds))] += 1
    assert le_counts(hist, bounds) == expected


def test_a_custom_prefix_and_buckets_and_bad_ones() -> None:
    metrics = MetricsObserver()
    cpb.CallPyBack(observers=[metrics])(lambda: None)()
    text = exposition(report.CallPyBackCollector(lambda: [metrics], prefix="app", buckets=[1]))
    assert 'app_call_duration_seconds_bucket{le="1.0",' in text
    assert text.count("app_call_duration_seconds_bucket{") == 2
    with pytest.raises(cpb.ConfigurationError, match="increasing positive"):
        report.CallPyBackCollector(buckets=[1, 0.5])
    with pytest.raises(cpb.ConfigurationError, match="Prometheus metric name"):
        report.CallPyBackCollector(prefix="no-dash")


def test_serving_on_loopback_and_scraping_the_real_endpoint() -> None:
    """serve(0) binds 127.0.0.1 on a free port; a scrape after a known workload parses and has
    its counts; the default registry's own collectors are served too; close() stops it."""
    metrics = MetricsObserver()

    @cpb.CallPyBack(observers=[metrics])
    def handled(i: int) -> int:
        if i % 5 == 0:
            raise ValueError(i)
        return i

    for i in range(50):
        with contextlib.suppress(ValueError):
            handled(i)
    server = report.serve(0)
    try:
        assert server.addr == "127.0.0.1" and server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        fams = scrape(server.url)
        t = f"{__name__}:{handled.__qualname__}"
        assert sample(fams, "callpyback_calls_total", target=t, outcome="success") == 40
        assert sample(fams, "callpyback_calls_total", target=t, outcome="failure") == 10
        assert sample(fams, "callpyback_call_duration_seconds_count", target=t) == 50
        assert "process_cpu_seconds_total" in {s.name for f in fams.values() for s in f.samples}
    finally:
        server.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url, timeout=5)
    assert b"callpyback_calls_total" not in generate_latest(REGISTRY)  # unregistered


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(report.MetricsPortError, match="already in use"):
            report.serve(port)
    with pytest.raises(report.MetricsPortError, match="not an address of this machine"):
        report.serve(0, "203.0.113.77")  # TEST-NET-3: never local


# --- callpyback run --metrics-port ------------------------------------------------------------

JOBS = """
import os, time

def work(i):
    if i % 10 == 9:
        raise ValueError(i)
    return i

def worker(n):
    for i in range(n):
        try:
            work(i)
        except ValueError:
            pass
    return os.getpid()

def report_pid(queue, n):
    queue.put(worker(n))
"""

PROGRAM = """
import sys
import jobs

jobs.worker(50)
print("ready", flush=True)
sys.stdin.readline()
"""

CONFIG = """
version = 1
[observers.metrics]
type = "metrics"

[[pipelines]]
name = "jobs"
match = ["jobs"]
observers = ["metrics"]
"""


def write_app(tmp: Path, program: str = PROGRAM, config: str = CONFIG) -> None:
    (tmp / "jobs.py").write_text(JOBS)
    (tmp / "prog.py").write_text(textwrap.dedent(program))
    (tmp / "callpyback.toml").write_text(textwrap.dedent(config))


def test_callpyback_run_serves_metrics_while_the_program_runs(tmp_path: Path) -> None:
    """Scraped over loopback while the program waits: the counts of its workload."""
    write_app(tmp_path)
    with Program(["--metrics-port", "0", "prog.py"], tmp_path) as program:
        url = program.url()
        assert url.startswith("http://127.0.0.1:")
        program.wait_for(lambda line: line == "ready\n")
        fams = scrape(url)
        assert sample(fams, "callpyback_calls_total", target="jobs:work", outcome="success") == 45
        assert sample(fams, "callpyback_calls_total", target="jobs:work", outcome="failure") == 5
        assert sample(fams, "callpyback_calls_in_flight", target="jobs:worker") == 0
        program.release()
        assert program.stop() == 0


def test_the_export_table_configures_the_endpoint(tmp_path: Path) -> None:
    """[export.prometheus] port and addr, without any flag."""
    port = free_port()
    write_app(
        tmp_path, config=CONFIG + f'\n[export.prometheus]\nport = {port}\naddr = "127.0.0.1"\n'
    )
    with Program(["prog.py"], tmp_path) as program:
        assert program.url() == f"http://127.0.0.1:{port}/metrics"
        program.wait_for(lambda line: line == "ready\n")
        fams = scrape(program.url())
        assert sample(fams, "callpyback_calls_total", target="jobs:worker", outcome="success") == 1
        program.release()
        assert program.stop() == 0


def test_a_port_in_use_stops_the_start_up(tmp_path: Path) -> None:
    write_app(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "callpyback", "run", "--metrics-port", str(port), "prog.py"],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2
    assert f"cannot serve /metrics on 127.0.0.1:{port}: the address is already in use" in (
        proc.stderr
    )
    assert proc.stdout == ""  # the program did not run


def test_a_missing_prometheus_client_is_one_clear_message(tmp_path: Path) -> None:
    """Without prometheus_client (blocked from import in the child): the install command."""
    write_app(tmp_path)
    code = (
        "import sys\n"
        "sys.modules['prometheus_client'] = None  # as if it were not installed\n"
        "from callpyback.cli import main\n"
        "sys.exit(main(['run', '--metrics-port', '0', 'prog.py']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=clean_env(), capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "callpyback run: callpyback run --metrics-port needs prometheus_client, which is not "
        "installed: pip install 'prometheus_client>=0.17' (or, from a CallPyBack checkout, "
        "pip install '.[report]' for every output)"
    ]
    code = (
        "import sys\nsys.modules['prometheus_client'] = None\n"
        "import callpyback\nm = callpyback.MetricsObserver()\nm.to_prometheus()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "MissingDependencyError: Prometheus export needs prometheus_client" in proc.stderr


# --- several processes ------------------------------------------------------------------------

MULTI = """
import multiprocessing as mp
import sys
import jobs

if __name__ == "__main__":
    jobs.worker(30)  # before the fork: a forked child inherits these counts, must not export them
    ctx = mp.get_context(sys.argv[1])
    queue = ctx.Queue()
    procs = [ctx.Process(target=jobs.report_pid, args=(queue, 100)) for _ in range(2)]
    for p in procs:
        p.start()
    pids = {queue.get() for _ in procs}
    for p in procs:
        p.join()
    # A pool ended by `with`: its workers are terminated (SIGTERM), and still export.
    with ctx.Pool(2) as pool:
        pool.map(jobs.worker, [50, 50], chunksize=1)
    print("pids", len(pids), flush=True)
    jobs.worker(20)
    print("ready", flush=True)
    sys.stdin.readline()
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_worker_processes_aggregate_in_multiprocess_mode(tmp_path: Path, method: str) -> None:
    """Two worker processes, a pool and the parent: one endpoint sums them (prometheus_client's
    multiprocess mode); forked workers count only their own calls."""
    write_app(tmp_path, program=MULTI)
    args = ["--metrics-port", "0", "--metrics-multiprocess", "prog.py", method]
    with Program(args, tmp_path) as program:
        url = program.url()
        assert "multiprocess mode" in "".join(program.stderr)
        workers = program.wait_for(lambda line: line.startswith("pids") and int(line.split()[1]))
        assert workers == 2
        program.wait_for(lambda line: line == "ready\n")
        total = 30 + 2 * 100 + 2 * 50 + 20

        def counts() -> None:
            fams = scrape(url)
            ok = sample(fams, "callpyback_calls_total", target="jobs:work", outcome="success")
            failed = sample(fams, "callpyback_calls_total", target="jobs:work", outcome="failure")
            assert (ok + failed, failed) == (total, total // 10)
            worker = sample(fams, "callpyback_calls_total", target="jobs:worker", outcome="success")
            assert worker == 6
            name = "callpyback_call_duration_seconds_count"
            assert sample(fams, name, target="jobs:work") == total
            assert sample(fams, "callpyback_calls_in_flight", target="jobs:work") == 0

        eventually(counts)
        program.release()
        assert program.stop() == 0


GUNICORN_APP = """
import os
import jobs

def app(environ, start_response):
    jobs.work(0)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
"""

GUNICORN_CONF = """
from prometheus_client import multiprocess

def child_exit(server, worker):
    multiprocess.mark_process_dead(worker.pid)
"""


def test_gunicorn_workers_aggregate_in_multiprocess_mode(tmp_path: Path) -> None:
    """The documented recipe: callpyback run --metrics-multiprocess -m gunicorn -w 2."""
    write_app(tmp_path)
    (tmp_path / "wsgiapp.py").write_text(GUNICORN_APP)
    (tmp_path / "gunicorn_conf.py").write_text(GUNICORN_CONF)
    config = CONFIG.replace('match = ["jobs"]', 'match = ["jobs", "wsgiapp"]')
    (tmp_path / "callpyback.toml").write_text(config)
    port = free_port()
    args = [
        "--metrics-port", "0", "--metrics-multiprocess", "-m", "gunicorn", "-w", "2",
        "-b", f"127.0.0.1:{port}", "-c", "gunicorn_conf.py", "wsgiapp:app",
    ]  # fmt: skip
    with Program(args, tmp_path) as program:
        url = program.url()
        pids = set()
        requests = 0

        def answer() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
                return str(r.read().decode())

        eventually(answer)  # the workers are up
        requests = 1
        while len(pids) < 2 and requests < 400:
            pids.add(answer())
            requests += 1
        assert len(pids) == 2, "both workers served requests"

        def counts() -> None:
            fams = scrape(url)
            ok = sample(fams, "callpyback_calls_total", target="jobs:work", outcome="success")
            assert ok == requests
            assert (
                sample(fams, "callpyback_calls_total", target="wsgiapp:app", outcome="success")
                == requests
            )

        eventually(counts)
        program.proc.terminate()
        assert program.stop() == 0
